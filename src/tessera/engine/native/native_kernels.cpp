#include "tessera/engine/native/native_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

// Hot loops are compiled for AVX-512 and AVX2 as well as the baseline x86-64; the loader picks
// the best the CPU runs (the binary stays portable: no -march). Not under ThreadSanitizer: the
// loader runs the clones' resolvers before TSan's runtime exists, and an instrumented resolver
// crashes the program before main (scripts/test.sh's TSan build).
#if defined(__SANITIZE_THREAD__)
#define TESSERA_VECTOR_CLONES
#else
#define TESSERA_VECTOR_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif

namespace tessera {
namespace {

constexpr float kLayerNormEpsilon = 1e-5f;
constexpr float kRmsNormEpsilon = 1.1920928955078125e-07f;  // float32 machine epsilon, 2^-23
constexpr int64_t kRowBlock = 32;

// f(begin, end) over blocks of rows, shared among the OpenMP team.
template <typename Function>
void for_row_blocks(int64_t rows, const Function& f) {
#pragma omp parallel for schedule(static)
  for (int64_t begin = 0; begin < rows; begin += kRowBlock)
    f(begin, std::min(rows, begin + kRowBlock));
}

// Branch-free selections the vectoriser turns into blends (std::min/max return references, which
// it cannot).
inline float larger(float a, float b) {
  return a > b ? a : b;
}
inline float smaller(float a, float b) {
  return a < b ? a : b;
}

// e^x to about 2 ulp for x in [-87, 88] (clamped outside): 2^n * p(r), r = x - n ln 2.
inline float fast_exp(float x) {
  x = smaller(88.0f, larger(-87.0f, x));
  // A NaN x (a NaN input or weight) stays NaN through r below; its step count must still be a
  // number, since converting NaN to an integer is undefined.
  const float steps = x * 1.44269504f + 128.5f;
  const float n = static_cast<float>(static_cast<int32_t>(steps == steps ? steps : 128.5f) - 128);
  const float r = (x - n * 0.693145752f) - n * 1.42860677e-6f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return p * two_n;
}

inline float sigmoid(float x) {
  return 1.0f / (1.0f + fast_exp(-x));
}
inline float fast_tanh(float x) {
  return 2.0f / (1.0f + fast_exp(-2.0f * x)) - 1.0f;
}

inline float row_sum(const float* x, int64_t n) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  return sum;
}

inline float row_abs_max(const float* x, int64_t n) {
  float largest = 0.0f;
#pragma omp simd reduction(max : largest)
  for (int64_t i = 0; i < n; ++i) largest = larger(largest, std::fabs(x[i]));
  return largest;
}

// Rounds half away from zero.
inline int32_t round_to_int(float x) {
  return static_cast<int32_t>(x + (x >= 0.0f ? 0.5f : -0.5f));
}

TESSERA_VECTOR_CLONES
void convert_to_bf16(const float* x, uint16_t* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &x[i], sizeof bits);
    out[i] = static_cast<uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);  // nearest even
  }
}

// out = scale * float(y) + bias (then ReLU) for a bf16 row, in one pass.
TESSERA_VECTOR_CLONES
void widen_and_rescale_row(const uint16_t* y, float scale, const float* bias, bool relu, float* out,
                           int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t bits = static_cast<uint32_t>(y[i]) << 16;
    float value;
    std::memcpy(&value, &bits, sizeof value);
    value = scale * value + (bias ? bias[i] : 0.0f);
    out[i] = relu ? larger(0.0f, value) : value;
  }
}

TESSERA_VECTOR_CLONES
void quantize_row(const float* x, int64_t n, bool unsigned_range, void* out, float* scale) {
  const float largest = row_abs_max(x, n);
  const float levels = unsigned_range ? 255.0f : 127.0f;
  *scale = largest > 0.0f ? largest / levels : 1.0f;
  const float inverse = largest > 0.0f ? levels / largest : 0.0f;
  if (unsigned_range) {
    uint8_t* q = static_cast<uint8_t*>(out);
    for (int64_t i = 0; i < n; ++i)
      q[i] = static_cast<uint8_t>(round_to_int(larger(0.0f, x[i]) * inverse));
  } else {
    int8_t* q = static_cast<int8_t*>(out);
    for (int64_t i = 0; i < n; ++i) q[i] = static_cast<int8_t>(round_to_int(x[i] * inverse));
  }
}

