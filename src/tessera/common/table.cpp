#include "tessera/common/table.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include "tessera/common/error.h"

namespace tessera {

OutputFormat parse_output_format(const std::string& name) {
  if (name == "md" || name == "markdown") return OutputFormat::kMarkdown;
  if (name == "csv") return OutputFormat::kCsv;
  if (name == "json") return OutputFormat::kJson;
  throw UsageError("unknown output format '" + name + "' (expected md, csv or json)");
}

void Table::add_row(std::vector<nlohmann::json> cells) {
  if (cells.size() != columns_.size()) {
    throw std::logic_error(
        fmt::format("Table row has {} cells for {} columns", cells.size(), columns_.size()));
  }
  rows_.push_back(std::move(cells));
}

std::string format_number(double value, int decimals) {
  if (decimals >= 0) return fmt::format("{:.{}f}", value, decimals);
  return fmt::format("{:.6g}", value);
}

namespace {

// `value` with `decimals`, or more (up to 9) when that rounds a number that is not whole to a
// whole one.
std::string format_never_whole(double value, int decimals) {
  std::string text = format_number(value, decimals);
  if (!std::isfinite(value) || value == std::round(value)) return text;
  for (int more = decimals; more <= 9; ++more) {
    text = format_number(value, more);
    if (std::strtod(text.c_str(), nullptr) != std::round(value)) return text;
  }
  return text;
}

std::string cell_text(const nlohmann::json& cell, int decimals, bool never_whole = false) {
  if (cell.is_null()) return "";
  if (cell.is_string()) return cell.get<std::string>();
  if (cell.is_boolean()) return cell.get<bool>() ? "yes" : "no";
  if (cell.is_number_integer()) return std::to_string(cell.get<long long>());
  if (cell.is_number() && never_whole && decimals >= 0)
    return format_never_whole(cell.get<double>(), decimals);
  if (cell.is_number()) return format_number(cell.get<double>(), decimals);
  return cell.dump();
}

std::string csv_escape(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string out(1, '"');
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

// A cell's text as Markdown shows it in one cell: '|' escaped, line breaks as spaces.
std::string markdown_cell(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '\n' || c == '\r') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string Table::to_markdown() const {
  std::vector<std::vector<std::string>> text;
  std::vector<size_t> width(columns_.size());
  for (size_t c = 0; c < columns_.size(); ++c)
    width[c] = std::max<size_t>(3, columns_[c].title.size());
  for (const auto& row : rows_) {
    std::vector<std::string> line;
    for (size_t c = 0; c < columns_.size(); ++c) {
      const Column& column = columns_[c];
      line.push_back(
          markdown_cell(cell_text(row[c], column.decimals, column.never_rounded_to_whole)));
      width[c] = std::max(width[c], line.back().size());
    }
    text.push_back(std::move(line));
  }
  std::string out = "|";
  for (size_t c = 0; c < columns_.size(); ++c)
    out += fmt::format(" {:<{}} |", columns_[c].title, width[c]);
  out += "\n|";
  for (size_t c = 0; c < columns_.size(); ++c) {
    out += ' ';
    out.append(columns_[c].right_align ? width[c] - 1 : width[c], '-');
    out += columns_[c].right_align ? ": |" : " |";
  }
  out += "\n";
  for (const auto& line : text) {
    out += "|";
    for (size_t c = 0; c < columns_.size(); ++c) {
      out += columns_[c].right_align ? fmt::format(" {:>{}} |", line[c], width[c])
                                     : fmt::format(" {:<{}} |", line[c], width[c]);
    }
    out += "\n";
  }
  return out;
}

std::string Table::to_csv() const {
  std::string out;
  for (size_t c = 0; c < columns_.size(); ++c) {
    if (c) out += ',';
    out += csv_escape(columns_[c].key);
  }
  out += "\n";
  for (const auto& row : rows_) {
    for (size_t c = 0; c < columns_.size(); ++c) {
      std::string text = row[c].is_number_float() ? fmt::format("{}", row[c].get<double>())
                                                  : cell_text(row[c], -1);
      if (c) out += ',';
      out += csv_escape(text);
    }
    out += "\n";
  }
  return out;
}

nlohmann::json Table::to_json() const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& row : rows_) {
    nlohmann::json object = nlohmann::json::object();
    for (size_t c = 0; c < columns_.size(); ++c) object[columns_[c].key] = row[c];
    out.push_back(std::move(object));
  }
  return out;
}

}  // namespace tessera
