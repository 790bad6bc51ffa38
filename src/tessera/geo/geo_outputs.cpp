#include "tessera/geo/geo_outputs.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <sstream>

#include "tessera/common/error.h"
#include "tessera/common/output_location.h"
#include "tessera/geo/geotiff.h"
#include "tessera/geo/zone_store.h"
#include "tessera/io/npy.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

std::string geotiff_path(const GeoRequest& request, const std::string& grid) {
  return (fs::path(request.out_dir) / (grid + ".tif")).string();
}

// The tile's .npy outputs, mapped and checked: int8 (H, W, D) and float32 (H, W).
struct MappedEmbeddings {
  NpyArray codes, scales;

  explicit MappedEmbeddings(const GeoTile& tile) : codes(tile.embeddings), scales(tile.scales) {
    if (codes.dtype() != DType::kInt8 || codes.ndim() != 3) {
      throw Error(fmt::format("{}: expected int8 embeddings (H, W, D), got {} {}", codes.path(),
                              dtype_name(codes.dtype()), format_shape(codes.shape())));
    }
    const std::vector<int64_t> want = {codes.dim(0), codes.dim(1)};
    if (scales.dtype() != DType::kFloat32 || scales.shape() != want) {
      throw Error(fmt::format("{}: expected float32 scales {} to match {}, got {} {}",
                              scales.path(), format_shape(want), codes.path(),
                              dtype_name(scales.dtype()), format_shape(scales.shape())));
    }
  }

  TileEmbeddingsView view() const {
    return {static_cast<const std::int8_t*>(codes.data()), static_cast<const float*>(scales.data()),
            static_cast<int>(codes.dim(0)), static_cast<int>(codes.dim(1)),
            static_cast<int>(codes.dim(2))};
  }
};

// The outputs of `grid` in `dir` as a GeoTile, when both files are there.
std::optional<GeoTile> npy_outputs_in(const fs::path& dir, const std::string& grid,
                                      const std::string& tiles_dir) {
  const fs::path embeddings = dir / (grid + ".npy");
  const fs::path scales = dir / (grid + "_scales.npy");
  std::error_code ec;
  if (!fs::is_regular_file(embeddings, ec) || !fs::is_regular_file(scales, ec)) return std::nullopt;
  GeoTile tile{embeddings.string(), grid, embeddings.string(), scales.string(), {}};
  if (!tiles_dir.empty()) {
    tile.rasters.push_back((fs::path(tiles_dir) / grid / "roi.tiff").string());
    tile.rasters.push_back((fs::path(tiles_dir) / (grid + ".tiff")).string());
  }
  tile.rasters.push_back((dir / (grid + ".tiff")).string());
  return tile;
}

}  // namespace

std::vector<GeoTile> find_npy_outputs(const std::string& run_dir, const std::string& tiles_dir) {
  std::vector<GeoTile> tiles;
  std::error_code ec;
  fs::directory_iterator entries(run_dir, ec);
  if (ec) throw Error(run_dir + ": cannot read the directory: " + ec.message());
  for (const fs::directory_entry& entry : entries) {
    const std::string name = entry.path().filename().string();
    std::optional<GeoTile> tile;
    if (entry.is_directory(ec)) {
      tile = npy_outputs_in(entry.path(), name, tiles_dir);
    } else if (name.size() > 4 && name.ends_with(".npy") && !name.ends_with("_scales.npy")) {
      tile = npy_outputs_in(run_dir, name.substr(0, name.size() - 4), tiles_dir);
    }
    if (tile) tiles.push_back(std::move(*tile));
  }
  if (tiles.empty()) {
    throw Error(run_dir +
                ": holds no embeddings to export (<grid>.npy with <grid>_scales.npy, "
                "or grid_X_Y/ folders of them)");
  }
  std::sort(tiles.begin(), tiles.end(),
            [](const GeoTile& a, const GeoTile& b) { return a.grid < b.grid; });
  return tiles;
}

OutputFormats parse_output_formats(const std::string& text, const std::string& flag) {
  OutputFormats formats;
  std::stringstream list(text);
  std::string name;
  int names = 0;
  while (std::getline(list, name, ',')) {
    ++names;
    if (name == "npy") continue;
    if (name == "geotiff") {
      formats.geotiff = true;
    } else if (name == "zarr") {
      formats.zarr = true;
    } else {
      throw UsageError(fmt::format(
          "{}: unknown format '{}' (npy, geotiff or zarr, comma separated)", flag, name));
    }
  }
  if (names == 0 || text.back() == ',')
    throw UsageError(flag + ": expected a comma list of npy, geotiff, zarr, got '" + text + "'");
  return formats;
}

