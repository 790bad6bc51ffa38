#pragma once
// Stratified deterministic sampling of time steps (PIPELINE.md, select()).
//
// Given the n valid step indices (ascending), picks n_out of them:
//   n == 0      -> n_out zeros
//   n <= n_out  -> valid repeated end to end, the first n_out kept, sorted ascending
//   n >  n_out  -> bins = linspace(0, n, n_out + 1) in float64; for bin k, lo = int(bins[k]),
//                  hi = max(int(bins[k+1]), lo + 1), pos = lo + offset mod (hi - lo) (Python
//                  modulo: non-negative), out[k] = valid[min(pos, n - 1)].
// Pure function, no allocation.

#include <cstdint>
#include <vector>

namespace tessera {

void select_steps(const int64_t* valid, int64_t n, int n_out, int64_t offset, int64_t* out);

// Convenience form for tests and tools.
std::vector<int64_t> select_steps(const std::vector<int64_t>& valid, int n_out, int64_t offset);

}  // namespace tessera
