#pragma once
// How the native engine's tests compare outputs: relative error, the worst cosine, and whether
// this CPU offers an instruction set (oneDNN's effective ISA, so ONEDNN_MAX_CPU_ISA counts).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <dnnl.hpp>
#include <vector>

namespace tessera::testing {

// max |a - b| / max |b|.
inline double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double difference = 0.0, largest = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference = std::max(difference, std::fabs(double(a[i]) - double(b[i])));
    largest = std::max(largest, std::fabs(double(b[i])));
  }
  return difference / largest;
}

// The smallest cosine similarity between corresponding pixel outputs of width `dim`.
inline double min_cosine(const std::vector<float>& a, const std::vector<float>& b, int64_t dim) {
  double lowest = 1.0;
  for (size_t p = 0; p < a.size() / static_cast<size_t>(dim); ++p) {
    double ab = 0.0, aa = 0.0, bb = 0.0;
    for (int64_t i = 0; i < dim; ++i) {
      const double x = a[p * dim + i], y = b[p * dim + i];
      ab += x * y;
      aa += x * x;
      bb += y * y;
    }
    lowest = std::min(lowest, ab / std::sqrt(aa * bb));
  }
  return lowest;
}

inline bool cpu_offers(dnnl::cpu_isa wanted) {
  const unsigned isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  return (isa & static_cast<unsigned>(wanted)) == static_cast<unsigned>(wanted);
}

}  // namespace tessera::testing
