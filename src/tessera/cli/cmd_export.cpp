// tessera export: existing .npy outputs (tessera's runs, geotessera's NPY downloads) -> the
// geospatial formats that `infer --format` writes (geo/geo_outputs.h, docs/GEO.md).

#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tessera/cli/commands.h"
#include "tessera/cli/validators.h"
#include "tessera/common/error.h"
#include "tessera/common/output_location.h"
#include "tessera/geo/geo_outputs.h"
#include "tessera/io/npy.h"
#include "tessera/runtime/tile_record.h"

namespace tessera::cli {
namespace {

namespace fs = std::filesystem;

struct ExportArgs {
  std::string run_dir, out_dir, tiles_dir, formats;
  std::string model_version;  // of outputs that record none; "" when not given
  int year = 0;
  bool force = false;
};

// H x W of a tile's embeddings, from the .npy header (mapped, not read).
std::pair<int64_t, int64_t> embeddings_size(const GeoTile& tile) {
  const NpyArray codes(tile.embeddings);
  if (codes.ndim() != 3) {
    throw Error(fmt::format("{}: expected embeddings of shape (H, W, D), got {}", codes.path(),
                            format_shape(codes.shape())));
  }
  return {codes.dim(0), codes.dim(1)};
}

// The model's version in the record beside a tile's outputs (tessera's runs), else the one
// its files' names tell (upstream v1.1, v2); "" without either.
std::string recorded_version(const GeoTile& tile) {
  const fs::path dir = fs::path(tile.embeddings).parent_path();
  const auto record = read_tile_record(tile_record_path(dir.string(), tile.grid));
  return record ? record->version : tile.named_version;
}

// Each tile's model version: the recorded one, else `given` (--model-version, "" when not
// given). A given version that contradicts a recorded one is an error, never a choice.
std::vector<std::string> tile_versions(const std::vector<GeoTile>& tiles,
                                       const std::string& given) {
  std::vector<std::string> versions;
  for (const GeoTile& tile : tiles) {
    const std::string known = recorded_version(tile);
    if (!known.empty() && !given.empty() && known != given) {
      throw Error(
          fmt::format("{}: its outputs are of model {} (their record or names say so), "
                      "not --model-version {}",
                      tile.what, known, given));
    }
    versions.push_back(known.empty() ? given : known);
  }
  return versions;
}

// Before anything is written: every tile is placed and of its place's size, no two share a
// grid name, every output may be written (never over an input, an existing file only with
// --force, never a special file, nor its temporary files), and a zone store knows each
// tile's model version.
void check_export(const GeoRequest& request, const std::vector<GeoTile>& tiles,
                  const std::vector<std::string>& versions, bool force) {
  std::set<std::string> grids;
  for (size_t i = 0; i < tiles.size(); ++i) {
    const GeoTile& tile = tiles[i];
    if (!grids.insert(tile.grid).second)
      throw Error(fmt::format("{}: a second set of outputs named {}", tile.embeddings, tile.grid));
    if (request.formats.zarr && versions[i].empty()) {
      throw Error(tile.what +
                  ": the version of the model that made its outputs is not recorded (no "
                  "<grid>.tessera.json beside them): a zarr store names it; give --model-version");
    }
    const auto [height, width] = embeddings_size(tile);
    std::string note;
    require_tile_place(request, tile, height, width, &note);
    if (!note.empty()) std::cerr << "tessera: " << note << "\n";
    std::vector<std::string> inputs = {tile.embeddings};
    if (!tile.scales.empty()) inputs.push_back(tile.scales);
    inputs.insert(inputs.end(), tile.rasters.begin(), tile.rasters.end());
    std::error_code ec;
    if (!fs::exists(request.out_dir, ec)) continue;  // made by the export: nothing there yet
    for (const std::string& output : geo_output_paths(request, tile.grid))
      check_new_output(output, force, inputs);
    for (const std::string& temp : geo_temp_paths(request, tile.grid))
      require_regular_or_absent(temp);
  }
}

void run_export(const ExportArgs& args) {
  GeoRequest request;
  request.formats = parse_output_formats(args.formats, "--format");
  if (!request.formats.any_geo())
    throw UsageError("--format: export writes geotiff or zarr (the .npy outputs are its input)");
  if (request.formats.zarr && args.year == 0)
    throw UsageError("--format zarr needs --year (the zarr store's time axis)");
  request.out_dir = args.out_dir.empty() ? args.run_dir : args.out_dir;
  request.year = args.year;
  const std::vector<GeoTile> tiles = find_npy_outputs(args.run_dir, args.tiles_dir);
  std::error_code ec;
  if (!fs::exists(request.out_dir, ec)) {  // "out/" is checked as "out", a directory to make
    std::string made = request.out_dir;
    while (made.size() > 1 && made.back() == '/') made.pop_back();
    check_output_location(made);
  }
  const std::vector<std::string> versions = tile_versions(tiles, args.model_version);
  check_export(request, tiles, versions, args.force);
  fs::create_directories(request.out_dir, ec);
  if (ec) throw Error(request.out_dir + ": cannot create the output directory: " + ec.message());
  for (size_t i = 0; i < tiles.size(); ++i) {
    const GeoTile& tile = tiles[i];
    GeoRequest tile_request = request;
    tile_request.dataset_version = versions[i];
    tile_request.description = describe_embeddings(tile_request.dataset_version);
    const std::vector<std::string> written = write_geo_outputs(tile_request, tile, false);
    std::cout << fmt::format("{}: -> {}\n", tile.grid, fmt::join(written, ", ")) << std::flush;
  }
}

}  // namespace

void add_export_command(CLI::App& root) {
  auto* cmd = root.add_subcommand(
      "export", "Turn existing .npy outputs into GeoTIFFs or zone stores (as infer --format)");
  auto args = std::make_shared<ExportArgs>();
  cmd->add_option("run", args->run_dir,
                  "A directory of <grid>.npy + <grid>_scales.npy (an infer output directory, or "
                  "geotessera's NPY downloads)")
      ->required();
  cmd->add_option("--format", args->formats, "Formats to write, comma separated: geotiff, zarr")
      ->required();
  cmd->add_option("-o,--output", args->out_dir, "Output directory (default: the run directory)");
  cmd->add_option("--year", args->year, "The year of the observations (TESSERA_YEAR)")
      ->check(whole_number_in(1970, 2100));
  cmd->add_option("--tiles-dir", args->tiles_dir,
                  "Where the tiles' roi.tiff (DIR/<grid>/roi.tiff) or landmasks (DIR/<grid>.tiff) "
                  "are");
  cmd->add_option("--model-version", args->model_version,
                  "The model version of outputs that record none: v1.0-early, v1.0, v1.1 or v2")
      ->check(CLI::IsMember({"v1.0-early", "v1.0", "v1.1", "v2"}));
  cmd->add_flag("--force", args->force, "Replace existing output files");
  cmd->callback([args] { run_export(*args); });
}

}  // namespace tessera::cli
