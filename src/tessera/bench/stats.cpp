#include "tessera/bench/stats.h"

#include <algorithm>
#include <cmath>

namespace tessera {

SampleStats summarize(const std::vector<double>& samples) {
  SampleStats stats;
  if (samples.empty()) return stats;
  double mean = 0, m2 = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const double delta = samples[i] - mean;
    mean += delta / static_cast<double>(i + 1);
    m2 += delta * (samples[i] - mean);
  }
  stats.mean = mean;
  stats.sd = samples.size() > 1 ? std::sqrt(m2 / static_cast<double>(samples.size() - 1)) : 0.0;
  std::vector<double> sorted = samples;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  stats.median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  const size_t rank = static_cast<size_t>(std::ceil(0.99 * static_cast<double>(n)));
  stats.p99 = sorted[std::max<size_t>(rank, 1) - 1];
  stats.min = sorted.front();
  stats.max = sorted.back();
  return stats;
}

}  // namespace tessera
