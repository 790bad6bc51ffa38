#pragma once
// The one clock tessera times with (monotonic), and the seconds since a point of it.

#include <chrono>

namespace tessera {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace tessera
