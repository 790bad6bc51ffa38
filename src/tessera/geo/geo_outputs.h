#pragma once
// The output formats of a tile's embeddings and the one step that makes the geospatial ones.
//
// A tile's `.npy` outputs (int8 codes and float32 scales, docs/PIPELINE.md) are always written:
// they are what a run journals, resumes and records. The geospatial formats are made from them
// once they are committed: write_geo_outputs maps them back (io/npy.h), finds where the tile
// lies (tile_place.h) and writes each requested format. `tessera infer` calls it per tile under
// the tile's lock; `tessera export` calls it for outputs that already exist.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tessera/geo/tile_place.h"
#include "tessera/geo/zarr_metadata.h"

namespace tessera {

struct OutputFormats {
  bool geotiff = false;  // "<out>/<grid>.tif", a COG (geotiff.h)
  bool zarr = false;     // the zone store (zone_store.h)
  bool any_geo() const { return geotiff || zarr; }
};

// "npy", "geotiff", "npy,geotiff", ...: a comma list of npy, geotiff and zarr (npy is always
// written; naming it is allowed). Throws UsageError "<flag>: ..." for an unknown or empty name.
OutputFormats parse_output_formats(const std::string& text, const std::string& flag);

// What the geospatial step writes, for every tile of a run.
struct GeoRequest {
  OutputFormats formats;
  std::string out_dir;          // where "<grid>.tif" goes
  int year = 0;                 // TESSERA_YEAR (0: not given)
  std::string store;            // the zarr store ("": <out_dir>/tessera.zarr)
  std::string dataset_version;  // the model's version, TESSERA_DATASET_VERSION
  std::string description;      // TESSERA_DESCRIPTION
};

// The zone store a request writes: --store, or "<out_dir>/tessera.zarr".
std::string zarr_store_path(const GeoRequest& request);

// The store layout of a model version ("v1.0", "v2", ...) at `dims` values: the version without
// its "v", and for v2 the depth arrays (4, 16) below `dims`.
ZoneStoreLayout zone_store_layout(const std::string& dataset_version, int dims);

// "Tessera <version> embeddings: ...": the description a geospatial output carries.
std::string describe_embeddings(const std::string& dataset_version);

// The final files the step writes for `grid`, then the temporary files it makes beside them
// while writing ("<out>/<grid>.tif", "<out>/<grid>.tif.partial", ...).
std::vector<std::string> geo_output_paths(const GeoRequest& request, const std::string& grid);
std::vector<std::string> geo_temp_paths(const GeoRequest& request, const std::string& grid);

// One tile's embeddings and where its place may be read.
struct GeoTile {
  std::string what;                  // the tile, for messages ("tiles/grid_0.15_52.05")
  std::string grid;                  // names the outputs; a grid name places the tile
  std::string embeddings, scales;    // the .npy outputs: int8 (H, W, D), float32 (H, W)
  std::vector<std::string> rasters;  // GeoTIFFs that place it, first found wins (roi.tiff)
  // Upstream v2's float32 (H, W, D) embeddings without scales (`scales` is ""): quantised per
  // pixel when read, scale = absmax / 127, code = round(value / scale) (upstream v2's --int8).
  bool float_values = false;
  // The model version the files' names or dtype tell ("v1.1": <prefix>_emb128_int8.npy; "v2":
  // float32 values); "" when they tell none.
  std::string named_version;
};

// The tiles of existing .npy outputs under `run_dir`, sorted by grid, in `run_dir` itself or in
// a subdirectory named <grid> (geotessera's downloads: grid_X_Y/grid_X_Y.npy): "<grid>.npy"
// with "<grid>_scales.npy" (tessera, upstream v1.0, v2 --int8, geotessera),
// "<grid>_emb128_int8.npy" with "<grid>_emb128_scales.npy" (upstream v1.1), or a float32
// "<grid>.npy" alone (upstream v2). Their rasters, first found wins:
// "<tiles_dir>/<grid>/roi.tiff" (the tile the outputs came from), "<tiles_dir>/<grid>.tiff" (a
// folder of geotessera landmasks), "<root>/landmasks/<version>/<grid>.tiff" when `run_dir` is
// "<root>/npy/<version>/<year>" (geotessera's download tree), "<dir of the .npy>/<grid>.tiff"
// (a landmask beside them). Throws Error "<run_dir>: ..." when it cannot be read or holds no
// such outputs.
std::vector<GeoTile> find_npy_outputs(const std::string& run_dir, const std::string& tiles_dir);

// The tile's place for `request`, checked before any work: throws Error when the formats need
// a place and the tile has none ("<what>: cannot place it on Earth: ..."), when its raster or
// grid does not match H x W, and (zarr) when its CRS is not UTM. Says on `note` (may be null)
// when the place comes from the grid name.
TilePlace require_tile_place(const GeoRequest& request, const GeoTile& tile, int64_t height,
                             int64_t width, std::string* note);

// With zarr, checks before any tile runs that the store takes a tile at `place` made by a model
// of `dataset_version` ("v1.1") at `dims` values: throws the Error its write would
// (zone_store.h: check_zone_store), so that a mismatched store costs no inference.
void check_zarr_store_accepts(const GeoRequest& request, const TilePlace& place,
                              const std::string& dataset_version, int dims);

// Writes the requested formats of `tile` from its .npy outputs (checking their dtypes and
// shapes), each atomically. With `only_missing`, a format whose file exists is left as it is.
// Returns the files written.
std::vector<std::string> write_geo_outputs(const GeoRequest& request, const GeoTile& tile,
                                           bool only_missing);

}  // namespace tessera
