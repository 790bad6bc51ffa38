#include "tessera/pipeline/quantiser.h"

#include <cfloat>
#include <cmath>
#include <string>

namespace tessera {
namespace {

[[noreturn]] void throw_non_finite(const float* x, int dim) {
  for (int i = 0; i < dim; ++i) {
    if (!std::isfinite(x[i])) throw NonFiniteOutput(i, x[i]);
  }
  throw NonFiniteOutput(0, x[0]);  // not reached: the caller saw one
}

}  // namespace

NonFiniteOutput::NonFiniteOutput(int element, float value)
    : Error("non-finite value at element " + std::to_string(element)),
      element_(element),
      value_(value) {}

const char* NonFiniteOutput::kind() const {
  if (std::isnan(value_)) return "nan";
  return value_ > 0 ? "inf" : "-inf";
}

void quantize_embedding(const float* x, int dim, int8_t* q, float* scale) {
  float max_abs = 0.0f;
  bool finite = true;
  for (int i = 0; i < dim; ++i) {
    const float a = std::fabs(x[i]);
    finite = finite && a <= FLT_MAX;  // false for NaN and infinity
    max_abs = std::fmax(max_abs, a);
  }
  if (!finite) throw_non_finite(x, dim);
  const float s = std::fmax(max_abs / 127.0f, kMinQuantScale);
  // std::nearbyint rounds in the current mode; the default (FE_TONEAREST) is half to even.
  // Callers never change the mode; we do not pay for fesetround on the hot path.
  for (int i = 0; i < dim; ++i) {
    float r = std::nearbyint(x[i] / s);
    r = std::fmin(std::fmax(r, -128.0f), 127.0f);
    q[i] = static_cast<int8_t>(r);
  }
  *scale = s;
}

void quantize_embeddings(const float* x, int64_t count, int dim, int8_t* q, float* scales) {
  for (int64_t k = 0; k < count; ++k) {
    quantize_embedding(x + k * dim, dim, q + k * dim, scales + k);
  }
}

void accumulate(const float* x, int64_t n, float* acc) {
  for (int64_t i = 0; i < n; ++i) acc[i] += x[i];
}

void divide_by(int64_t n, int repeats, float* acc) {
  const auto r = static_cast<float>(repeats);
  for (int64_t i = 0; i < n; ++i) acc[i] /= r;
}

}  // namespace tessera