// y = (y - mean) / sqrt(var + eps) * gamma + beta over one row.
TESSERA_VECTOR_CLONES
void normalize_row(float* y, const float* gamma, const float* beta, int64_t n) {
  const float mean = row_sum(y, n) / static_cast<float>(n);
  float squares = 0.0f;
#pragma omp simd reduction(+ : squares)
  for (int64_t i = 0; i < n; ++i) squares += (y[i] - mean) * (y[i] - mean);
  const float inverse = 1.0f / std::sqrt(squares / static_cast<float>(n) + kLayerNormEpsilon);
  if (gamma) {
    for (int64_t i = 0; i < n; ++i) y[i] = (y[i] - mean) * inverse * gamma[i] + beta[i];
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = (y[i] - mean) * inverse;
  }
}

// u = u / sqrt(mean(u^2) + eps) * gain over one head.
TESSERA_VECTOR_CLONES
void rms_normalize(float* u, const float* gain, int64_t n) {
  float squares = 0.0f;
#pragma omp simd reduction(+ : squares)
  for (int64_t i = 0; i < n; ++i) squares += u[i] * u[i];
  const float root = std::sqrt(squares / static_cast<float>(n) + kRmsNormEpsilon);
  for (int64_t i = 0; i < n; ++i) u[i] = u[i] / root * gain[i];
}

TESSERA_VECTOR_CLONES
void add_scaled_row(float* y, const float* delta, float scale, const float* bias, int64_t n) {
  if (bias) {
    for (int64_t i = 0; i < n; ++i) y[i] += scale * delta[i] + bias[i];
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] += scale * delta[i];
  }
}

TESSERA_VECTOR_CLONES
void rescale_row(float* y, float scale, const float* bias, bool relu, int64_t n) {
  if (bias) {
    for (int64_t i = 0; i < n; ++i) y[i] = scale * y[i] + bias[i];
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] *= scale;
  }
  if (relu)
    for (int64_t i = 0; i < n; ++i) y[i] = larger(0.0f, y[i]);
}

TESSERA_VECTOR_CLONES
void softmax_row(float* x, int64_t n) {
  float largest = x[0];
#pragma omp simd reduction(max : largest)
  for (int64_t i = 1; i < n; ++i) largest = larger(largest, x[i]);
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) {
    x[i] = fast_exp(x[i] - largest);
    sum += x[i];
  }
  const float inverse = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inverse;
}

void add_encoding_row(float* x, float doy, const float* div, int64_t cols) {
  for (int64_t i = 0; i < cols / 2; ++i) {
    const float angle = doy * div[i];
    x[2 * i] += std::sin(angle);
    x[2 * i + 1] += std::cos(angle);
  }
}

TESSERA_VECTOR_CLONES
void gru_first_row(const float* gi, int64_t d, float* h) {
  for (int64_t j = 0; j < d; ++j) h[j] = sigmoid(gi[d + j]) * fast_tanh(gi[2 * d + j]);
}

TESSERA_VECTOR_CLONES
void gru_gates_row(const float* gi, const float* gh, const float* h, int64_t d, float* z,
                   float* rh) {
#pragma omp simd
  for (int64_t j = 0; j < d; ++j) {
    rh[j] = sigmoid(gi[j] + gh[j]) * h[j];
    z[j] = sigmoid(gi[d + j] + gh[d + j]);
  }
}

TESSERA_VECTOR_CLONES
void gru_update_row(const float* gi, const float* gn, const float* z, int64_t d, float* h) {
  for (int64_t j = 0; j < d; ++j) h[j] += z[j] * (fast_tanh(gi[2 * d + j] + gn[j]) - h[j]);
}

