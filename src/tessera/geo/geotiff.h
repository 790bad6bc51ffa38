#pragma once
// A tile's embeddings as a Cloud Optimized GeoTIFF (GDAL's COG driver): float32 values
// code x scale, one band per embedding value ("Tessera_Band_<i>"), NaN (the nodata value)
// where the scale is 0, 256 x 256 tiles, ZSTD, nearest-neighbour overviews, the tile's CRS
// and transform, and geotessera's TESSERA_* tags.

#include <optional>
#include <string>
#include <vector>

#include "tessera/geo/tile_geometry.h"
#include "tessera/geo/tile_place.h"

namespace tessera {

struct GeoTiffTags {
  std::string dataset_version;   // TESSERA_DATASET_VERSION: the model's version ("v1.1", ...)
  int year = 0;                  // TESSERA_YEAR; 0: left out
  std::optional<GridCell> cell;  // TESSERA_TILE_LON / _LAT; nullopt: left out
  std::string description;       // TESSERA_DESCRIPTION
};

// "<path>.partial" and GDAL's overview scratch "<path>.partial.ovr.tmp": the files
// write_embeddings_geotiff makes beside `path` while it writes.
std::vector<std::string> geotiff_temp_paths(const std::string& path);

// Writes the COG at `path`, whole or not at all: GDAL writes "<path>.partial" (an AtomicFile),
// which is fsynced and renamed over `path`. The view must be geometry.height x geometry.width.
// Holds the dequantised tile in memory while GDAL compresses it: height x width x dims x 4
// bytes. Throws Error naming `path` when GDAL cannot write it.
void write_embeddings_geotiff(const std::string& path, const TileGeometry& geometry,
                              const TileEmbeddingsView& view, const GeoTiffTags& tags);

}  // namespace tessera
