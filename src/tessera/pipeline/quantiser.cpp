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

// max|x| over x[0..dim); throws NonFiniteOutput when x holds NaN or an infinity.
float finite_max_abs(const float* x, int dim) {
  float max_abs = 0.0f;
  bool finite = true;
  for (int i = 0; i < dim; ++i) {
    const float a = std::fabs(x[i]);
    finite = finite && a <= FLT_MAX;  // false for NaN and infinity
    max_abs = std::fmax(max_abs, a);
  }
  if (!finite) throw_non_finite(x, dim);
  return max_abs;
}

// q[i] = clip(round_half_to_even(x[i] / s), lowest, 127).
void round_codes(const float* x, int dim, float s, float lowest, int8_t* q) {
  // std::nearbyint rounds in the current mode; the default (FE_TONEAREST) is half to even.
  // Callers never change the mode; we do not pay for fesetround on the hot path.
  for (int i = 0; i < dim; ++i) {
    const float r = std::fmin(std::fmax(std::nearbyint(x[i] / s), lowest), 127.0f);
    q[i] = static_cast<int8_t>(r);
  }
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
  const float s = std::fmax(finite_max_abs(x, dim) / 127.0f, kMinQuantScale);
  round_codes(x, dim, s, -128.0f, q);
  *scale = s;
}

void quantize_embedding_v2(const float* x, int dim, int8_t* q, float* scale) {
  const float s = std::fmax(finite_max_abs(x, dim), kMinQuantAbsmaxV2) / 127.0f;
  round_codes(x, dim, s, -127.0f, q);
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
