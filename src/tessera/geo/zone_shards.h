#pragma once
// Writing a tile's values into the shards of one sharded array of a zone group.
//
// Invariant: a shard file is only ever replaced whole. update_shard takes the shard's lock
// ("<shard>.lock" beside it), reads the old shard's index, writes the new shard to
// "<shard>.partial" (untouched inner chunks copied byte for byte, touched ones decoded, patched
// and encoded again), fsyncs it and renames it over the shard. A process killed at any moment
// leaves the old shard or the new one; two processes patching one shard take turns, and each
// starts from what the other committed, so neither loses the other's pixels.

#include <cstdint>
#include <string>

#include "tessera/geo/zarr_metadata.h"

namespace tessera {

// A tile's values for one array, planar: (planes, height, width) C-order items of the array's
// item size, of which the array takes the first spec.planes() planes. (row, col) is the tile's
// top-left pixel in the zone grid.
struct PlanarPatch {
  const void* data = nullptr;
  int height = 0;
  int width = 0;
  std::int64_t row = 0;
  std::int64_t col = 0;
};

// Writes the part of `patch` that falls in shard (shard_row, shard_col) of `spec` into the
// shard file `shard_path` (its directory exists). An inner chunk left holding nothing but the
// fill value is stored absent. A corrupt old shard throws (zarr_shard.h) and is left as it is.
void update_shard(const std::string& shard_path, const ShardedArraySpec& spec,
                  std::int64_t shard_row, std::int64_t shard_col, const PlanarPatch& patch);

}  // namespace tessera
