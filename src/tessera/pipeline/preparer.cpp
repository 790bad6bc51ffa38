#include "tessera/pipeline/preparer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "tessera/common/error.h"
#include "tessera/pipeline/sampler.h"
#include "tessera/pipeline/tile_scan.h"

namespace tessera {

std::vector<int64_t> valid_pixels(const Tile& tile, int min_valid_s1_steps) {
  const int64_t plane = tile.pixels();
  for (const NpyArray* doys : {&tile.s2_doys, &tile.s1_asc_doys, &tile.s1_desc_doys}) {
    check_doys(*doys);
  }
  std::vector<int32_t> s2_count(static_cast<std::size_t>(plane), 0);
  count_nonzero_steps(tile.s2_bands, tile.t2, plane, tile.width, kS2Bands, s2_count);
  // S1 is scanned for the rule, and for values that are not finite in float arrays.
  const bool check_s1 = min_valid_s1_steps > 0 && tile.ta + tile.td > 0;
  std::vector<int32_t> s1_count;
  if (check_s1 || dtype_is_float(tile.s1_asc.dtype()) || dtype_is_float(tile.s1_desc.dtype())) {
    s1_count.assign(static_cast<std::size_t>(plane), 0);
    count_nonzero_steps(tile.s1_asc, tile.ta, plane, tile.width, kS1Bands, s1_count);
    count_nonzero_steps(tile.s1_desc, tile.td, plane, tile.width, kS1Bands, s1_count);
  }
  std::vector<int64_t> out;
  for (int64_t p = 0; p < plane; ++p) {
    const auto i = static_cast<std::size_t>(p);
    if (s2_count[i] == 0) continue;
    if (check_s1 && s1_count[i] < min_valid_s1_steps) continue;
    out.push_back(p);
  }
  return out;
}

PixelPreparer::PixelPreparer(const Tile& tile, int s2_steps, int s1_steps)
    : tile_(tile),
      stats_(input_stats("v1.0")),
      s2_steps_(s2_steps),
      s1_steps_(s1_steps),
      plane_(tile.pixels()) {
  s2_doys_.resize(static_cast<std::size_t>(tile.t2));
  tile.s2_doys.read_as_float(0, tile.t2, s2_doys_.data());
  // Ascending then descending; an empty direction is one step at doy 180.
  for (const auto* d : {&tile.s1_asc_doys, &tile.s1_desc_doys}) {
    if (d->size() == 0) {
      s1_doys_.push_back(kEmptyS1Doy);
    } else {
      const std::size_t at = s1_doys_.size();
      s1_doys_.resize(at + static_cast<std::size_t>(d->size()));
      d->read_as_float(0, d->size(), s1_doys_.data() + at);
    }
  }
  const std::size_t t1 = s1_doys_.size();
  masks_.resize(static_cast<std::size_t>(tile.t2));
  s1_values_.resize(t1 * kS1Bands);
  valid_.resize(std::max(static_cast<std::size_t>(tile.t2), t1));
  picked_.resize(static_cast<std::size_t>(std::max({s2_steps, s1_steps, 1})));
  bands_.resize(kS2Bands);
}

void PixelPreparer::prepare(int64_t pixel, int64_t offset, float* s2_out, float* s1_out) {
  // S2: clear steps (mask non-zero), or every step if none is clear.
  const int64_t t2 = tile_.t2;
  tile_.s2_masks.read_as_double(pixel, t2, masks_.data(), plane_);
  int64_t n = 0;
  for (int64_t t = 0; t < t2; ++t) {
    if (masks_[static_cast<std::size_t>(t)] != 0.0) valid_[static_cast<std::size_t>(n++)] = t;
  }
  if (n == 0) {
    for (int64_t t = 0; t < t2; ++t) valid_[static_cast<std::size_t>(t)] = t;
    n = t2;
  }
  select_steps(valid_.data(), n, s2_steps_, offset, picked_.data());
  for (int k = 0; k < s2_steps_; ++k) {
    const int64_t t = picked_[static_cast<std::size_t>(k)];
    tile_.s2_bands.read_as_float((t * plane_ + pixel) * kS2Bands, kS2Bands, bands_.data());
    float* row = s2_out + int64_t{k} * (kS2Bands + 1);
    for (int b = 0; b < kS2Bands; ++b) {
      row[b] =
          standardise(bands_[static_cast<std::size_t>(b)], stats_.s2_mean[b], stats_.s2_std[b]);
    }
    row[kS2Bands] = s2_doys_[static_cast<std::size_t>(t)];
  }

  // S1: ascending then descending steps, raw values; an empty direction is one zero step.
  double* v = s1_values_.data();
  const NpyArray* dirs[2] = {&tile_.s1_asc, &tile_.s1_desc};
  const int64_t steps[2] = {tile_.ta, tile_.td};
  for (int d = 0; d < 2; ++d) {
    if (steps[d] == 0) {
      v[0] = v[1] = 0.0;
      v += kS1Bands;
      continue;
    }
    for (int64_t t = 0; t < steps[d]; ++t, v += kS1Bands) {
      dirs[d]->read_as_double((t * plane_ + pixel) * kS1Bands, kS1Bands, v);
    }
  }
  const auto t1 = static_cast<int64_t>(s1_doys_.size());
  n = 0;
  for (int64_t t = 0; t < t1; ++t) {
    const double* s = s1_values_.data() + t * kS1Bands;
    if (s[0] != 0.0 || s[1] != 0.0) valid_[static_cast<std::size_t>(n++)] = t;
  }
  if (n == 0) {
    for (int64_t t = 0; t < t1; ++t) valid_[static_cast<std::size_t>(t)] = t;
    n = t1;
  }
  select_steps(valid_.data(), n, s1_steps_, offset, picked_.data());
  for (int k = 0; k < s1_steps_; ++k) {
    const int64_t t = picked_[static_cast<std::size_t>(k)];
    const double* s = s1_values_.data() + t * kS1Bands;
    float* row = s1_out + int64_t{k} * (kS1Bands + 1);
    for (int b = 0; b < kS1Bands; ++b) {
      row[b] = standardise(static_cast<float>(s[b]), stats_.asc_mean[b], stats_.asc_std[b]);
    }
    row[kS1Bands] = s1_doys_[static_cast<std::size_t>(t)];
  }
}

void PixelPreparer::prepare_batch(const int64_t* pixels, int64_t count, int64_t offset,
                                  float* s2_out, float* s1_out) {
  for (int64_t k = 0; k < count; ++k) {
    prepare(pixels[k], offset, s2_out + k * s2_row_floats(), s1_out + k * s1_row_floats());
  }
}

void PixelPreparer::prepare_batch(const int64_t* pixels, int64_t count, int64_t offset,
                                  StepCounts steps, float* s2_out, float* s1_out) {
  if (steps.s2 != s2_steps_ || steps.s1 != s1_steps_) {
    throw Error(fmt::format("{}: the sampled pipeline prepares {} + {} steps, not {} + {}",
                            tile_.dir, s2_steps_, s1_steps_, steps.s2, steps.s1));
  }
  prepare_batch(pixels, count, offset, s2_out, s1_out);
}

}  // namespace tessera
