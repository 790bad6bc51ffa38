#pragma once
// The one clock tessera times with (monotonic), the seconds since a point of it, and the wall
// time for records and log lines.

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <chrono>
#include <string>

namespace tessera {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Now, in UTC, to the second: "2026-12-05T18:32:22Z" (ISO 8601).
inline std::string utc_timestamp() {
  return fmt::format("{:%FT%TZ}",
                     std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()));
}

}  // namespace tessera
