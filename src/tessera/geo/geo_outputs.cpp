#include "tessera/geo/geo_outputs.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
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

// Upstream v2's per-pixel int8 quantisation of float32 values (H, W, D): scale = absmax / 127,
// code = round(value / scale), half to even as numpy rounds. A pixel of zeros or with a value
// that is not finite has no embedding (scale 0, codes 0).
void quantise_pixels(const float* values, std::int64_t pixels, int dims, std::int8_t* codes,
                     float* scales) {
  for (std::int64_t p = 0; p < pixels; ++p) {
    const float* v = values + p * dims;
    float absmax = 0.0f;
    bool finite = true;
    for (int c = 0; c < dims; ++c) {
      finite = finite && std::isfinite(v[c]);
      absmax = std::max(absmax, std::fabs(v[c]));
    }
    const float scale = finite ? absmax / 127.0f : 0.0f;
    scales[p] = scale;
    for (int c = 0; c < dims; ++c) {
      const float code = scale > 0.0f ? std::nearbyint(v[c] / scale) : 0.0f;
      codes[p * dims + c] = static_cast<std::int8_t>(std::clamp(code, -127.0f, 127.0f));
    }
  }
}

// The tile's .npy outputs, mapped and checked: int8 (H, W, D) and float32 (H, W); or float32
// values (H, W, D), quantised into memory.
class TileEmbeddings {
 public:
  explicit TileEmbeddings(const GeoTile& tile) : codes_(tile.embeddings) {
    if (tile.float_values) {
      quantise();
      return;
    }
    if (codes_.dtype() != DType::kInt8 || codes_.ndim() != 3) {
      throw Error(fmt::format("{}: expected int8 embeddings (H, W, D), got {} {}", codes_.path(),
                              dtype_name(codes_.dtype()), format_shape(codes_.shape())));
    }
    scales_ = NpyArray(tile.scales);
    const std::vector<int64_t> want = {codes_.dim(0), codes_.dim(1)};
    if (scales_.dtype() != DType::kFloat32 || scales_.shape() != want) {
      throw Error(fmt::format("{}: expected float32 scales {} to match {}, got {} {}",
                              scales_.path(), format_shape(want), codes_.path(),
                              dtype_name(scales_.dtype()), format_shape(scales_.shape())));
    }
    view_ = {static_cast<const std::int8_t*>(codes_.data()),
             static_cast<const float*>(scales_.data()), static_cast<int>(codes_.dim(0)),
             static_cast<int>(codes_.dim(1)), static_cast<int>(codes_.dim(2))};
  }

  const TileEmbeddingsView& view() const { return view_; }

 private:
  void quantise() {
    if (codes_.dtype() != DType::kFloat32 || codes_.ndim() != 3) {
      throw Error(fmt::format("{}: expected float32 embeddings (H, W, D), got {} {}", codes_.path(),
                              dtype_name(codes_.dtype()), format_shape(codes_.shape())));
    }
    const std::int64_t pixels = codes_.dim(0) * codes_.dim(1);
    const int dims = static_cast<int>(codes_.dim(2));
    quantised_codes_.resize(static_cast<std::size_t>(pixels * dims));
    quantised_scales_.resize(static_cast<std::size_t>(pixels));
    quantise_pixels(static_cast<const float*>(codes_.data()), pixels, dims, quantised_codes_.data(),
                    quantised_scales_.data());
    view_ = {quantised_codes_.data(), quantised_scales_.data(), static_cast<int>(codes_.dim(0)),
             static_cast<int>(codes_.dim(1)), dims};
  }

  NpyArray codes_;  // int8 codes, or float32 values
  NpyArray scales_;
  std::vector<std::int8_t> quantised_codes_;
  std::vector<float> quantised_scales_;
  TileEmbeddingsView view_;
};

constexpr const char kV11Codes[] = "_emb128_int8";
constexpr const char kV11Scales[] = "_emb128_scales";

