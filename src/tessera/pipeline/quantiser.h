#pragma once
// Symmetric int8 quantisation of embeddings (PIPELINE.md, "Output"), and the float32 mean of
// repeated passes.
//
// For a vector x of `dim` float32 values, all arithmetic in float32:
//   scale = max(max|x| / 127, 1e-8)
//   q[i]  = clip(round_half_to_even(x[i] / scale), -128, 127)
// Dequantised value = q * scale. A vector holding NaN or an infinity has no meaningful
// quantisation (NaN would become an all-zero row, infinity a scale of inf): it throws
// NonFiniteOutput and writes nothing.

#include <cstdint>

#include "tessera/common/error.h"

namespace tessera {

constexpr float kMinQuantScale = 1e-8f;

// A model output that is NaN or infinite. The quantiser knows only the vector; the caller,
// which knows the tile, the pixel and the model, catches it and throws its own one-line Error.
class NonFiniteOutput : public Error {
 public:
  NonFiniteOutput(int element, float value);
  int element() const { return element_; }  // index in the vector of the first such value
  float value() const { return value_; }
  // "nan", "inf" or "-inf", as numpy prints them.
  const char* kind() const;

 private:
  int element_;
  float value_;
};

// Throws NonFiniteOutput (before writing q or scale) when x holds NaN or an infinity.
void quantize_embedding(const float* x, int dim, int8_t* q, float* scale);

// The v2 students' rule (MODEL_FAMILY.md §D), all arithmetic in float32:
//   absmax = max(max|x|, 1e-12); scale = absmax / 127
//   q[i]   = clip(round_half_to_even(x[i] / scale), -127, 127)
// Same NonFiniteOutput contract.
constexpr float kMinQuantAbsmaxV2 = 1e-12f;
void quantize_embedding_v2(const float* x, int dim, int8_t* q, float* scale);

// quantize_embedding() for `count` vectors stored one after another (q likewise; one scale
// per vector).
void quantize_embeddings(const float* x, int64_t count, int dim, int8_t* q, float* scales);

// Repeat averaging: acc[i] += x[i] for each pass, then divide by the pass count once, in
// float32 (the order numpy's mean over a stacked (R, ...) float32 array uses).
void accumulate(const float* x, int64_t n, float* acc);
void divide_by(int64_t n, int repeats, float* acc);

}  // namespace tessera
