#pragma once
// Checks of option values shared by the subcommands: a value out of range is a usage error
// naming the option, not a value silently wrapped, clamped or dropped.

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string>

#include "tessera/common/error.h"
#include "tessera/model/model_description.h"

namespace tessera::cli {

// A whole number 0 .. 2^64 - 1 (seeds).
inline CLI::Validator unsigned_64bit() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        char* end = nullptr;
        errno = 0;
        std::strtoull(text.c_str(), &end, 10);
        const bool digits =
            !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
        if (!digits || errno == ERANGE || *end != '\0')
          return "need a whole number from 0 to 18446744073709551615, got '" + text + "'";
        return "";
      },
      "UINT64");
}

// A finite number above zero (rates, times).
inline CLI::Validator positive_finite() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        char* end = nullptr;
        const double value = std::strtod(text.c_str(), &end);
        if (text.empty() || *end != '\0' || !std::isfinite(value) || value <= 0)
          return "need a finite number above 0, got '" + text + "'";
        return "";
      },
      "POSITIVE");
}

// Upper bounds of counts that cost resources per unit; a value above them is a typo, not a
// request: ONNX Runtime would try to create every one of 100000 threads, and 1000000 repeats of
// a tile would run for months.
constexpr int kMaxIntraOpThreads = 1024;  // more than the PUs of any machine tessera runs on
constexpr int kMaxRepeat = 1000;          // Tessera v1.0 averages 1 to a few passes

// A whole number from `low` to `high` (counts with a bound).
inline CLI::Validator whole_number_in(long low, long high) {
  return CLI::Validator(
      [low, high](std::string& text) -> std::string {
        char* end = nullptr;
        errno = 0;
        const long value = std::strtol(text.c_str(), &end, 10);
        if (text.empty() || *end != '\0' || errno == ERANGE || value < low || value > high) {
          return "need a whole number from " + std::to_string(low) + " to " + std::to_string(high) +
                 ", got '" + text + "'";
        }
        return "";
      },
      "INT in [" + std::to_string(low) + ", " + std::to_string(high) + "]");
}

// "--steps N" (both branches) or "S2/S1" into s2 and s1, each 1..kMaxModelSteps; "0/0" (the
// model's own) only where `model_own_allowed` (the internal bench-worker). Throws UsageError
// naming the value for anything else. Whether the model takes them is checked where it is read.
inline void parse_steps_option(const std::string& text, int64_t& s2, int64_t& s1,
                               bool model_own_allowed = false) {
  const size_t slash = text.find('/');
  const auto number = [&](const std::string& part) {
    const bool digits = !part.empty() && part.size() <= 4 &&
                        part.find_first_not_of("0123456789") == std::string::npos;
    if (!digits)
      throw UsageError("--steps: need N or S2/S1 (e.g. 68 or 68/60), got '" + text + "'");
    return static_cast<int64_t>(std::stoll(part));
  };
  s2 = number(text.substr(0, slash));
  s1 = slash == std::string::npos ? s2 : number(text.substr(slash + 1));
  const auto in_range = [](int64_t steps) { return steps >= 1 && steps <= kMaxModelSteps; };
  if (!(s2 == 0 && s1 == 0 && model_own_allowed) && !(in_range(s2) && in_range(s1))) {
    throw UsageError("--steps: need 1.." + std::to_string(kMaxModelSteps) + " per branch, got '" +
                     text + "'");
  }
}

}  // namespace tessera::cli
