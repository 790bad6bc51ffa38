#pragma once
// Whole-tile scans: time-major passes over a tile's mapped arrays (sequential reads), used to
// choose the pixels to compute and to count each pixel's valid observations.

#include <cstdint>
#include <vector>

#include "tessera/io/npy.h"

namespace tessera {

// For each pixel p of the (steps, H, W, bands) array `a` of a tile `width` pixels wide (bands 1
// for a (steps, H, W) mask), adds the number of steps at which any band is non-zero to
// counts[p]. Integer arrays are read as raw bytes (a value is non-zero exactly when one of its
// bytes is); a float array is converted, and must hold only finite values (the model would turn
// NaN or infinity into a meaningless embedding): otherwise throws Error naming the file and the
// first such place.
void count_nonzero_steps(const NpyArray& a, int64_t steps, int64_t plane, int64_t width, int bands,
                         std::vector<int32_t>& counts);

// Throws like count_nonzero_steps when a day of year in `doys` is NaN or infinite.
void check_doys(const NpyArray& doys);

}  // namespace tessera
