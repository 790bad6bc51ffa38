#include "tessera/pipeline/tile_plan.h"

#include <algorithm>
#include <tuple>

#include "tessera/pipeline/tile_scan.h"

namespace tessera {

TilePlan fixed_batches(std::vector<int64_t> pixels, int64_t batch, StepCounts steps) {
  TilePlan plan;
  plan.pixels = std::move(pixels);
  const auto n = static_cast<int64_t>(plan.pixels.size());
  for (int64_t start = 0; start < n; start += batch) {
    plan.starts.push_back(start);
    plan.steps.push_back(steps);
  }
  plan.starts.push_back(n);
  return plan;
}

ObservationCounts count_observations(const Tile& tile) {
  const int64_t plane = tile.pixels();
  for (const NpyArray* doys : {&tile.s2_doys, &tile.s1_asc_doys, &tile.s1_desc_doys}) {
    check_doys(*doys);
  }
  ObservationCounts counts;
  counts.s2.assign(static_cast<std::size_t>(plane), 0);
  counts.s1.assign(static_cast<std::size_t>(plane), 0);
  count_nonzero_steps(tile.s2_masks, tile.t2, plane, tile.width, 1, counts.s2);
  count_nonzero_steps(tile.s1_asc, tile.ta, plane, tile.width, kS1Bands, counts.s1);
  count_nonzero_steps(tile.s1_desc, tile.td, plane, tile.width, kS1Bands, counts.s1);
  if (dtype_is_float(tile.s2_bands.dtype())) {  // only a float array can hold NaN
    std::vector<int32_t> unused(static_cast<std::size_t>(plane), 0);
    count_nonzero_steps(tile.s2_bands, tile.t2, plane, tile.width, kS2Bands, unused);
  }
  return counts;
}

StepCounts bucket_steps(const TilePipeline& pipeline, int64_t s2_count, int64_t s1_count) {
  if (s2_count == 0 && s1_count == 0 && pipeline.skips_empty_pixels) return {0, 0};
  const int64_t empty = pipeline.empty_modality_is_one_step ? 1 : kMinBucket;
  return {s2_count > 0 ? bucket_length(s2_count) : empty,
          s1_count > 0 ? bucket_length(s1_count) : empty};
}

TilePlan bucket_batches(const ObservationCounts& counts, const TilePipeline& pipeline,
                        int64_t batch) {
  // (-(s2 + s1), s2, s1, pixel): sorting puts the longest groups first, each in pixel order.
  std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t>> order;
  order.reserve(counts.s2.size());
  for (size_t p = 0; p < counts.s2.size(); ++p) {
    const StepCounts s = bucket_steps(pipeline, counts.s2[p], counts.s1[p]);
    if (s.s2 == 0) continue;
    order.emplace_back(-(s.s2 + s.s1), s.s2, s.s1, static_cast<int64_t>(p));
  }
  std::sort(order.begin(), order.end());
  TilePlan plan;
  plan.pixels.reserve(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    const auto& [cost, s2, s1, pixel] = order[i];
    const bool new_group =
        i == 0 || std::get<1>(order[i - 1]) != s2 || std::get<2>(order[i - 1]) != s1;
    const bool full = !plan.starts.empty() && static_cast<int64_t>(i) - plan.starts.back() >= batch;
    if (new_group || full) {
      plan.starts.push_back(static_cast<int64_t>(i));
      plan.steps.push_back({s2, s1});
    }
    plan.pixels.push_back(pixel);
  }
  plan.starts.push_back(static_cast<int64_t>(order.size()));
  return plan;
}

}  // namespace tessera
