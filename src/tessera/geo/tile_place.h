#pragma once
// Where a tile lies on Earth: its grid read from a GeoTIFF beside its arrays (upstream's
// roi.tiff, geotessera's landmask tiff), or computed from a grid name `grid_<lon>_<lat>` the
// way geotessera's landmasks are made (0.1 degree cells, UTM, 10 m pixels).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tessera/geo/tile_geometry.h"

namespace tessera {

// The centre of a 0.1 degree cell, as its grid name spells it ("grid_0.15_52.05").
struct GridCell {
  double lon = 0;
  double lat = 0;
};

// The cell a grid name names: "grid_<lon>_<lat>" with decimal numbers, lon in [-180, 180] and
// lat in [-90, 90]; nullopt for any other name.
std::optional<GridCell> parse_grid_name(const std::string& grid);

// "grid_0.15_52.05": the grid name of a cell, two decimals.
std::string grid_name_of(const GridCell& cell);

// The cell's landmask grid: UTM zone floor((lon + 180) / 6) + 1 (no exceptions), EPSG 326NN
// north of the equator (lat >= 0), else 327NN; the cell's four corners (lon +- 0.05,
// lat +- 0.05) projected there; origin = their least easting and greatest northing (not
// snapped); width and height = their extent / 10 m, rounded. `source` says "grid name <grid>".
TileGeometry grid_cell_geometry(const GridCell& cell);

// The grid of a GeoTIFF: its CRS (projected; EPSG code when it has one), north-up geotransform
// of square pixels, size. Throws Error naming `path`: not readable by GDAL, no CRS, a CRS that
// is not projected, no geotransform, a rotated or not north-up grid, pixels that are not square.
TileGeometry read_raster_geometry(const std::string& path);

// Writes `geometry` as a single-band uint8 GeoTIFF of value 1 everywhere (an roi.tiff) at
// `path`, which the caller makes atomic (it writes a temp path and renames).
void write_roi_tiff(const std::string& path, const TileGeometry& geometry);

// How a tile's place was found.
struct TilePlace {
  std::optional<TileGeometry> geometry;  // nullopt: nowhere (no raster, no grid name)
  std::optional<GridCell> cell;          // from the grid name, when it is one
  // When the geometry came from the grid name: one line saying so (for stderr); else "".
  std::string note;
};

// A tile's place: the first of `rasters` that exists (roi.tiff, a landmask tiff) read with
// read_raster_geometry, else the landmask grid of its grid name, else nowhere. Throws Error
// when the geometry's size is not the arrays' `height` x `width` (naming both sizes and the
// raster, or the grid name), or when a raster there cannot be read.
TilePlace locate_tile(const std::string& what, const std::string& grid,
                      const std::vector<std::string>& rasters, int64_t height, int64_t width);

// "<dir>/roi.tiff": where a tile (flat or nested layout) keeps its roi.tiff.
std::string roi_tiff_path(const std::string& tile_dir);

}  // namespace tessera
