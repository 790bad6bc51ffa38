#pragma once
// Table: the one report type. bench, topo, tune and project build a Table and render it as
// Markdown (for people), CSV (for spreadsheets) or JSON (for programs and `tessera report`).
//
// Invariant: every row has exactly one cell per column. Cells are JSON scalars (number,
// string, bool or null); numbers keep full precision in CSV/JSON, and are rounded to the
// column's `decimals` only in Markdown.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace tessera {

enum class OutputFormat { kMarkdown, kCsv, kJson };

// Parses "md", "csv" or "json"; throws UsageError otherwise.
OutputFormat parse_output_format(const std::string& name);

struct Column {
  std::string key;    // JSON/CSV name, snake_case
  std::string title;  // Markdown header
  int decimals = -1;  // Markdown rounding for numbers; -1 = as is
  bool right_align = true;
  // Markdown: a number that is not whole never prints as one; rounding that would make it whole
  // ("100.00" for 99.998, "1.0000000" for 0.99999999) takes more decimals, up to 9, instead.
  bool never_rounded_to_whole = false;
};

class Table {
 public:
  explicit Table(std::vector<Column> columns) : columns_(std::move(columns)) {}

  // Appends a row; throws std::logic_error if the cell count differs from the column count.
  void add_row(std::vector<nlohmann::json> cells);

  const std::vector<Column>& columns() const { return columns_; }
  const std::vector<std::vector<nlohmann::json>>& rows() const { return rows_; }

  std::string to_markdown() const;
  std::string to_csv() const;
  // An array of objects keyed by Column::key.
  nlohmann::json to_json() const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<nlohmann::json>> rows_;
};

// Formats a number for people: fixed `decimals`, or a compact form when decimals < 0.
std::string format_number(double value, int decimals);

}  // namespace tessera
