#include "tessera/pipeline/sampler.h"

#include <algorithm>

namespace tessera {

void select_steps(const int64_t* valid, int64_t n, int n_out, int64_t offset, int64_t* out) {
  if (n_out <= 0) return;
  if (n == 0) {
    std::fill(out, out + n_out, 0);
    return;
  }
  if (n <= n_out) {
    for (int k = 0; k < n_out; ++k) out[k] = valid[k % n];
    std::sort(out, out + n_out);
    return;
  }
  // numpy.linspace(0, n, n_out + 1): k * (n / n_out), with the last point exactly n.
  const double step = static_cast<double>(n) / static_cast<double>(n_out);
  auto bin = [&](int k) {
    return k == n_out ? n : static_cast<int64_t>(static_cast<double>(k) * step);
  };
  for (int k = 0; k < n_out; ++k) {
    const int64_t lo = bin(k);
    int64_t hi = bin(k + 1);
    if (hi <= lo) hi = lo + 1;
    const int64_t width = hi - lo;
    int64_t m = offset % width;
    if (m < 0) m += width;
    out[k] = valid[std::min(lo + m, n - 1)];
  }
}

std::vector<int64_t> select_steps(const std::vector<int64_t>& valid, int n_out, int64_t offset) {
  std::vector<int64_t> out(static_cast<std::size_t>(std::max(n_out, 0)));
  select_steps(valid.data(), static_cast<int64_t>(valid.size()), n_out, offset, out.data());
  return out;
}

}  // namespace tessera
