#pragma once
// Test helpers: write small dpixel tiles with chosen dtypes and awkward content, and run
// /usr/bin/python3 snippets. Header-only; used by tests/io and tests/pipeline.

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "tessera/io/npy.h"

namespace tessera::testing {

inline std::string test_dir(const std::string& name) {
  const std::string dir = std::string(TESSERA_TEST_TMP) + "/" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Converts `values` to the bytes of `dtype` (no float16).
inline std::vector<uint8_t> encode(DType dtype, const std::vector<double>& values) {
  std::vector<uint8_t> out(values.size() * dtype_size(dtype));
  for (std::size_t i = 0; i < values.size(); ++i) {
    uint8_t* p = out.data() + i * dtype_size(dtype);
    const double v = values[i];
    auto put = [p](auto x) { std::memcpy(p, &x, sizeof x); };
    switch (dtype) {
      case DType::kBool:
        put(static_cast<uint8_t>(v != 0));
        break;
      case DType::kInt8:
        put(static_cast<int8_t>(v));
        break;
      case DType::kUInt8:
        put(static_cast<uint8_t>(v));
        break;
      case DType::kInt16:
        put(static_cast<int16_t>(v));
        break;
      case DType::kUInt16:
        put(static_cast<uint16_t>(v));
        break;
      case DType::kInt32:
        put(static_cast<int32_t>(v));
        break;
      case DType::kUInt32:
        put(static_cast<uint32_t>(v));
        break;
      case DType::kInt64:
        put(static_cast<int64_t>(v));
        break;
      case DType::kUInt64:
        put(static_cast<uint64_t>(v));
        break;
      case DType::kFloat32:
        put(static_cast<float>(v));
        break;
      case DType::kFloat64:
        put(v);
        break;
      case DType::kFloat16:
        std::abort();
    }
  }
  return out;
}

inline void write_values(const std::string& path, DType dtype, const std::vector<int64_t>& shape,
                         const std::vector<double>& values) {
  write_npy(path, dtype, shape, encode(dtype, values).data());
}

struct TestTileSpec {
  int64_t t2 = 7, height = 5, width = 4, ta = 3, td = 2;
  DType bands = DType::kInt16;
  DType masks = DType::kUInt8;
  DType doys = DType::kInt16;
  DType sar = DType::kInt16;
  bool nested = true;
  uint64_t seed = 1;
};

// Random content with known awkward pixels: pixel 0 has no S2 data at all, pixel 1 has no
// clear S2 step, pixel 2 has no S1 data at all; elsewhere ~30% of masks are 0 and ~15% of
// S1 observations are 0. Band values are integers (or, for float dtypes, have fractions).
inline void write_test_tile(const std::string& dir, const TestTileSpec& s) {
  namespace fs = std::filesystem;
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string s2 = s.nested ? dir + "/s2" : dir;
  const std::string s1 = s.nested ? dir + "/s1" : dir;
  fs::create_directories(s2);
  fs::create_directories(s1);
  std::mt19937_64 rng(s.seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const int64_t plane = s.height * s.width;
  const bool float_bands = dtype_is_float(s.bands);
  auto band_value = [&](double hi) {
    double v = u(rng) * hi;
    return float_bands ? v : std::floor(v);
  };
  std::vector<double> bands(static_cast<std::size_t>(s.t2 * plane * 10));
  std::vector<double> masks(static_cast<std::size_t>(s.t2 * plane));
  for (int64_t t = 0; t < s.t2; ++t) {
    for (int64_t p = 0; p < plane; ++p) {
      for (int b = 0; b < 10; ++b) {
        const double v = p == 0 ? 0.0 : (u(rng) < 0.05 ? 0.0 : band_value(10000.0));
        bands[static_cast<std::size_t>((t * plane + p) * 10 + b)] = v;
      }
      masks[static_cast<std::size_t>(t * plane + p)] = (p == 1 || u(rng) < 0.3) ? 0 : 1;
    }
  }
  auto doys = [&](int64_t n) {
    std::vector<double> d(static_cast<std::size_t>(n));
    for (auto& x : d) x = 1 + std::floor(u(rng) * 365);
    std::sort(d.begin(), d.end());
    return d;
  };
  write_values(s2 + "/bands.npy", s.bands, {s.t2, s.height, s.width, 10}, bands);
  write_values(s2 + "/masks.npy", s.masks, {s.t2, s.height, s.width}, masks);
  write_values(s2 + "/doys.npy", s.doys, {s.t2}, doys(s.t2));
  const std::pair<const char*, int64_t> dirs[2] = {{"sar_ascending", s.ta},
                                                   {"sar_descending", s.td}};
  for (const auto& [name, steps] : dirs) {
    std::vector<double> sar(static_cast<std::size_t>(steps * plane * 2));
    for (int64_t t = 0; t < steps; ++t) {
      for (int64_t p = 0; p < plane; ++p) {
        const bool gap = p == 2 || u(rng) < 0.15;
        for (int b = 0; b < 2; ++b) {
          sar[static_cast<std::size_t>((t * plane + p) * 2 + b)] =
              gap ? 0.0 : std::floor(1000 + u(rng) * 8000);
        }
      }
    }
    write_values(s1 + "/" + name + ".npy", s.sar, {steps, s.height, s.width, 2}, sar);
    write_values(s1 + "/" + name + "_doy.npy", s.doys, {steps}, doys(steps));
  }
}

// Runs the system python3 (with numpy) on `args`; returns its exit status (0 = success).
inline int run_python(const std::string& args) {
  const std::string cmd = std::string(TESSERA_PYTHON3) + " " + args;
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

}  // namespace tessera::testing
