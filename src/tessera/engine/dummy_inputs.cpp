#include "tessera/engine/dummy_inputs.h"

#include <algorithm>
#include <random>
#include <vector>

namespace tessera {
namespace {

void fill_rows(float* data, int64_t pixels, int64_t steps, int64_t features, std::mt19937_64& rng) {
  std::normal_distribution<float> band(0.0f, 1.0f);
  std::uniform_int_distribution<int> day(1, 365);
  std::vector<int> days(steps);
  for (int64_t p = 0; p < pixels; ++p) {
    for (auto& d : days) d = day(rng);
    std::sort(days.begin(), days.end());
    for (int64_t t = 0; t < steps; ++t) {
      float* row = data + (p * steps + t) * features;
      for (int64_t f = 0; f + 1 < features; ++f) row[f] = band(rng);
      row[features - 1] = static_cast<float>(days[t]);
    }
  }
}

}  // namespace

void fill_dummy_inputs(Engine& engine, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const ModelShape& shape = engine.shape();
  fill_rows(engine.s2_input(), engine.max_batch(), engine.s2_steps(), shape.s2_features, rng);
  fill_rows(engine.s1_input(), engine.max_batch(), engine.s1_steps(), shape.s1_features, rng);
}

}  // namespace tessera