TESSERA_VECTOR_CLONES
void torch_gru_row(const float* gi, const float* gh, int64_t d, float* h) {
#pragma omp simd
  for (int64_t j = 0; j < d; ++j) {
    const float r = sigmoid(gi[j] + gh[j]);
    const float z = sigmoid(gi[d + j] + gh[d + j]);
    const float n = fast_tanh(gi[2 * d + j] + r * gh[2 * d + j]);
    h[j] = n + z * (h[j] - n);
  }
}

TESSERA_VECTOR_CLONES
float dot(const float* a, const float* b, int64_t n) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

TESSERA_VECTOR_CLONES
void add_scaled(float* y, const float* x, float scale, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += scale * x[i];
}

}  // namespace

void NativeOperand::store_row(int64_t row, const float* values) const {
  switch (type) {
    case NativeType::f32: {
      float* dst = static_cast<float*>(data) + row * cols;
      if (dst != values) std::memcpy(dst, values, static_cast<size_t>(cols) * sizeof(float));
      return;
    }
    case NativeType::bf16:
      convert_to_bf16(values, static_cast<uint16_t*>(data) + row * cols, cols);
      return;
    case NativeType::s8:
      quantize_row(values, cols, false, static_cast<int8_t*>(data) + row * cols, row_scales + row);
      return;
    case NativeType::u8:
      quantize_row(values, cols, true, static_cast<uint8_t*>(data) + row * cols, row_scales + row);
      return;
  }
}

void finish_rows(float* y, const float* row_scales, const float* bias, bool relu, int64_t rows,
                 int64_t cols, const NativeOperand* out) {
  for_row_blocks(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* row = y + r * cols;
      rescale_row(row, row_scales ? row_scales[r] : 1.0f, bias, relu, cols);
      if (out) out->store_row(r, row);
    }
  });
}

void finish_bf16_rows(const uint16_t* y, const float* row_scales, const float* bias, bool relu,
                      int64_t rows, int64_t cols, const NativeOperand& out) {
  for_row_blocks(rows, [&](int64_t begin, int64_t end) {
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = begin; r < end; ++r) {
      widen_and_rescale_row(y + r * cols, row_scales[r], bias, relu, row.data(), cols);
      out.store_row(r, row.data());
    }
  });
}

void add_and_normalize(float* x, const float* delta, const float* row_scales, const float* bias,
                       const float* gamma, const float* beta, int64_t rows, int64_t cols,
                       const NativeOperand& out) {
  for_row_blocks(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* row = x + r * cols;
      add_scaled_row(row, delta + r * cols, row_scales ? row_scales[r] : 1.0f, bias, cols);
      normalize_row(row, gamma, beta, cols);
      out.store_row(r, row);
    }
  });
}

void gather_bands(const float* input, int64_t rows, int64_t features, int64_t bands, float* dst) {
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(dst + r * bands, input + r * features, static_cast<size_t>(bands) * sizeof(float));
}

std::vector<float> day_of_year_frequencies(int64_t cols, bool float32) {
  std::vector<float> div(static_cast<size_t>(cols / 2));
  const double step = -(std::log(10000.0) / static_cast<double>(cols));
  const float step32 = static_cast<float>(step);
  for (int64_t i = 0; i < cols / 2; ++i) {
    div[i] = float32 ? std::exp(static_cast<float>(2 * i) * step32)
                     : static_cast<float>(std::exp(static_cast<double>(2 * i) * step));
  }
  return div;
}

void add_day_of_year(float* x, const float* input, int64_t rows, int64_t features, int64_t cols,
                     const float* div, const NativeOperand& out) {
  for_row_blocks(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      add_encoding_row(x + r * cols, input[r * features + features - 1], div, cols);
      out.store_row(r, x + r * cols);
    }
  });
}

void normalize_rows(float* x, int64_t rows, int64_t cols, const float* gamma, const float* beta,
                    bool relu) {
  for_row_blocks(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      normalize_row(x + r * cols, gamma, beta, cols);
      if (relu) rescale_row(x + r * cols, 1.0f, nullptr, true, cols);
    }
  });
}

