#include "tessera/pipeline/bucket_preparer.h"

#include <fmt/format.h>

#include <algorithm>

#include "tessera/common/error.h"
#include "tessera/pipeline/preparer.h"

namespace tessera {
namespace {

constexpr int kS2Row = kS2Bands + 1;
constexpr int kS1Row = kS1Bands + 1;

std::vector<float> doys_of(const NpyArray& doys) {
  std::vector<float> out(static_cast<std::size_t>(doys.size()));
  doys.read_as_float(0, doys.size(), out.data());
  return out;
}

}  // namespace

BucketPreparer::BucketPreparer(const Tile& tile, const TilePipeline& pipeline)
    : tile_(tile),
      pipeline_(pipeline),
      stats_(input_stats(pipeline.stats)),
      plane_(tile.pixels()),
      s2_doys_(doys_of(tile.s2_doys)),
      asc_doys_(doys_of(tile.s1_asc_doys)),
      desc_doys_(doys_of(tile.s1_desc_doys)) {
  if (!pipeline.bucketed) throw Error("BucketPreparer needs a bucketed pipeline (v1.1 or v2)");
  masks_.resize(static_cast<std::size_t>(tile.t2));
  valid_.resize(static_cast<std::size_t>(tile.t2));
  picked_.resize(static_cast<std::size_t>(kMaxBucket));
  s1_rows_.resize(static_cast<std::size_t>((tile.ta + tile.td) * kS1Row));
  bands_.resize(kS2Bands);
  sar_.resize(kS1Bands);
}

void BucketPreparer::check_length(int64_t n, int64_t steps, const char* modality,
                                  int64_t pixel) const {
  int64_t expected = bucket_length(n);
  if (n == 0) expected = pipeline_.empty_modality_is_one_step ? 1 : kMinBucket;
  if (steps != expected) {
    throw Error(fmt::format("{}: pixel {}: {} valid {} observations take {} steps, not {}",
                            tile_.dir, pixel, n, modality, expected, steps));
  }
}

void BucketPreparer::prepare_s2(int64_t pixel, int64_t steps, float* out) {
  const int64_t t2 = tile_.t2;
  tile_.s2_masks.read_as_double(pixel, t2, masks_.data(), plane_);
  int64_t n = 0;
  for (int64_t t = 0; t < t2; ++t) {
    if (masks_[static_cast<std::size_t>(t)] != 0.0) valid_[static_cast<std::size_t>(n++)] = t;
  }
  check_length(n, steps, "S2", pixel);
  if (n == 0) {
    std::fill_n(out, steps * kS2Row, 0.0f);
    return;
  }
  resample_indices(pipeline_.resampling, n, steps, picked_.data());
  for (int64_t k = 0; k < steps; ++k) {
    const int64_t t = valid_[static_cast<std::size_t>(picked_[static_cast<std::size_t>(k)])];
    tile_.s2_bands.read_as_float((t * plane_ + pixel) * kS2Bands, kS2Bands, bands_.data());
    float* row = out + k * kS2Row;
    for (int b = 0; b < kS2Bands; ++b) {
      row[b] =
          standardise(bands_[static_cast<std::size_t>(b)], stats_.s2_mean[b], stats_.s2_std[b]);
    }
    row[kS2Bands] = s2_doys_[static_cast<std::size_t>(t)];
  }
}

int64_t BucketPreparer::append_valid_orbit_rows(const NpyArray& sar, int64_t orbit_steps,
                                                const std::vector<float>& doys, const float* mean,
                                                const float* stddev, int64_t pixel, int64_t at) {
  int64_t added = 0;
  for (int64_t t = 0; t < orbit_steps; ++t) {
    sar.read_as_double((t * plane_ + pixel) * kS1Bands, kS1Bands, sar_.data());
    if (sar_[0] == 0.0 && sar_[1] == 0.0) continue;  // no data: both raw bands 0
    float* row = s1_rows_.data() + (at + added) * kS1Row;
    for (int b = 0; b < kS1Bands; ++b) {
      row[b] =
          standardise(static_cast<float>(sar_[static_cast<std::size_t>(b)]), mean[b], stddev[b]);
    }
    row[kS1Bands] = doys[static_cast<std::size_t>(t)];
    ++added;
  }
  return added;
}

void BucketPreparer::prepare_s1(int64_t pixel, int64_t steps, float* out) {
  int64_t n = append_valid_orbit_rows(tile_.s1_asc, tile_.ta, asc_doys_, stats_.asc_mean,
                                      stats_.asc_std, pixel, 0);
  n += append_valid_orbit_rows(tile_.s1_desc, tile_.td, desc_doys_, stats_.desc_mean,
                               stats_.desc_std, pixel, n);
  check_length(n, steps, "S1", pixel);
  if (n == 0) {
    std::fill_n(out, steps * kS1Row, 0.0f);
    return;
  }
  resample_indices(pipeline_.resampling, n, steps, picked_.data());
  for (int64_t k = 0; k < steps; ++k) {
    const float* row = s1_rows_.data() + picked_[static_cast<std::size_t>(k)] * kS1Row;
    std::copy_n(row, kS1Row, out + k * kS1Row);
  }
}

void BucketPreparer::prepare(int64_t pixel, StepCounts steps, float* s2_out, float* s1_out) {
  prepare_s2(pixel, steps.s2, s2_out);
  prepare_s1(pixel, steps.s1, s1_out);
}

void BucketPreparer::prepare_batch(const int64_t* pixels, int64_t count, int64_t /*offset*/,
                                   StepCounts steps, float* s2_out, float* s1_out) {
  for (int64_t k = 0; k < count; ++k) {
    prepare(pixels[k], steps, s2_out + k * steps.s2 * kS2Row, s1_out + k * steps.s1 * kS1Row);
  }
}

std::unique_ptr<InputPreparer> make_input_preparer(const Tile& tile, const TilePipeline& pipeline) {
  if (pipeline.bucketed) return std::make_unique<BucketPreparer>(tile, pipeline);
  return std::make_unique<PixelPreparer>(tile, static_cast<int>(pipeline.sampled_steps.s2),
                                         static_cast<int>(pipeline.sampled_steps.s1));
}

}  // namespace tessera
