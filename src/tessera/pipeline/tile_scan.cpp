#include "tessera/pipeline/tile_scan.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "tessera/common/error.h"

namespace tessera {
namespace {

constexpr int64_t kScanPixels = 4096;  // pixels per chunk in the full-tile scans

// The model reads float32: a value is usable only when it is finite after that conversion
// (float64 1e300 or 4e38 are finite, but become infinity).
bool finite_as_float32(double v) {
  return std::isfinite(static_cast<float>(v));
}

[[noreturn]] void not_finite(const NpyArray& a, double value, const std::string& where) {
  if (!std::isfinite(value)) {
    throw Error(a.path() + ": a value that is not a finite number (NaN or infinity) at " + where);
  }
  throw Error(a.path() + ": value " + fmt::format("{:g}", value) + " at " + where +
              " is too large for float32, the model's input type (at most 3.4e+38 in magnitude)");
}

}  // namespace

// For each pixel p of the (steps, H, W, bands) array `a` of a tile `width` pixels wide, adds the
// number of steps at which any band is non-zero to counts[p]. Integer arrays are read as raw
// bytes (a value is non-zero exactly when one of its bytes is); a float array is converted, and
// must hold only finite values (the model would turn NaN or infinity into a meaningless
// embedding): otherwise throws naming the file and the first such place.
void count_nonzero_steps(const NpyArray& a, int64_t steps, int64_t plane, int64_t width, int bands,
                         std::vector<int32_t>& counts) {
  if (!dtype_is_float(a.dtype())) {
    const auto pixel_bytes = static_cast<int64_t>(bands * dtype_size(a.dtype()));
    const auto* data = static_cast<const uint8_t*>(a.data());
    for (int64_t t = 0; t < steps; ++t) {
      const uint8_t* step = data + t * plane * pixel_bytes;
      for (int64_t p = 0; p < plane; ++p) {
        const uint8_t* v = step + p * pixel_bytes;
        uint64_t any = 0;
        int64_t i = 0;
        for (; i + 8 <= pixel_bytes; i += 8) {
          uint64_t word;
          std::memcpy(&word, v + i, 8);
          any |= word;
        }
        for (; i < pixel_bytes; ++i) any |= v[i];
        counts[static_cast<std::size_t>(p)] += any != 0 ? 1 : 0;
      }
    }
    return;
  }
  std::vector<double> chunk(static_cast<std::size_t>(kScanPixels * bands));
  for (int64_t t = 0; t < steps; ++t) {
    for (int64_t p0 = 0; p0 < plane; p0 += kScanPixels) {
      const int64_t n = std::min(kScanPixels, plane - p0);
      a.read_as_double((t * plane + p0) * bands, n * bands, chunk.data());
      for (int64_t k = 0; k < n; ++k) {
        const double* v = chunk.data() + k * bands;
        bool any = false, finite = true;
        int bad = 0;
        for (int b = 0; b < bands; ++b) {
          any = any || v[b] != 0.0;
          if (finite && !finite_as_float32(v[b])) {
            finite = false;
            bad = b;
          }
        }
        if (!finite) {
          const int64_t p = p0 + k;
          not_finite(a, v[bad],
                     "step " + std::to_string(t) + ", row " + std::to_string(p / width) +
                         ", column " + std::to_string(p % width));
        }
        counts[static_cast<std::size_t>(p0 + k)] += any ? 1 : 0;
      }
    }
  }
}

// Throws like count_nonzero_steps when a day of year in `doys` is NaN or infinite.
void check_doys(const NpyArray& doys) {
  std::vector<double> values(static_cast<std::size_t>(doys.size()));
  doys.read_as_double(0, doys.size(), values.data());
  for (size_t t = 0; t < values.size(); ++t) {
    if (!finite_as_float32(values[t])) not_finite(doys, values[t], "step " + std::to_string(t));
  }
}

}  // namespace tessera
