#pragma once
// Synthetic dpixel tiles that look like real ones to the pipeline: land-cover patches (water,
// forest, crop, grassland, urban, bare) with seasonal reflectance curves over the 10 S2 bands
// (reflectance x 10000), clouds (bright values, mask 0) at a given rate in spatially coherent
// cells, S1 VV/VH backscatter per class, sorted days of year in 1..365, and a fraction of
// no-data pixels (every S2 band zero at every step, S1 zero too).
//
// S1 values are stored as (dB + 40) x 200 in int16 (0 = no data), which puts typical VV/VH
// backscatter (about -12.6 / -25 dB) at the model's S1 means (5484 / 3004).
// With varied_observations, each cloud cell gets its own clear-sky rate instead of `cloud`, so
// that the valid S2 observations of pixels vary as in the length buckets of v1.1 and v2: in 5%
// of cells about 0-8 of the steps are clear, in 3% nearly all (above 256 with 300 steps), and in
// the rest 40-100 steps (the bulk of a real tile; v1.1 pixels average about 68).
// Deterministic: the same options give the same bytes.

#include <cstdint>
#include <functional>
#include <string>

#include "tessera/io/npy.h"

namespace tessera {

// S2 steps of a varied_observations tile unless given: enough for counts above 256.
constexpr int64_t kVariedS2Steps = 300;

struct SynthOptions {
  int64_t height = 64;
  int64_t width = 64;
  int64_t s2_steps = 90;
  int64_t s1_asc_steps = 30;         // 0 = no ascending data: shape (0, H, W, 2)
  int64_t s1_desc_steps = 30;        // 0 = no descending data
  double cloud = 0.4;                // fraction of (step, pixel) observations under cloud
  bool varied_observations = false;  // per-cell clear rates (above); `cloud` unused then
  double nodata = 0.05;              // fraction of pixels with no S2 data at all
  uint64_t seed = 1;
  bool nested = true;                // s2/, s1/ subdirectories; false = flat
  DType band_dtype = DType::kInt16;  // int16 or uint16
};

// Throws UsageError for option values out of range (sizes < 1, rates outside [0, 1], a band
// dtype other than int16/uint16).
void validate(const SynthOptions& options);

// Writes the tile into `dir` atomically ("<dir>.partial", then rename). An existing `dir` is
// an Error unless `force`, in which case it is replaced, but only if it holds nothing but a
// tile's files (s2/, s1/ and their .npy names, or the flat layout's, and roi.tiff): anything else
// there is an Error naming the first such entry, and nothing is touched. `add_files`, when given,
// writes more files into the tile before it is renamed into place (it gets the temporary
// directory); a tile replaced with `force` may hold an roi.tiff too.
void write_synth_tile(const std::string& dir, const SynthOptions& options, bool force,
                      const std::function<void(const std::string& dir)>& add_files = {});

}  // namespace tessera
