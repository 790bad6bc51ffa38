#pragma once
// The native engine's own element-wise kernels (everything that is not a matmul): matmul inputs
// in the working precision, LayerNorm with its residual, the day-of-year encoding, the attention
// softmax, the GRU gates and the attention pooling. All compute in float32; rows are independent
// and are shared among the calling thread's OpenMP team.

#include <cstdint>
#include <vector>

#include "tessera/engine/native/native_linear.h"

namespace tessera {

// A matmul input [rows, cols] in the type its matmul reads: float32 (possibly the float32
// activations themselves), bf16, or s8/u8 with one scale per row (x[r, :] = row_scales[r] * q[r,
// :]; u8 holds non-negative rows only).
struct NativeOperand {
  NativeType type = NativeType::f32;
  int64_t cols = 0;
  void* data = nullptr;
  float* row_scales = nullptr;

  // Writes row `row` from float32 `values` (nothing to do when they are already that row).
  void store_row(int64_t row, const float* values) const;
};

// y[r, :] = row_scales[r] * y[r, :] + bias (then ReLU when asked) in place, for the rows of an
// int8 matmul's output; row_scales nullptr means 1, bias nullptr means 0. Stores each finished
// row into `out` unless it is nullptr.
void finish_rows(float* y, const float* row_scales, const float* bias, bool relu, int64_t rows,
                 int64_t cols, const NativeOperand* out);

// finish_rows for a bf16 matmul output: out.store_row(r, row_scales[r] * y[r, :] + bias (then
// ReLU)); `out` may be y itself.
void finish_bf16_rows(const uint16_t* y, const float* row_scales, const float* bias, bool relu,
                      int64_t rows, int64_t cols, const NativeOperand& out);

// x[r, :] = LayerNorm(x[r, :] + row_scales[r] * delta[r, :] + bias) * gamma + beta (eps 1e-5),
// then out.store_row(r, x[r, :]). row_scales and bias may be nullptr.
void add_and_normalize(float* x, const float* delta, const float* row_scales, const float* bias,
                       const float* gamma, const float* beta, int64_t rows, int64_t cols,
                       const NativeOperand& out);

// dst[r, :] = the first `bands` values of input row r (rows of `features` floats).
void gather_bands(const float* input, int64_t rows, int64_t features, int64_t bands, float* dst);

// The day-of-year frequencies div_i = exp(2i * -(ln 10000 / cols)), i < cols / 2: computed in
// double and rounded (v1.0), or in float32 throughout (`float32`: the other versions, upstream's
// arithmetic; MODEL_FAMILY.md 0.1).
std::vector<float> day_of_year_frequencies(int64_t cols, bool float32);

// x[r, 2i] += sin(doy_r * div_i), x[r, 2i + 1] += cos(doy_r * div_i), with doy_r the last value of
// input row r and div = day_of_year_frequencies; then out.store_row(r, x[r, :]).
void add_day_of_year(float* x, const float* input, int64_t rows, int64_t features, int64_t cols,
                     const float* div, const NativeOperand& out);

// x[r, :] = LayerNorm(x[r, :]) * gamma + beta (eps 1e-5) in place, then ReLU when asked; gamma
// and beta nullptr: a LayerNorm without parameters.
void normalize_rows(float* x, int64_t rows, int64_t cols, const float* gamma, const float* beta,
                    bool relu);

// The QK RMSNorm of qkv [rows, 3d] float32 (q | k | v, head h owning columns h * hd .. of each
// third): every head of q and of k becomes u / sqrt(mean(u^2) + 2^-23) * gain ([hd], shared by
// the heads), v is unchanged; then out.store_row(r, row) (out.cols = 3d; out may be qkv itself).
void rms_normalize_heads(float* qkv, int64_t rows, int64_t d, int64_t heads, const float* q_gain,
                         const float* k_gain, const NativeOperand& out);

// x[r, :] = softmax(scale * x[r, :]) in place, then out.store_row(r, x[r, :]).
void softmax_rows(float* x, int64_t rows, int64_t cols, float scale, const NativeOperand& out);

// out.store_row(r, y[r, :]) for every row (rows of out.cols floats).
void store_rows(const float* y, int64_t rows, const NativeOperand& out);

// GRU pooling state. gi [batch * steps, 3d] holds x_t @ [W_ir | W_iz | W_ih] + [b_r | b_z | b_h]
// (row b * steps + t), h [batch, d] the state, states [batch * steps, d] every step's h.
struct NativeGruStep {
  const float* gi;
  int64_t batch, steps, d, t;
  float* h;
  float* z;       // [batch, d], kept from gates to update
  float* states;  // [batch * steps, d]
};
// Step 0 (h = 0): h = sigmoid(gi_z) * tanh(gi_h); stores h into states and `h_out`.
void gru_first_step(const NativeGruStep& s, const NativeOperand& h_out);
// r and z from gh [batch, 2d] = h @ [W_hr | W_hz]; stores r * h into `rh_out`, z into s.z.
void gru_gates(const NativeGruStep& s, const float* gh, const NativeOperand& rh_out);
// h += z * (tanh(gi_h + gn) - h) with gn [batch, d] = (r * h) @ W_hh; stores h into states and
// `h_out`.
void gru_update(const NativeGruStep& s, const float* gn, const NativeOperand& h_out);

// One step of nn.GRU (gate order r, z, n; v1.0 early) from gi [batch * steps, 3d] = x_t @ W_ih +
// b_ih and gh [batch, 3d] = h @ W_hh + b_hh: n = tanh(gi_n + r * gh_n) (b_hn inside the reset
// product), h = n + z * (h - n); stores h into states and `h_out`. s.z is unused.
void torch_gru_step(const NativeGruStep& s, const float* gh, const NativeOperand& h_out);

// pooled[b, :] (row stride `pooled_stride`) = sum_t w_t x[b * steps + t, :], with w = softmax over
// t of LayerNorm(states row) . score_w + score_b; gamma nullptr: no LayerNorm (the states row
// itself is scored; states may be x).
void attention_pool(const float* states, const float* x, const float* gamma, const float* beta,
                    const float* score_w, float score_b, int64_t batch, int64_t steps, int64_t d,
                    float* pooled, int64_t pooled_stride);

}  // namespace tessera
