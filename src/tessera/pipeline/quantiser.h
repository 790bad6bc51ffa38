#pragma once
// Symmetric int8 quantisation of embeddings (PIPELINE.md, "Output"), and the float32 mean of
// repeated passes.
//
// For a vector x of `dim` float32 values, all arithmetic in float32:
//   scale = max(max|x| / 127, 1e-8)
//   q[i]  = clip(round_half_to_even(x[i] / scale), -128, 127)
// NaN inputs quantise to 0 (numpy leaves that case undefined). Dequantised value = q * scale.

#include <cstdint>

namespace tessera {

constexpr float kMinQuantScale = 1e-8f;

void quantize_embedding(const float* x, int dim, int8_t* q, float* scale);

// quantize_embedding() for `count` vectors stored one after another (q likewise; one scale
// per vector).
void quantize_embeddings(const float* x, int64_t count, int dim, int8_t* q, float* scales);

// Repeat averaging: acc[i] += x[i] for each pass, then divide by the pass count once, in
// float32 (the order numpy's mean over a stacked (R, ...) float32 array uses).
void accumulate(const float* x, int64_t n, float* acc);
void divide_by(int64_t n, int repeats, float* acc);

}  // namespace tessera
