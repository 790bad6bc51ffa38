#pragma once
// Where a tile lies on Earth, and a view of its embeddings: what the geospatial writers
// (GeoTIFF, Zarr zone stores) and readers (roi.tiff, grid names) share.

#include <cstdint>
#include <string>

namespace tessera {

// A north-up grid of square pixels in a projected CRS. Pixel (row r, column c) covers
// x in [origin_x + c * pixel_size, origin_x + (c + 1) * pixel_size) and
// y in (origin_y - (r + 1) * pixel_size, origin_y - r * pixel_size]; rows count down.
struct TileGeometry {
  std::string crs_wkt;     // the CRS as WKT, never empty
  int epsg = 0;            // its EPSG code; 0 when it has none
  double origin_x = 0;     // west edge of column 0, in the CRS's units (metres)
  double origin_y = 0;     // north edge of row 0
  double pixel_size = 10;  // metres; no rotation
  int width = 0;
  int height = 0;
  std::string source;  // what it was read from, for messages ("<tile>/roi.tiff", ...)
};

// The UTM zone (1..60) of EPSG 326NN (north) or 327NN (south); 0 for any other code.
constexpr int utm_zone_of(int epsg) {
  if (epsg >= 32601 && epsg <= 32660) return epsg - 32600;
  if (epsg >= 32701 && epsg <= 32760) return epsg - 32700;
  return 0;
}

constexpr bool is_southern_utm(int epsg) {
  return epsg >= 32701 && epsg <= 32760;
}

// One tile's outputs as tessera writes them: int8 codes (height, width, dims) row-major and a
// float32 scale per pixel (height, width). Value = code * scale; a scale of 0 marks a pixel
// without an embedding (no valid observation). The memory belongs to the caller.
struct TileEmbeddingsView {
  const std::int8_t* codes = nullptr;
  const float* scales = nullptr;
  int height = 0;
  int width = 0;
  int dims = 0;
};

}  // namespace tessera
