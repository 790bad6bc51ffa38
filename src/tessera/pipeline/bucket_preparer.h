#pragma once
// Model inputs of the bucketed pipelines (v1.1 and v2, MODEL_FAMILY.md §C and §D): every valid
// observation of a pixel, resampled to its batch's bucket length.
//
// Per pixel and modality, with n valid observations and the batch's length B:
//   S2  valid frames t (mask != 0) in file order; rows [standardised bands(t), doy(t)] of the
//       frames v[resample(n, B)].
//   S1  valid ascending rows (either raw band != 0), standardised with the ascending statistics,
//       then valid descending rows with the descending ones (no sort by day); resampled alike.
//   n = 0: B rows of zeros (bands 0 in standardised space, day 0): B = 8 in v1.1, 1 in v2.
// Every value is converted to float32 first and standardised in float32.

#include <cstdint>
#include <vector>

#include "tessera/io/tile.h"
#include "tessera/pipeline/input_preparer.h"
#include "tessera/pipeline/tile_pipeline.h"

namespace tessera {

class BucketPreparer : public InputPreparer {
 public:
  // Reads the tile's days of year once; `pipeline` must be bucketed and outlive the preparer.
  BucketPreparer(const Tile& tile, const TilePipeline& pipeline);

  void prepare_batch(const int64_t* pixels, int64_t count, int64_t offset, StepCounts steps,
                     float* s2_out, float* s1_out) override;

  // One pixel's rows: s2_out [steps.s2][11], s1_out [steps.s1][3].
  void prepare(int64_t pixel, StepCounts steps, float* s2_out, float* s1_out);

 private:
  void prepare_s2(int64_t pixel, int64_t steps, float* out);
  void prepare_s1(int64_t pixel, int64_t steps, float* out);
  // Appends pixel's valid rows of one S1 orbit, standardised, to s1_rows_; returns their count.
  int64_t append_valid_orbit_rows(const NpyArray& sar, int64_t orbit_steps,
                                  const std::vector<float>& doys, const float* mean,
                                  const float* stddev, int64_t pixel, int64_t at);
  // Throws Error unless `steps` is the length `pipeline_` gives n valid observations.
  void check_length(int64_t n, int64_t steps, const char* modality, int64_t pixel) const;

  const Tile& tile_;
  const TilePipeline& pipeline_;
  const InputStats& stats_;
  int64_t plane_;  // H * W
  std::vector<float> s2_doys_, asc_doys_, desc_doys_;
  // Scratch (contents meaningless between calls).
  std::vector<double> masks_;    // T2
  std::vector<int64_t> valid_;   // T2
  std::vector<int64_t> picked_;  // kMaxBucket
  std::vector<float> s1_rows_;   // (Ta + Td) x 3
  std::vector<float> bands_;     // 10
  std::vector<double> sar_;      // 2
};

}  // namespace tessera
