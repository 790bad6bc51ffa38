#include "tessera/report/projection.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>

#include "tessera/common/error.h"

namespace tessera {

Projection project(const ProjectionInput& input, const ProjectionOptions& options) {
  if (!(input.ms_per_pixel > 0.0) || !std::isfinite(input.ms_per_pixel)) {
    throw UsageError(fmt::format("ms/pixel for '{}' must be a positive number, got {}", input.label,
                                 input.ms_per_pixel));
  }
  if (options.machines < 1) {
    throw UsageError(fmt::format("--machines must be at least 1, got {}", options.machines));
  }
  if (options.usd_per_hour &&
      (!(*options.usd_per_hour >= 0.0) || !std::isfinite(*options.usd_per_hour))) {
    throw UsageError(
        fmt::format("--usd-per-hour must be a non-negative number, got {}", *options.usd_per_hour));
  }
  Projection p;
  p.label = input.label;
  p.ms_per_pixel = input.ms_per_pixel;
  p.machines = options.machines;
  const double s_per_pixel = input.ms_per_pixel / 1000.0;
  p.grid_tile_s = kGridTilePixels * s_per_pixel;
  p.mgrs_tile_s = kMgrsTilePixels * s_per_pixel;
  const double planet_machine_s = kPlanetGridTiles * kGridTilePixels * s_per_pixel;
  p.planet_s = planet_machine_s / options.machines;
  if (options.usd_per_hour) {
    const double usd_per_s = *options.usd_per_hour / 3600.0;
    p.grid_tile_usd = p.grid_tile_s * usd_per_s;
    p.mgrs_tile_usd = p.mgrs_tile_s * usd_per_s;
    p.planet_usd = planet_machine_s * usd_per_s;
  }
  return p;
}

namespace {

nlohmann::json optional_cell(const std::optional<double>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

}  // namespace

Table projection_table(const std::vector<Projection>& projections, bool raw) {
  bool with_cost = false;
  int machines = 1;
  for (const auto& p : projections) {
    with_cost = with_cost || p.planet_usd.has_value();
    machines = p.machines;
  }
  const std::string planet_title =
      machines == 1 ? "Planet (1 machine)" : fmt::format("Planet ({} machines)", machines);
  std::vector<Column> columns = {
      {"label", "Configuration", -1, false},  {"ms_per_pixel", "ms/pixel", 4},
      {"grid_tile", "0.1° tile (1 Mpx)", -1}, {"mgrs_tile", "MGRS tile (120.6 Mpx)", -1},
      {"planet", planet_title, -1},
  };
  if (raw) {
    columns.push_back({"grid_tile_s", "0.1° tile (s)", 1});
    columns.push_back({"mgrs_tile_s", "MGRS tile (s)", 1});
    columns.push_back({"planet_s", "Planet (s)", 0});
    columns.push_back({"machines", "Machines", 0});
  }
  if (with_cost) {
    columns.push_back({"grid_tile_usd", "USD per 0.1° tile", 4});
    columns.push_back({"mgrs_tile_usd", "USD per MGRS tile", 2});
    columns.push_back({"planet_usd", "USD for the planet", 0});
  }
  Table table(std::move(columns));
  for (const auto& p : projections) {
    std::vector<nlohmann::json> cells = {p.label, p.ms_per_pixel, human_duration(p.grid_tile_s),
                                         human_duration(p.mgrs_tile_s), human_duration(p.planet_s)};
    if (raw) {
      cells.insert(cells.end(), {p.grid_tile_s, p.mgrs_tile_s, p.planet_s, p.machines});
    }
    if (with_cost) {
      cells.insert(cells.end(), {optional_cell(p.grid_tile_usd), optional_cell(p.mgrs_tile_usd),
                                 optional_cell(p.planet_usd)});
    }
    table.add_row(std::move(cells));
  }
  return table;
}

std::vector<double> parse_number_list(const std::string& text, const std::string& option) {
  std::vector<double> values;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    const std::string item =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    char* end = nullptr;
    const double value = std::strtod(item.c_str(), &end);
    if (item.empty() || end != item.c_str() + item.size() || !std::isfinite(value)) {
      throw UsageError(fmt::format("{}: '{}' is not a number", option, item));
    }
    values.push_back(value);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return values;
}

}  // namespace tessera
