#pragma once
// Projections: how long (and how much) inference takes at a measured speed, for the units
// people plan in: one Sentinel-2 MGRS tile, one 0.1-degree grid tile, and every land tile
// on the planet. Pure arithmetic on ms/pixel; no measurement happens here.
//
// Invariants: ms_per_pixel > 0, machines >= 1. Wall time for the planet is divided by the
// number of machines; cost is machine-hours x price, so it does not depend on `machines`.

#include <optional>
#include <string>
#include <vector>

#include "tessera/common/duration.h"  // human_duration, used with projections
#include "tessera/common/table.h"

namespace tessera {

inline constexpr double kMgrsTilePixels = 10980.0 * 10980.0;  // 120,560,400 px at 10 m
inline constexpr double kGridTilePixels = 1000.0 * 1000.0;    // one 0.1-degree tile
inline constexpr double kPlanetGridTiles = 1593480.0;         // 0.1-degree tiles on land

// One configuration to project: a name people recognise and its aggregate speed.
struct ProjectionInput {
  std::string label;
  double ms_per_pixel = 0.0;
};

struct ProjectionOptions {
  std::optional<double> usd_per_hour;  // price of one machine-hour; no cost columns if unset
  int machines = 1;                    // machines sharing the planet run
};

struct Projection {
  std::string label;
  double ms_per_pixel = 0.0;
  double grid_tile_s = 0.0;  // one 0.1-degree tile on one machine
  double mgrs_tile_s = 0.0;  // one MGRS tile on one machine
  double planet_s = 0.0;     // wall time for the planet on `machines` machines
  int machines = 1;
  std::optional<double> grid_tile_usd;  // set iff a price was given
  std::optional<double> mgrs_tile_usd;
  std::optional<double> planet_usd;  // all machine-hours for the planet
};

// Throws UsageError if ms_per_pixel <= 0 (or not finite), machines < 1, or a negative price.
Projection project(const ProjectionInput& input, const ProjectionOptions& options);

// Markdown: label, ms/pixel and human durations (+ costs). CSV/JSON (`raw` = true): the same
// plus raw seconds and the machine count, so programs never parse "14.4 h".
Table projection_table(const std::vector<Projection>& projections, bool raw);

// Parses "0.43,0.22" into numbers; throws UsageError naming the bad item.
std::vector<double> parse_number_list(const std::string& text, const std::string& option);

}  // namespace tessera