bool is_file(const fs::path& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

// The outputs named by `stem` in `dir` ("grid_X_Y" or upstream v1.1's "grid_X_Y_emb128_int8")
// as a GeoTile without rasters, when they are there.
std::optional<GeoTile> npy_outputs_named(const fs::path& dir, const std::string& stem) {
  const fs::path embeddings = dir / (stem + ".npy");
  if (!is_file(embeddings)) return std::nullopt;
  if (stem.ends_with(kV11Codes)) {
    const std::string grid = stem.substr(0, stem.size() - std::strlen(kV11Codes));
    const fs::path scales = dir / (grid + kV11Scales + ".npy");
    if (!is_file(scales)) return std::nullopt;
    return GeoTile{
        embeddings.string(), grid, embeddings.string(), scales.string(), {}, false, "v1.1"};
  }
  const fs::path scales = dir / (stem + "_scales.npy");
  if (is_file(scales))
    return GeoTile{embeddings.string(), stem, embeddings.string(), scales.string(), {}, false, ""};
  const NpyArray values(embeddings.string());
  if (values.dtype() != DType::kFloat32 || values.ndim() != 3) return std::nullopt;
  return GeoTile{embeddings.string(), stem, embeddings.string(), "", {}, true, "v2"};
}

// "<root>/landmasks/<version>" when `run_dir` is "<root>/npy/<version>/<year>"; "" otherwise.
std::string download_landmasks_dir(const std::string& run_dir) {
  fs::path dir = fs::absolute(run_dir).lexically_normal();
  if (!dir.has_filename()) dir = dir.parent_path();
  const fs::path version_dir = dir.parent_path();
  if (version_dir.parent_path().filename() != "npy") return "";
  return (version_dir.parent_path().parent_path() / "landmasks" / version_dir.filename()).string();
}

// The rasters that may place `tile`, found in `dir` (see find_npy_outputs), first found wins.
void add_rasters(GeoTile& tile, const fs::path& dir, const std::string& tiles_dir,
                 const std::string& landmasks_dir) {
  if (!tiles_dir.empty()) {
    tile.rasters.push_back((fs::path(tiles_dir) / tile.grid / "roi.tiff").string());
    tile.rasters.push_back((fs::path(tiles_dir) / (tile.grid + ".tiff")).string());
  }
  if (!landmasks_dir.empty())
    tile.rasters.push_back((fs::path(landmasks_dir) / (tile.grid + ".tiff")).string());
  tile.rasters.push_back((dir / (tile.grid + ".tiff")).string());
}

// The outputs of one directory entry of the run directory: a subdirectory named <grid>, or a
// file "<stem>.npy" (not a scales file).
std::optional<GeoTile> npy_outputs_of_entry(const fs::directory_entry& entry,
                                            const fs::path& run_dir) {
  const std::string name = entry.path().filename().string();
  std::error_code ec;
  if (entry.is_directory(ec)) {
    if (auto tile = npy_outputs_named(entry.path(), name)) return tile;
    return npy_outputs_named(entry.path(), name + kV11Codes);
  }
  if (name.size() <= 4 || !name.ends_with(".npy") || name.ends_with("_scales.npy"))
    return std::nullopt;
  return npy_outputs_named(run_dir, name.substr(0, name.size() - 4));
}

}  // namespace

std::vector<GeoTile> find_npy_outputs(const std::string& run_dir, const std::string& tiles_dir) {
  std::vector<GeoTile> tiles;
  std::error_code ec;
  fs::directory_iterator entries(run_dir, ec);
  if (ec) throw Error(run_dir + ": cannot read the directory: " + ec.message());
  const std::string landmasks_dir = download_landmasks_dir(run_dir);
  for (const fs::directory_entry& entry : entries) {
    std::optional<GeoTile> tile = npy_outputs_of_entry(entry, run_dir);
    if (!tile) continue;
    add_rasters(*tile, fs::path(tile->embeddings).parent_path(), tiles_dir, landmasks_dir);
    tiles.push_back(std::move(*tile));
  }
  if (tiles.empty()) {
    throw Error(run_dir +
                ": holds no embeddings to export (<grid>.npy with <grid>_scales.npy, "
                "<grid>_emb128_int8.npy with <grid>_emb128_scales.npy, a float32 <grid>.npy, "
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

void check_zarr_store_accepts(const GeoRequest& request, const TilePlace& place,
                              const std::string& dataset_version, int dims) {
  if (!request.formats.zarr || !place.geometry) return;
  check_zone_store(zarr_store_path(request), zone_store_layout(dataset_version, dims),
                   utm_zone_of(place.geometry->epsg));
}

std::vector<std::string> write_geo_outputs(const GeoRequest& request, const GeoTile& tile,
                                           bool only_missing) {
  std::vector<std::string> written;
  if (!request.formats.any_geo()) return written;
  const TileEmbeddings embeddings(tile);
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
