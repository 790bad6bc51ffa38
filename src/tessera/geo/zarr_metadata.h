#pragma once
// The zarr.json documents of a tessera zone store (Zarr v3): the root group, a zone group, its
// sharded arrays (embeddings, depth arrays, scales) and its coordinate arrays (x, y, time,
// band). Every document is made here, so that a store's layout is checked by comparing what is
// on disk with what would be written.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace tessera {

constexpr int kShardSide = 4096;  // pixels on each side of a shard (a zone's H, W are multiples)

// What a store holds: which model's embeddings, how many values each, which Matryoshka depths.
struct ZoneStoreLayout {
  std::string model_version;  // "1.0", "1.1", "2", ...: names the model in geoemb:model
  int dims = 128;             // values per embedding (the `band` dimension)
  std::vector<int> depths;    // extra depth arrays (4, 16) before the full one; empty if none
};

// The fixed grid of one UTM zone group (zone_store.cpp: zone_grid).
struct ZoneGrid {
  int zone = 0;         // 1..60
  double origin_x = 0;  // west edge of column 0, EPSG:326NN metres
  double origin_y = 0;  // north edge of row 0
  std::int64_t width = 0;
  std::int64_t height = 0;
};

// One sharded array of a zone group: int8 embeddings (band count `channels`) or the float32
// scales (`channels` 0: no band dimension).
struct ShardedArraySpec {
  std::string name;    // "embeddings", "embeddings_d4", "embeddings_d16", "scales"
  int channels = 0;    // band count; 0 for scales
  int chunk_side = 0;  // inner chunk: (1, channels, side, side) or (1, side, side)
  int item_size = 0;   // 1 (int8) or 4 (float32)
  // Bands in each chunk (1 for scales), and the bytes of one decoded inner chunk.
  int planes() const { return channels > 0 ? channels : 1; }
  std::size_t chunk_bytes() const {
    return static_cast<std::size_t>(planes()) * chunk_side * chunk_side * item_size;
  }
};

// The sharded arrays of a layout: embeddings, the depth arrays, then scales (written last).
std::vector<ShardedArraySpec> sharded_arrays(const ZoneStoreLayout& layout);

nlohmann::json root_group_json(const ZoneStoreLayout& layout);
nlohmann::json zone_group_json(const ZoneGrid& grid);
nlohmann::json sharded_array_json(const ShardedArraySpec& spec, const ZoneGrid& grid,
                                  std::int64_t years);
// A one-dimensional coordinate array: dtype "float64" or "int32", `chunk` items per chunk,
// blosc-compressed when `compressed` (x and y), raw little-endian otherwise (time, band).
nlohmann::json coordinate_array_json(const std::string& dimension, const std::string& dtype,
                                     std::int64_t length, std::int64_t chunk, bool compressed);

// "" when `found` (a zarr.json read from the store) has every member of `expected` with the
// same value, except the first entry of "shape" (the time axis, which grows); else the first
// difference ("attributes.geoemb:dimensions is 64, expected 128").
std::string layout_difference(const nlohmann::json& found, const nlohmann::json& expected);

}  // namespace tessera
