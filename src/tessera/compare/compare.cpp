#include "tessera/compare/compare.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "tessera/common/error.h"
#include "tessera/io/npy.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

// What a comparison gathers before it is summarised: counts, extremes and every cosine.
struct Tally {
  int64_t values = 0, equal = 0, within_one = 0;
  int max_difference = 0;
  double max_scale_relative = 0;
  std::vector<double> cosines;

  void add(const Tally& other) {
    values += other.values;
    equal += other.equal;
    within_one += other.within_one;
    max_difference = std::max(max_difference, other.max_difference);
    max_scale_relative = std::max(max_scale_relative, other.max_scale_relative);
    cosines.insert(cosines.end(), other.cosines.begin(), other.cosines.end());
  }

  EmbeddingAgreement summary(const std::string& tile) {
    EmbeddingAgreement s;
    s.tile = tile;
    s.values = values;
    s.pixels = static_cast<int64_t>(cosines.size());
    const double n = static_cast<double>(std::max<int64_t>(1, values));
    s.equal_percent = 100.0 * static_cast<double>(equal) / n;
    s.within_one_percent = 100.0 * static_cast<double>(within_one) / n;
    s.max_difference = max_difference;
    s.max_scale_relative = max_scale_relative;
    if (cosines.empty()) return s;
    std::sort(cosines.begin(), cosines.end());
    double sum = 0;
    for (const double c : cosines) sum += c;
    s.cosine_mean = sum / static_cast<double>(cosines.size());
    // The 0.1 % quantile: the value below which 0.1 % of the pixels lie (lower nearest rank).
    s.cosine_q001 = cosines[static_cast<size_t>(0.001 * static_cast<double>(cosines.size() - 1))];
    s.cosine_min = cosines.front();
    return s;
  }
};

struct TileOutput {
  NpyArray embeddings, scales;
};

TileOutput open_output(const std::string& prefix) {
  TileOutput out{NpyArray(prefix + ".npy"), NpyArray(prefix + "_scales.npy")};
  if (out.embeddings.dtype() != DType::kInt8 || out.embeddings.ndim() != 3)
    throw Error(prefix + ".npy: not int8 embeddings of shape H x W x D");
  const auto& shape = out.embeddings.shape();
  if (out.scales.dtype() != DType::kFloat32 ||
      out.scales.shape() != std::vector<int64_t>{shape[0], shape[1]}) {
    throw Error(fmt::format("{}_scales.npy: not float32 scales of shape {} x {}", prefix, shape[0],
                            shape[1]));
  }
  return out;
}

// One pixel's values and cosine into `tally`.
void tally_pixel(const int8_t* qa, const int8_t* qb, float sa, float sb, int64_t dim,
                 Tally& tally) {
  double dot = 0, na = 0, nb = 0;
  for (int64_t i = 0; i < dim; ++i) {
    const int difference = std::abs(int{qa[i]} - int{qb[i]});
    tally.equal += difference == 0;
    tally.within_one += difference <= 1;
    tally.max_difference = std::max(tally.max_difference, difference);
    const double a = qa[i] * double{sa}, b = qb[i] * double{sb};
    dot += a * b;
    na += a * a;
    nb += b * b;
  }
  tally.values += dim;
  const double larger = std::max(std::fabs(double{sa}), std::fabs(double{sb}));
  if (larger > 0) {
    tally.max_scale_relative =
        std::max(tally.max_scale_relative, std::fabs(double{sa} - double{sb}) / larger);
  }
  if (na == 0 && nb == 0) return;  // no embedding in either run
  tally.cosines.push_back(na == 0 || nb == 0 ? 0.0 : dot / std::sqrt(na * nb));
}

Tally tally_tile(const std::string& a, const std::string& b) {
  const TileOutput x = open_output(a), y = open_output(b);
  if (x.embeddings.shape() != y.embeddings.shape()) {
    throw Error(fmt::format("{}.npy and {}.npy differ in shape ({} x {} x {} and {} x {} x {})", a,
                            b, x.embeddings.dim(0), x.embeddings.dim(1), x.embeddings.dim(2),
                            y.embeddings.dim(0), y.embeddings.dim(1), y.embeddings.dim(2)));
  }
  const int64_t pixels = x.scales.size(), dim = x.embeddings.dim(2);
  const auto* qa = static_cast<const int8_t*>(x.embeddings.data());
  const auto* qb = static_cast<const int8_t*>(y.embeddings.data());
  const auto* sa = static_cast<const float*>(x.scales.data());
  const auto* sb = static_cast<const float*>(y.scales.data());
  Tally tally;
  for (int64_t p = 0; p < pixels; ++p)
    tally_pixel(qa + p * dim, qb + p * dim, sa[p], sb[p], dim, tally);
  return tally;
}

}  // namespace

std::map<std::string, std::string> embedding_outputs(const std::string& path) {
  std::error_code ec;
  std::map<std::string, std::string> outputs;
  const auto add = [&](const fs::path& npy) {
    const std::string prefix = (npy.parent_path() / npy.stem()).string();
    if (!fs::is_regular_file(prefix + "_scales.npy", ec))
      throw Error(prefix + "_scales.npy: no such file (the scales of " + npy.string() + ")");
    outputs[npy.stem().string()] = prefix;
  };
  if (fs::is_directory(path, ec)) {
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      const fs::path& p = entry.path();
      const std::string name = p.filename().string();
      if (p.extension() == ".npy" && !name.ends_with("_scales.npy")) add(p);
    }
    if (outputs.empty()) throw Error(path + ": no <grid>.npy embeddings in this directory");
    return outputs;
  }
  if (!fs::exists(path, ec)) throw Error(path + ": no such file or directory");
  if (fs::path(path).extension() != ".npy" || path.ends_with("_scales.npy"))
    throw Error(path + ": expected an output directory or a <grid>.npy embeddings file");
  add(path);
  return outputs;
}

