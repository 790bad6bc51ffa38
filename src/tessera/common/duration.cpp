#include "tessera/common/duration.h"

#include <fmt/format.h>

#include <cmath>

namespace tessera {

std::string human_duration(double seconds) {
  if (!std::isfinite(seconds)) return "n/a";
  constexpr double kMinute = 60.0, kHour = 3600.0, kDay = 86400.0, kYear = 365.0 * 86400.0;
  if (seconds < kMinute) return fmt::format("{:.1f} s", seconds);
  if (seconds < 90.0 * kMinute) return fmt::format("{:.1f} min", seconds / kMinute);
  if (seconds < 48.0 * kHour) return fmt::format("{:.1f} h", seconds / kHour);
  if (seconds < kYear) return fmt::format("{:.1f} d", seconds / kDay);
  return fmt::format("{:.1f} y", seconds / kYear);
}

}  // namespace tessera
