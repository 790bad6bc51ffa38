#pragma once
// Durations as people read them, for progress lines, projections and reports.

#include <string>

namespace tessera {

// "42.0 s", "12.5 min", "14.4 h", "18.9 d", "3.1 y": one decimal, the largest unit that keeps
// the number >= 1 (minutes from 60 s, hours from 90 min, days from 48 h, years from 365 d);
// "n/a" when not finite.
std::string human_duration(double seconds);

}  // namespace tessera