EmbeddingAgreement compare_tile(const std::string& grid, const std::string& a,
                                const std::string& b) {
  return tally_tile(a, b).summary(grid);
}

std::vector<EmbeddingAgreement> compare_outputs(const std::string& a, const std::string& b) {
  const auto left = embedding_outputs(a), right = embedding_outputs(b);
  // Two <grid>.npy files named by the user are paired whatever their grids; two directories
  // pair tiles by grid name only, so that one tile each of different grids is refused.
  std::error_code ec;
  const bool single = !fs::is_directory(a, ec) && !fs::is_directory(b, ec);
  if (left.size() == 1 && right.size() == 1 && !single &&
      left.begin()->first != right.begin()->first) {
    throw Error(fmt::format(
        "{} and {}: their tiles are different grids ({} and {}); name the two <grid>.npy files "
        "to compare them anyway",
        a, b, left.begin()->first, right.begin()->first));
  }
  std::vector<EmbeddingAgreement> rows;
  Tally all;
  for (const auto& [grid, prefix] : left) {
    const auto other = single ? right.begin() : right.find(grid);
    if (other == right.end()) throw Error(fmt::format("{}: tile {} is not in {}", a, grid, b));
    Tally tile = tally_tile(prefix, other->second);
    all.add(tile);
    rows.push_back(tile.summary(grid));
  }
  for (const auto& [grid, prefix] : right) {
    if (!single && !left.count(grid))
      throw Error(fmt::format("{}: tile {} is not in {}", b, grid, a));
  }
  rows.push_back(all.summary("all"));
  return rows;
}

std::map<std::string, double> parse_requirements(const std::string& text) {
  static const std::vector<std::string> keys = {
      "equal", "within1", "max-diff", "cosine-mean", "cosine-q001", "cosine-min", "scale-rel"};
  std::map<std::string, double> required;
  size_t begin = 0;
  while (begin < text.size()) {
    const size_t end = std::min(text.find(',', begin), text.size());
    const std::string entry = text.substr(begin, end - begin);
    begin = end + 1;
    const size_t eq = entry.find('=');
    const std::string key = entry.substr(0, eq);
    if (eq == std::string::npos || std::find(keys.begin(), keys.end(), key) == keys.end()) {
      throw UsageError("--require: '" + entry +
                       "' is not KEY=VALUE with KEY one of equal, within1, max-diff, "
                       "cosine-mean, cosine-q001, cosine-min, scale-rel");
    }
    char* rest = nullptr;
    const std::string value = entry.substr(eq + 1);
    const double number = std::strtod(value.c_str(), &rest);
    if (value.empty() || *rest != '\0' || !std::isfinite(number))
      throw UsageError("--require: '" + entry + "' needs a number after '='");
    required[key] = number;
  }
  return required;
}

std::vector<std::string> missed_requirements(const EmbeddingAgreement& all,
                                             const std::map<std::string, double>& required) {
  std::vector<std::string> missed;
  // NaN meets no requirement: it compares false both ways, so it is caught first.
  const auto at_least = [&](const char* key, double value, const char* unit) {
    const auto r = required.find(key);
    if (r == required.end()) return;
    if (std::isnan(value)) {
      missed.push_back(fmt::format("{} is NaN (need >= {:.6g}{})", key, r->second, unit));
    } else if (value < r->second) {
      missed.push_back(fmt::format("{} {:.6g}{} < {:.6g}{}", key, value, unit, r->second, unit));
    }
  };
  const auto at_most = [&](const char* key, double value) {
    const auto r = required.find(key);
    if (r == required.end()) return;
    if (std::isnan(value)) {
      missed.push_back(fmt::format("{} is NaN (need <= {:.6g})", key, r->second));
    } else if (value > r->second) {
      missed.push_back(fmt::format("{} {:.6g} > {:.6g}", key, value, r->second));
    }
  };
  at_least("equal", all.equal_percent, " %");
  at_least("within1", all.within_one_percent, " %");
  at_most("max-diff", all.max_difference);
  at_least("cosine-mean", all.cosine_mean, "");
  at_least("cosine-q001", all.cosine_q001, "");
  at_least("cosine-min", all.cosine_min, "");
  at_most("scale-rel", all.max_scale_relative);
  return missed;
}

Table agreement_table(const std::vector<EmbeddingAgreement>& rows) {
  // Shares and cosines short of 100 % and 1 never print as 100.00 or 1.0000000.
  Table table({{"tile", "tile", -1, false},
               {"pixels", "pixels"},
               {"equal_percent", "equal %", 2, true, true},
               {"within_one_percent", "within 1 %", 3, true, true},
               {"max_difference", "max diff"},
               {"max_scale_relative", "scale rel. diff", 6},
               {"cosine_mean", "cosine mean", 7, true, true},
               {"cosine_q001", "cosine 0.1 %", 7, true, true},
               {"cosine_min", "cosine min", 7, true, true}});
  for (const auto& r : rows) {
    table.add_row({r.tile, r.pixels, r.equal_percent, r.within_one_percent, r.max_difference,
                   r.max_scale_relative, r.cosine_mean, r.cosine_q001, r.cosine_min});
  }
  return table;
}

}  // namespace tessera
