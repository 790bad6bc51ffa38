#pragma once
// Summary statistics of timing samples. Welford's update keeps the variance numerically
// stable however many samples arrive.

#include <vector>

namespace tessera {

struct SampleStats {
  double mean = 0;
  double sd = 0;  // sample standard deviation (n - 1); 0 for fewer than 2 samples
  double median = 0;
  double p99 = 0;  // nearest-rank 99th percentile
  double min = 0;
  double max = 0;
};

SampleStats summarize(const std::vector<double>& samples);

}  // namespace tessera
