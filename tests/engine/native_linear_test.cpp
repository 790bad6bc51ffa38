// NativeLinear and the operand kernels against a plain float64 matmul: every input type, fused
// bias and ReLU, the int8 epilogue, and row counts other than the first primitive's.

#include "tessera/engine/native/native_linear.h"

#include <gtest/gtest.h>

#include <cmath>
#include <dnnl.hpp>
#include <random>
#include <vector>

#include "tessera/engine/native/native_kernels.h"

namespace tessera {
namespace {

constexpr int64_t kIn = 48, kOut = 40;

std::vector<float> random_values(size_t count, uint32_t seed) {
  std::mt19937 generator(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(count);
  for (float& v : values) v = normal(generator);
  return values;
}

// relu?(x @ w + b), in float64.
std::vector<double> reference(const std::vector<float>& x, const std::vector<float>& w,
                              const std::vector<float>& b, int64_t rows, bool relu) {
  std::vector<double> y(static_cast<size_t>(rows * kOut));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t n = 0; n < kOut; ++n) {
      double sum = b[n];
      for (int64_t k = 0; k < kIn; ++k) sum += double(x[r * kIn + k]) * w[k * kOut + n];
      y[r * kOut + n] = relu ? std::max(0.0, sum) : sum;
    }
  }
  return y;
}

bool cpu_offers(dnnl::cpu_isa wanted) {
  const unsigned isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  return (isa & static_cast<unsigned>(wanted)) == static_cast<unsigned>(wanted);
}

// Runs `rows` rows through a Linear of input type `type` (first primitive: 16 rows) and returns
// the largest |y - reference|, the float32 input written as `type` by NativeOperand.
double largest_error(NativeType type, int64_t rows, bool relu) {
  const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const std::vector<float> w = random_values(kIn * kOut, 1), b = random_values(kOut, 2);
  std::vector<float> x = random_values(static_cast<size_t>(rows * kIn), 3);
  if (type == NativeType::u8)
    for (float& v : x) v = std::fabs(v);
  NativeLinear linear(engine, {kIn, kOut, type, NativeType::f32, relu}, w.data(), b.data(), 16);
  std::vector<char> operand_data(static_cast<size_t>(rows * kIn) * 4);
  std::vector<float> row_scales(static_cast<size_t>(rows));
  const NativeOperand operand{type, kIn,
                              type == NativeType::f32 ? static_cast<void*>(x.data())
                                                      : static_cast<void*>(operand_data.data()),
                              row_scales.data()};
  store_rows(x.data(), rows, operand);
  std::vector<char> scratchpad(linear.prepare(rows) + 64);
  std::vector<float> y(static_cast<size_t>(rows * kOut));
  linear.run(stream, rows, operand.data, y.data(), scratchpad.data());
  stream.wait();
  if (linear.quantized()) {
    finish_rows(y.data(), row_scales.data(), linear.epilogue_bias(), relu, rows, kOut, nullptr);
  }
  const std::vector<double> want = reference(x, w, b, rows, relu);
  double error = 0.0;
  for (size_t i = 0; i < y.size(); ++i) error = std::max(error, std::fabs(y[i] - want[i]));
  return error;
}

TEST(NativeLinear, Fp32MatchesAPlainMatmul) {
  EXPECT_LT(largest_error(NativeType::f32, 16, false), 1e-4);
  EXPECT_LT(largest_error(NativeType::f32, 5, true), 1e-4);  // a second primitive, ReLU fused
}

TEST(NativeLinear, Bf16StaysWithinItsRounding) {
  if (!cpu_offers(dnnl::cpu_isa::avx512_core_bf16)) GTEST_SKIP() << "no AVX512_BF16";
  // Outputs are O(7) (48 products of N(0,1) values); bf16 keeps 8 significant bits.
  EXPECT_LT(largest_error(NativeType::bf16, 16, false), 0.15);
  EXPECT_LT(largest_error(NativeType::bf16, 7, true), 0.15);
}

TEST(NativeLinear, Int8WithRowScalesStaysWithinItsRounding) {
  if (!cpu_offers(dnnl::cpu_isa::avx512_core_vnni)) GTEST_SKIP() << "no AVX512_VNNI";
  EXPECT_LT(largest_error(NativeType::s8, 16, false), 0.35);
  EXPECT_LT(largest_error(NativeType::s8, 3, true), 0.35);
  EXPECT_LT(largest_error(NativeType::u8, 16, false), 0.35);
}

TEST(NativeOperand, QuantisesEachRowToItsOwnScale) {
  const std::vector<float> rows = {1.0f, -2.0f, 0.5f, 0.0f, 0.0f, 0.0f};
  std::vector<int8_t> q(6);
  std::vector<float> scales(2);
  const NativeOperand operand{NativeType::s8, 3, q.data(), scales.data()};
  store_rows(rows.data(), 2, operand);
  EXPECT_FLOAT_EQ(scales[0], 2.0f / 127.0f);
  EXPECT_EQ(q[0], 64);  // 1 / (2 / 127) = 63.5, half away from zero
  EXPECT_EQ(q[1], -127);
  EXPECT_EQ(q[2], 32);  // 31.75
  EXPECT_EQ(q[3], 0);   // an all-zero row stays zero
}

}  // namespace
}  // namespace tessera
