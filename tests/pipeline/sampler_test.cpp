#include "tessera/pipeline/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "io/test_tiles.h"
#include "tessera/io/npy.h"

namespace tessera {
namespace {

using V = std::vector<int64_t>;

TEST(Sampler, NoValidStepsGivesZeros) {
  EXPECT_EQ(select_steps(V{}, 4, 3), (V{0, 0, 0, 0}));
}

TEST(Sampler, FewValidStepsAreRepeatedAndSorted) {
  // [2, 5, 9] repeated 3 times, first 7 kept, sorted.
  EXPECT_EQ(select_steps(V{2, 5, 9}, 7, 0), (V{2, 2, 2, 5, 5, 9, 9}));
  EXPECT_EQ(select_steps(V{2, 5, 9}, 7, 3), (V{2, 2, 2, 5, 5, 9, 9}));  // offset unused
  EXPECT_EQ(select_steps(V{4, 6}, 2, 1), (V{4, 6}));                    // n == n_out
}

TEST(Sampler, ManyValidStepsAreStratified) {
  // n = 10, n_out = 4: bins 0, 2.5, 5, 7.5, 10 -> [0,2) [2,5) [5,7) [7,10).
  V valid(10);
  for (int i = 0; i < 10; ++i) valid[static_cast<std::size_t>(i)] = 100 + i;
  EXPECT_EQ(select_steps(valid, 4, 0), (V{100, 102, 105, 107}));
  EXPECT_EQ(select_steps(valid, 4, 1), (V{101, 103, 106, 108}));
  EXPECT_EQ(select_steps(valid, 4, 2), (V{100, 104, 105, 109}));
  EXPECT_EQ(select_steps(valid, 4, 5), (V{101, 104, 106, 109}));
}

// Many (n, n_out, offset) cases against the numpy oracle (linspace rounding included).
TEST(Sampler, MatchesNumpyOracle) {
  const std::string dir = testing::test_dir("sampler_oracle");
  std::vector<int64_t> cases, outs;
  const int max_out = 64;
  for (int64_t n : {0, 1, 2, 3, 7, 39, 40, 41, 45, 59, 60, 79, 80, 81, 90, 97, 120, 333, 1000}) {
    for (int n_out : {1, 3, 7, 40, 64}) {
      for (int64_t offset : {0, 1, 2, 3, 7, 1000003}) {
        V valid(static_cast<std::size_t>(n));
        for (int64_t i = 0; i < n; ++i) valid[static_cast<std::size_t>(i)] = 3 * i;
        V out = select_steps(valid, n_out, offset);
        out.resize(max_out, -1);
        cases.insert(cases.end(), {n, n_out, offset});
        outs.insert(outs.end(), out.begin(), out.end());
      }
    }
  }
  const auto k = static_cast<int64_t>(cases.size() / 3);
  write_npy(dir + "/cases.npy", DType::kInt64, {k, 3}, cases.data());
  write_npy(dir + "/out.npy", DType::kInt64, {k, max_out}, outs.data());
  EXPECT_EQ(testing::run_python(std::string(TESSERA_SOURCE_DIR) +
                                "/tests/reference/pipeline_oracle.py select --cases " + dir +
                                "/cases.npy --out " + dir + "/out.npy"),
            0);
}

}  // namespace
}  // namespace tessera
