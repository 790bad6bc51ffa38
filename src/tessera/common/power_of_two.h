#pragma once

#include <cstdint>

namespace tessera {

// The smallest power of two >= n (1 for n <= 1).
inline int64_t power_of_two_at_least(int64_t n) {
  int64_t size = 1;
  while (size < n) size *= 2;
  return size;
}

}  // namespace tessera