void rms_normalize_heads(float* qkv, int64_t rows, int64_t d, int64_t heads, const float* q_gain,
                         const float* k_gain, const NativeOperand& out) {
  const int64_t hd = d / heads;
  for_row_blocks(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* row = qkv + r * 3 * d;
      for (int64_t h = 0; h < heads; ++h) {
        rms_normalize(row + h * hd, q_gain, hd);
        rms_normalize(row + d + h * hd, k_gain, hd);
      }
      out.store_row(r, row);
    }
  });
}

void softmax_rows(float* x, int64_t rows, int64_t cols, float scale, const NativeOperand& out) {
  for_row_blocks(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      rescale_row(x + r * cols, scale, nullptr, false, cols);
      softmax_row(x + r * cols, cols);
      out.store_row(r, x + r * cols);
    }
  });
}

void store_rows(const float* y, int64_t rows, const NativeOperand& out) {
  for_row_blocks(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) out.store_row(r, y + r * out.cols);
  });
}

void gru_first_step(const NativeGruStep& s, const NativeOperand& h_out) {
  for_row_blocks(s.batch, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      float* h = s.h + b * s.d;
      gru_first_row(s.gi + (b * s.steps + s.t) * 3 * s.d, s.d, h);
      std::memcpy(s.states + (b * s.steps + s.t) * s.d, h,
                  static_cast<size_t>(s.d) * sizeof(float));
      h_out.store_row(b, h);
    }
  });
}

void gru_gates(const NativeGruStep& s, const float* gh, const NativeOperand& rh_out) {
  for_row_blocks(s.batch, [&](int64_t begin, int64_t end) {
    std::vector<float> rh(static_cast<size_t>(s.d));
    for (int64_t b = begin; b < end; ++b) {
      gru_gates_row(s.gi + (b * s.steps + s.t) * 3 * s.d, gh + b * 2 * s.d, s.h + b * s.d, s.d,
                    s.z + b * s.d, rh.data());
      rh_out.store_row(b, rh.data());
    }
  });
}

void gru_update(const NativeGruStep& s, const float* gn, const NativeOperand& h_out) {
  for_row_blocks(s.batch, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      float* h = s.h + b * s.d;
      gru_update_row(s.gi + (b * s.steps + s.t) * 3 * s.d, gn + b * s.d, s.z + b * s.d, s.d, h);
      std::memcpy(s.states + (b * s.steps + s.t) * s.d, h,
                  static_cast<size_t>(s.d) * sizeof(float));
      h_out.store_row(b, h);
    }
  });
}

void torch_gru_step(const NativeGruStep& s, const float* gh, const NativeOperand& h_out) {
  for_row_blocks(s.batch, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      float* h = s.h + b * s.d;
      torch_gru_row(s.gi + (b * s.steps + s.t) * 3 * s.d, gh + b * 3 * s.d, s.d, h);
      std::memcpy(s.states + (b * s.steps + s.t) * s.d, h,
                  static_cast<size_t>(s.d) * sizeof(float));
      h_out.store_row(b, h);
    }
  });
}

void attention_pool(const float* states, const float* x, const float* gamma, const float* beta,
                    const float* score_w, float score_b, int64_t batch, int64_t steps, int64_t d,
                    float* pooled, int64_t pooled_stride) {
#pragma omp parallel
  {
    std::vector<float> context(static_cast<size_t>(d)), weights(static_cast<size_t>(steps));
#pragma omp for schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t t = 0; t < steps; ++t) {
        const float* state = states + (b * steps + t) * d;
        if (gamma) {
          std::copy(state, state + d, context.begin());
          normalize_row(context.data(), gamma, beta, d);
          state = context.data();
        }
        weights[t] = dot(state, score_w, d) + score_b;
      }
      softmax_row(weights.data(), steps);
      float* out = pooled + b * pooled_stride;
      std::fill(out, out + d, 0.0f);
      for (int64_t t = 0; t < steps; ++t) add_scaled(out, x + (b * steps + t) * d, weights[t], d);
    }
  }
}

}  // namespace tessera
