#include "tessera/pipeline/quantiser.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "io/test_tiles.h"
#include "tessera/io/npy.h"

namespace tessera {
namespace {

TEST(Quantiser, RoundsHalfToEvenAndClips) {
  // max |x| = 127 -> scale exactly 1, so x / scale = x.
  const float x[9] = {127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 0.0f, -127.0f};
  int8_t q[9];
  float scale = 0;
  quantize_embedding(x, 9, q, &scale);
  EXPECT_EQ(scale, 1.0f);
  const int8_t want[9] = {127, 0, 2, 2, 0, -2, -2, 0, -127};
  for (int i = 0; i < 9; ++i) EXPECT_EQ(q[i], want[i]) << i;
}

TEST(Quantiser, ZeroVectorUsesTheMinimumScale) {
  const float x[4] = {0, 0, 0, 0};
  int8_t q[4] = {1, 1, 1, 1};
  float scale = 0;
  quantize_embedding(x, 4, q, &scale);
  EXPECT_EQ(scale, 1e-8f);
  for (int8_t v : q) EXPECT_EQ(v, 0);
}

TEST(Quantiser, DequantisedValuesAreClose) {
  const float x[3] = {0.3f, -1.7f, 0.01f};
  int8_t q[3];
  float scale = 0;
  quantize_embedding(x, 3, q, &scale);
  EXPECT_EQ(q[1], -127);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(q[i] * scale, x[i], scale / 2 * 1.0001f);
}

TEST(Quantiser, RepeatAveraging) {
  float acc[2] = {0, 0};
  const float a[2] = {1.0f, 2.0f}, b[2] = {2.0f, -1.0f}, c[2] = {0.5f, 0.0f};
  accumulate(a, 2, acc);
  accumulate(b, 2, acc);
  accumulate(c, 2, acc);
  divide_by(2, 3, acc);
  EXPECT_EQ(acc[0], 3.5f / 3.0f);
  EXPECT_EQ(acc[1], 1.0f / 3.0f);
}

// Random vectors, vectors with exact .5 ties, tiny and huge magnitudes, against numpy.
TEST(Quantiser, MatchesNumpyOracle) {
  const std::string dir = testing::test_dir("quantiser_oracle");
  const int dim = 128, n = 300;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> half(-127, 126);
  std::vector<float> x(static_cast<std::size_t>(n * dim));
  for (int k = 0; k < n; ++k) {
    float* v = x.data() + k * dim;
    const int kind = k % 5;
    for (int i = 0; i < dim; ++i) {
      if (kind == 0) {
        v[i] = normal(rng);
      } else if (kind == 1) {  // ties: max 127 -> scale 1, entries m + 0.5
        v[i] = static_cast<float>(half(rng)) + 0.5f;
      } else if (kind == 2) {
        v[i] = normal(rng) * 1e-12f;  // scale clamps to 1e-8
      } else if (kind == 3) {
        v[i] = normal(rng) * 1e30f;
      } else {
        v[i] = static_cast<float>(half(rng)) * 0.25f;  // quarter steps, ties after scaling
      }
    }
    if (kind == 1) v[0] = 127.0f;
  }
  std::vector<int8_t> q(x.size());
  std::vector<float> scales(n);
  quantize_embeddings(x.data(), n, dim, q.data(), scales.data());
  write_npy(dir + "/x.npy", DType::kFloat32, {n, dim}, x.data());
  write_npy(dir + "/q.npy", DType::kInt8, {n, dim}, q.data());
  write_npy(dir + "/s.npy", DType::kFloat32, {n}, scales.data());
  EXPECT_EQ(testing::run_python(std::string(TESSERA_SOURCE_DIR) +
                                "/tests/reference/pipeline_oracle.py quantize --x " + dir +
                                "/x.npy --q " + dir + "/q.npy --scales " + dir + "/s.npy"),
            0);
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

// NaN used to quantise to an all-zero row (scale 1e-8) and infinity to a scale of inf: both are
// refused, naming the element, and nothing is written.
TEST(Quantiser, NonFiniteValuesThrowNamingTheElementAndWriteNothing) {
  const float inf = INFINITY;
  struct Case {
    float bad;
    const char* kind;
  };
  for (const Case& c : {Case{std::nanf(""), "nan"}, Case{inf, "inf"}, Case{-inf, "-inf"}}) {
    float x[4] = {1.0f, -2.0f, 3.0f, 4.0f};
    x[2] = c.bad;
    int8_t q[4] = {9, 9, 9, 9};
    float scale = 7.0f;
    try {
      quantize_embedding(x, 4, q, &scale);
      ADD_FAILURE() << c.kind << ": no error";
    } catch (const NonFiniteOutput& e) {
      EXPECT_EQ(e.element(), 2);
      EXPECT_STREQ(e.kind(), c.kind);
      EXPECT_STREQ(e.what(), "non-finite value at element 2");
    }
    EXPECT_EQ(scale, 7.0f) << c.kind;
    for (const int8_t v : q) EXPECT_EQ(v, 9) << c.kind;
  }
}

}  // namespace
}  // namespace tessera
