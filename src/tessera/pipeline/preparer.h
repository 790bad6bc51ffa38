#pragma once
// Per-pixel model inputs from a dpixel tile (PIPELINE.md, "Per-pixel inputs"), and the choice
// of which pixels are computed at all.
//
// Float policy: every value is converted to float32 first, then normalised in float32 as
// (v - mean) / (std + 1e-9) with mean and std float32 — exactly what numpy does for the
// producers' dtypes (int8/uint8/int16/uint16/float32 bands). In float32, std + 1e-9 == std
// for every std here (the smallest ulp is ~1e-4), so the divisor is the float32 std; we keep
// the addition in float32 to state it. For int32/int64/float64 bands numpy would promote to
// float64; we stay in float32 (at most 1 ulp apart). The day of year is float32(doy).

#include <cstdint>
#include <vector>

#include "tessera/io/tile.h"
#include "tessera/pipeline/input_preparer.h"
#include "tessera/pipeline/tile_pipeline.h"

namespace tessera {

constexpr int kDefaultSampleSteps = 40;
// A valid pixel needs at least this many S1 steps with a non-zero band (when any S1 data
// exists). Tessera v1.0 uses 0, which makes the rule always true.
constexpr int kMinValidTimesteps = 0;
// Day of year given to the all-zero step that stands in for an empty S1 direction.
constexpr float kEmptyS1Doy = 180.0f;

// Flat pixel indices (i * W + j, ascending) of the pixels to compute: any S2 band non-zero at
// any step, and, if the tile has S1 steps, at least `min_valid_s1_steps` S1 steps with a
// non-zero band. Scans the S2 and S1 bands once, time-major (sequential reads of the mapping),
// and throws Error naming the file and place of the first band value or day of year that is NaN
// or infinite (float tiles only can hold one), before any output exists.
std::vector<int64_t> valid_pixels(const Tile& tile, int min_valid_s1_steps = kMinValidTimesteps);

// Writes one pixel's model inputs. One instance per worker thread: it owns the scratch
// buffers (sized once in the constructor, so prepare() never allocates) and the tile's day-of-
// year columns as float32. The Tile must outlive it and is only read.
//
// Output rows, C order: s2 [s2_steps][11] = 10 normalised bands + doy;
//                       s1 [s1_steps][3]  = 2 normalised bands (VV, VH) + doy.
// S1 steps are the ascending steps followed by the descending ones; a direction with no steps
// contributes one all-zero step with doy 180.
class PixelPreparer : public InputPreparer {
 public:
  PixelPreparer(const Tile& tile, int s2_steps = kDefaultSampleSteps,
                int s1_steps = kDefaultSampleSteps);

  int s2_steps() const { return s2_steps_; }
  int s1_steps() const { return s1_steps_; }
  int64_t s2_row_floats() const { return int64_t{s2_steps_} * (kS2Bands + 1); }
  int64_t s1_row_floats() const { return int64_t{s1_steps_} * (kS1Bands + 1); }

  // `pixel` = i * W + j; `offset` = the repeat index r (0, 1, ...).
  void prepare(int64_t pixel, int64_t offset, float* s2_out, float* s1_out);

  // prepare() for pixels[0..count): pixel k's rows at s2_out + k * s2_row_floats() and
  // s1_out + k * s1_row_floats() (the layout of a batch tensor).
  void prepare_batch(const int64_t* pixels, int64_t count, int64_t offset, float* s2_out,
                     float* s1_out);
  // The same, through the InputPreparer seam: `steps` must be this preparer's.
  void prepare_batch(const int64_t* pixels, int64_t count, int64_t offset, StepCounts steps,
                     float* s2_out, float* s1_out) override;

 private:
  const Tile& tile_;
  const InputStats& stats_;  // "v1.0": pooled S1 statistics for both passes
  int s2_steps_;
  int s1_steps_;
  int64_t plane_;  // H * W

  std::vector<float> s2_doys_;  // T2
  std::vector<float> s1_doys_;  // T1 = max(Ta, 1) + max(Td, 1)
  // Scratch (contents meaningless between calls).
  std::vector<double> masks_;      // T2
  std::vector<double> s1_values_;  // T1 * 2
  std::vector<int64_t> valid_;     // max(T2, T1)
  std::vector<int64_t> picked_;    // max(s2_steps, s1_steps)
  std::vector<float> bands_;       // 10
};

}  // namespace tessera