std::string zarr_store_path(const GeoRequest& request) {
  return request.store.empty() ? (fs::path(request.out_dir) / "tessera.zarr").string()
                               : request.store;
}

ZoneStoreLayout zone_store_layout(const std::string& dataset_version, int dims) {
  ZoneStoreLayout layout;
  layout.model_version =
      dataset_version.rfind('v', 0) == 0 ? dataset_version.substr(1) : dataset_version;
  layout.dims = dims;
  // v2's Matryoshka prefixes: geotessera's v2 stores carry the first 4 and 16 values too.
  if (layout.model_version.rfind('2', 0) == 0) {
    for (int depth : {4, 16})
      if (depth < dims) layout.depths.push_back(depth);
  }
  return layout;
}

std::string describe_embeddings(const std::string& dataset_version) {
  return fmt::format(
      "Tessera {} embeddings: float32 value = int8 code x per-pixel scale; NaN where a pixel has "
      "no embedding",
      dataset_version.empty() ? "(version not recorded)" : dataset_version);
}

std::vector<std::string> geo_output_paths(const GeoRequest& request, const std::string& grid) {
  std::vector<std::string> paths;
  if (request.formats.geotiff) paths.push_back(geotiff_path(request, grid));
  return paths;
}

std::vector<std::string> geo_temp_paths(const GeoRequest& request, const std::string& grid) {
  std::vector<std::string> paths;
  if (request.formats.geotiff) paths = geotiff_temp_paths(geotiff_path(request, grid));
  return paths;
}

TilePlace require_tile_place(const GeoRequest& request, const GeoTile& tile, int64_t height,
                             int64_t width, std::string* note) {
  const std::string formats = request.formats.geotiff && request.formats.zarr ? "geotiff,zarr"
                              : request.formats.zarr                          ? "zarr"
                                                                              : "geotiff";
  TilePlace place = locate_tile(tile.what, tile.grid, tile.rasters, height, width);
  if (!place.geometry) {
    throw Error(fmt::format(
        "{}: cannot place it on Earth for --format {}: it has no roi.tiff and its name is not "
        "grid_<lon>_<lat> (npy outputs need no place)",
        tile.what, formats));
  }
  if (request.formats.zarr && utm_zone_of(place.geometry->epsg) == 0) {
    throw Error(
        fmt::format("{}: zarr zone stores need a UTM grid (EPSG:326NN or 327NN), but {} "
                    "is {}",
                    tile.what, place.geometry->source,
                    place.geometry->epsg ? fmt::format("EPSG:{}", place.geometry->epsg)
                                         : "a CRS without an EPSG code"));
  }
  if (note && !place.note.empty()) *note = place.note;
  return place;
}

std::vector<std::string> write_geo_outputs(const GeoRequest& request, const GeoTile& tile,
                                           bool only_missing) {
  std::vector<std::string> written;
  if (!request.formats.any_geo()) return written;
  const MappedEmbeddings embeddings(tile);
  const TileEmbeddingsView view = embeddings.view();
  const TilePlace place = require_tile_place(request, tile, view.height, view.width, nullptr);
  if (request.formats.geotiff) {
    const std::string path = geotiff_path(request, tile.grid);
    require_regular_or_absent(path);
    std::error_code ec;
    if (!(only_missing && fs::exists(path, ec))) {
      const GeoTiffTags tags{request.dataset_version, request.year, place.cell,
                             request.description};
      write_embeddings_geotiff(path, *place.geometry, view, tags);
      written.push_back(path);
    }
  }
  if (request.formats.zarr) {
    // Always written, also for a done tile: a run killed between its .npy outputs and the store
    // left no trace of which tiles the store holds, and writing a tile again is idempotent.
    if (request.dataset_version.empty())
      throw Error(tile.what +
                  ": the version of the model that made its outputs is not recorded "
                  "(no <grid>.tessera.json beside them): a zarr store names it");
    const ZoneStoreTile store_tile{zarr_store_path(request),
                                   zone_store_layout(request.dataset_version, view.dims),
                                   *place.geometry, request.year, view};
    write_tile_to_zone_store(store_tile);
    written.push_back(store_tile.store);
  }
  return written;
}

}  // namespace tessera
