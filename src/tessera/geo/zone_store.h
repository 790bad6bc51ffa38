#pragma once
// Writing tiles into a Zarr v3 store laid out as geotessera's zone stores (docs/GEO.md, "Zarr
// zone stores"): one group per UTM zone (`utm01` .. `utm60`) on the northern grid EPSG:326NN,
// arrays (time, band, y, x) of int8 embeddings and (time, y, x) of float32 scales, sharded
// 4096 x 4096 pixels.
//
// Many processes may write into one store at once, and any of them may be killed at any
// moment: metadata is created once and grown (a new year) under the store's lock
// ("<store>/.tessera.lock"), every file lands by rename, and each shard is rewritten under its
// own lock (zone_shards.h). A store is never left half-changed: each file is old or new.

#include <cstdint>
#include <string>

#include "tessera/geo/tile_geometry.h"
#include "tessera/geo/zarr_metadata.h"

namespace tessera {

struct ZoneStoreTile {
  std::string store;              // the store's directory (created when absent)
  ZoneStoreLayout layout;         // must match the store's, when it exists
  TileGeometry geometry;          // a UTM CRS (EPSG 326NN or 327NN), 10 m pixels
  int year = 0;                   // the time axis entry the tile goes to (added when new)
  TileEmbeddingsView embeddings;  // height x width x layout.dims codes and their scales
};

// The fixed grid of zone `zone` (1..60): the same for every zone, centred on its central
// meridian (easting 500 000) and on the equator, wide enough for the zone's 6 degrees at the
// equator and tall enough for both poles, in whole shards. Pixel (row, col) is centred at
// (origin_x + (col + 0.5) * 10, origin_y - (row + 0.5) * 10).
ZoneGrid zone_grid(int zone);

// Copies the tile into its zone group at col = round((x0 - origin_x) / 10), row =
// round((origin_y - y0) / 10), (x0, y0) the tile's origin (southern northings minus
// 10 000 000): codes (H, W, C) become (C, H, W); a scale of 0 or not finite is written NaN
// ("no data within a tile"). Pixels of earlier writes under the tile are replaced. Throws Error
// with one line, before anything is written, for a CRS that is not UTM, pixels other than 10 m,
// a tile outside its zone's grid, or a store of another layout; and for an unwritable store, a
// full disk or a corrupt shard, leaving every file of the store as it was or whole.
void write_tile_to_zone_store(const ZoneStoreTile& tile);

// Throws, changing nothing, the Error write_tile_to_zone_store would throw before writing a tile
// of `layout` into zone `zone` (1..60) of `store`: a store that is not a directory ("<store>: not
// a directory ..."), or one of another layout (its root, and the zone's group and arrays where
// they exist: "<file>: a store of another layout (...)"). Nothing when the store is absent.
void check_zone_store(const std::string& store, const ZoneStoreLayout& layout, int zone);

}  // namespace tessera
