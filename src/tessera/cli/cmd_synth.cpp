// tessera synth: writes a synthetic dpixel tile (argument handling only; see io/synth_tile.h).

#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "tessera/cli/commands.h"
#include "tessera/cli/table_output.h"
#include "tessera/cli/validators.h"
#include "tessera/common/error.h"
#include "tessera/geo/tile_place.h"
#include "tessera/io/synth_tile.h"
#include "tessera/io/tile.h"

namespace tessera::cli {
namespace {

struct SynthArgs {
  std::string out;
  std::string size;
  std::string s1_steps = "30/30";
  std::string layout = "nested";
  std::string dtype = "int16";
  std::string observations = "uniform";
  std::string cell;
  bool force = false;
  SynthOptions options;
};

// A real land cell (near Cambridge, UK): where a tile goes that neither --cell nor its name
// places.
constexpr GridCell kDefaultCell{0.15, 52.05};

// The tile's cell: --cell "LON,LAT", else the tile's grid name, else kDefaultCell. A --cell
// that contradicts the name is a usage error.
GridCell synth_cell(const std::string& text, const std::string& dir) {
  const std::optional<GridCell> named = parse_grid_name(tile_grid_name(dir));
  if (text.empty()) return named.value_or(kDefaultCell);
  std::string spelt = "grid_" + text;
  const auto comma = spelt.find(',');
  if (comma != std::string::npos) spelt[comma] = '_';
  const std::optional<GridCell> given =
      comma == std::string::npos ? std::nullopt : parse_grid_name(spelt);
  if (!given) {
    throw UsageError("--cell: expected LON,LAT in degrees (e.g. 0.15,52.05), got '" + text + "'");
  }
  if (named && (named->lon != given->lon || named->lat != given->lat)) {
    throw UsageError("--cell " + text + " is not the cell of the tile's name " +
                     tile_grid_name(dir));
  }
  return *given;
}

// The tile's roi.tiff: H x W pixels of the cell's landmask grid (its CRS and origin, 10 m).
std::function<void(const std::string&)> roi_writer(const GridCell& cell, const SynthOptions& o) {
  TileGeometry geometry = grid_cell_geometry(cell);
  geometry.height = static_cast<int>(o.height);
  geometry.width = static_cast<int>(o.width);
  return [geometry](const std::string& dir) { write_roi_tiff(dir + "/roi.tiff", geometry); };
}

// "512x512" -> (512, 512).
void parse_size(const std::string& text, SynthOptions& o) {
  const auto x = text.find('x');
  try {
    if (x == std::string::npos) throw std::invalid_argument("no x");
    std::size_t used_h = 0, used_w = 0;
    o.height = std::stoll(text.substr(0, x), &used_h);
    o.width = std::stoll(text.substr(x + 1), &used_w);
    if (used_h != x || used_w != text.size() - x - 1) throw std::invalid_argument("junk");
  } catch (const std::exception&) {
    throw UsageError("--size: expected HxW (e.g. 512x512), got '" + text + "'");
  }
}

// "60/0" -> ascending 60, descending 0; "40" -> 40 each.
void parse_s1_steps(const std::string& text, SynthOptions& o) {
  const auto slash = text.find('/');
  try {
    std::size_t used = 0;
    if (slash == std::string::npos) {
      o.s1_asc_steps = o.s1_desc_steps = std::stoll(text, &used);
      if (used != text.size()) throw std::invalid_argument("junk");
    } else {
      o.s1_asc_steps = std::stoll(text.substr(0, slash), &used);
      if (used != slash) throw std::invalid_argument("junk");
      o.s1_desc_steps = std::stoll(text.substr(slash + 1), &used);
      if (used != text.size() - slash - 1) throw std::invalid_argument("junk");
    }
  } catch (const std::exception&) {
    throw UsageError("--s1-steps: expected A/D or N (e.g. 60/0), got '" + text + "'");
  }
}

}  // namespace

void add_synth_command(CLI::App& root) {
  auto args = std::make_shared<SynthArgs>();
  CLI::App* cmd =
      root.add_subcommand("synth", "Write a synthetic dpixel tile (for tests and benchmarks)");
  auto* output = cmd->add_option("-o,--output", args->out,
                                 "Tile directory to create (its name is the grid name)");
  auto* old_output = cmd->add_option("--out", args->out)->group("");  // the old spelling
  cmd->add_option("--size", args->size, "Tile size HxW, e.g. 512x512")->required();
  cmd->add_option("--s2-steps", args->options.s2_steps, "Sentinel-2 time steps")
      ->capture_default_str();
  cmd->add_option("--s1-steps", args->s1_steps,
                  "Sentinel-1 steps ascending/descending (A/D, e.g. 60/0; N = N each)")
      ->capture_default_str();
  auto* cloud =
      cmd->add_option("--cloud", args->options.cloud, "Fraction of S2 observations under cloud")
          ->capture_default_str();
  auto* steps = cmd->get_option("--s2-steps");
  cmd->add_option("--observations", args->observations,
                  "uniform (every pixel clear at the --cloud rate) or varied (valid S2 counts "
                  "from 0 to above 256, most 40-100, as v1.1 and v2 buckets see; 300 S2 steps "
                  "unless --s2-steps)")
      ->check(CLI::IsMember({"uniform", "varied"}))
      ->capture_default_str();
  cmd->add_option("--nodata", args->options.nodata, "Fraction of pixels with no data at all")
      ->capture_default_str();
  cmd->add_option("--seed", args->options.seed, "Random seed (same seed, same bytes)")
      ->check(unsigned_64bit())
      ->capture_default_str();
  cmd->add_option("--layout", args->layout, "nested (s2/, s1/) or flat")
      ->check(CLI::IsMember({"nested", "flat"}))
      ->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "S2 band dtype")
      ->check(CLI::IsMember({"int16", "uint16"}))
      ->capture_default_str();
  cmd->add_option("--cell", args->cell,
                  "The 0.1 degree cell LON,LAT (its centre, e.g. 0.15,52.05) whose grid the tile's "
                  "roi.tiff takes (default: the tile's name grid_<lon>_<lat>, else 0.15,52.05)");
  cmd->add_flag("--force", args->force, "Replace an existing directory");
  cmd->callback([args, output, old_output, steps, cloud] {
    check_renamed_option("synth", *output, *old_output, "the tile directory");
    if (output->count() == 0 && old_output->count() == 0) throw CLI::RequiredError("--output");
    SynthOptions o = args->options;
    parse_size(args->size, o);
    parse_s1_steps(args->s1_steps, o);
    o.nested = args->layout == "nested";
    o.varied_observations = args->observations == "varied";
    if (o.varied_observations && cloud->count() > 0)
      throw UsageError("--cloud applies to --observations uniform (varied sets its own rates)");
    if (o.varied_observations && steps->count() == 0) o.s2_steps = kVariedS2Steps;
    o.band_dtype = parse_dtype_name(args->dtype, "--dtype");
    const GridCell cell = synth_cell(args->cell, args->out);
    write_synth_tile(args->out, o, args->force, roi_writer(cell, o));
  });
}

}  // namespace tessera::cli
