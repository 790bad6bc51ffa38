// tessera compare's numbers on outputs small enough to count by hand.

#include "tessera/compare/compare.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "run_cli.h"
#include "tessera/common/error.h"
#include "tessera/io/npy.h"
#include "test_support.h"

namespace tessera {
namespace {

using testing::error_of;
using testing::run_cli;

const std::string kDir = std::string(TESSERA_TEST_TMP) + "/compare_test";

// Writes dir/grid.npy (1 x 3 x 4 int8) and dir/grid_scales.npy.
void write_output(const std::string& dir, const std::string& grid, std::vector<int8_t> q,
                  std::vector<float> scales) {
  std::filesystem::create_directories(dir);
  write_npy(dir + "/" + grid + ".npy", DType::kInt8, {1, 3, 4}, q.data());
  write_npy(dir + "/" + grid + "_scales.npy", DType::kFloat32, {1, 3}, scales.data());
}

// Pixel 0 differs by 1 and 3 steps, pixel 1 is empty in both, pixel 2 only in run a.
void write_pair(const std::string& a, const std::string& b) {
  write_output(a, "g", {10, 20, 30, 40, 0, 0, 0, 0, 1, 2, 3, 4}, {0.1f, 0.0f, 1.0f});
  write_output(b, "g", {10, 21, 30, 43, 0, 0, 0, 0, 0, 0, 0, 0}, {0.1f, 0.0f, 0.0f});
}

TEST(Compare, CountsValuesScalesAndCosines) {
  write_pair(kDir + "/a", kDir + "/b");
  const auto rows = compare_outputs(kDir + "/a", kDir + "/b");
  ASSERT_EQ(rows.size(), 2u);
  const EmbeddingAgreement& g = rows[0];
  EXPECT_EQ(g.tile, "g");
  EXPECT_EQ(g.values, 12);
  EXPECT_EQ(g.pixels, 2);  // the pixel empty in both runs is left out
  EXPECT_DOUBLE_EQ(g.equal_percent, 50.0);
  EXPECT_NEAR(g.within_one_percent, 100.0 * 8 / 12, 1e-12);
  EXPECT_EQ(g.max_difference, 4);
  EXPECT_DOUBLE_EQ(g.max_scale_relative, 1.0);
  const double c0 = 3140.0 / std::sqrt(3000.0 * 3290.0);  // the scales cancel
  EXPECT_NEAR(g.cosine_mean, c0 / 2, 1e-12);
  EXPECT_DOUBLE_EQ(g.cosine_min, 0.0);  // an embedding in one run only
  EXPECT_DOUBLE_EQ(g.cosine_q001, 0.0);
  EXPECT_EQ(rows[1].tile, "all");
  EXPECT_DOUBLE_EQ(rows[1].equal_percent, 50.0);
}

TEST(Compare, IdenticalRunsAgreeFully) {
  write_pair(kDir + "/same", kDir + "/other");
  const auto rows = compare_outputs(kDir + "/same/g.npy", kDir + "/same/g.npy");
  EXPECT_DOUBLE_EQ(rows.back().equal_percent, 100.0);
  EXPECT_EQ(rows.back().max_difference, 0);
  EXPECT_NEAR(rows.back().cosine_min, 1.0, 1e-12);
}

TEST(Compare, RequirementsSayWhatWasMissed) {
  EmbeddingAgreement all;
  all.equal_percent = 98.25;
  all.max_difference = 3;
  all.cosine_mean = 0.99995;
  const auto required = parse_requirements("equal=99.5,max-diff=1,cosine-mean=0.9999");
  EXPECT_EQ(missed_requirements(all, required),
            (std::vector<std::string>{"equal 98.25 % < 99.5 %", "max-diff 3 > 1"}));
  EXPECT_EQ(error_of([] { parse_requirements("equal"); }),
            "--require: 'equal' is not KEY=VALUE with KEY one of equal, within1, max-diff, "
            "cosine-mean, cosine-q001, cosine-min, scale-rel");
  EXPECT_EQ(error_of([] { parse_requirements("max-diff=one"); }),
            "--require: 'max-diff=one' needs a number after '='");
}

TEST(Compare, MismatchedOutputsAreOneLine) {
  write_pair(kDir + "/x", kDir + "/y");
  write_output(kDir + "/y", "h", std::vector<int8_t>(12, 0), {0, 0, 0});
  EXPECT_EQ(error_of([] { compare_outputs(kDir + "/x", kDir + "/y"); }),
            kDir + "/y: tile h is not in " + kDir + "/x");
  std::filesystem::create_directories(kDir + "/empty");
  EXPECT_EQ(error_of([] { compare_outputs(kDir + "/empty", kDir + "/y"); }),
            kDir + "/empty: no <grid>.npy embeddings in this directory");
  std::filesystem::remove(kDir + "/y/h_scales.npy");
  EXPECT_EQ(error_of([] { compare_outputs(kDir + "/x", kDir + "/y"); }),
            kDir + "/y/h_scales.npy: no such file (the scales of " + kDir + "/y/h.npy)");
}

TEST(CompareCli, RequireMakesItExitOne) {
  write_pair(kDir + "/cli_a", kDir + "/cli_b");
  auto r = run_cli("compare " + kDir + "/cli_a " + kDir + "/cli_b --require within1=99");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("| g    |"), std::string::npos) << r.out;
  EXPECT_EQ(r.err, "tessera: compare: requirements missed: within1 66.6667 % < 99 %\n");
  r = run_cli("compare " + kDir + "/cli_a " + kDir + "/cli_a --require equal=100 --format json");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"equal_percent\": 100.0"), std::string::npos) << r.out;
}

// NaN meets no requirement (it compares false both ways): it is a miss that says so.
TEST(Compare, NaNMissesEveryRequirement) {
  EmbeddingAgreement all;
  all.cosine_mean = std::nan("");
  all.max_scale_relative = std::nan("");
  const auto required = parse_requirements("cosine-mean=0.99,scale-rel=0.01");
  EXPECT_EQ(missed_requirements(all, required),
            (std::vector<std::string>{"cosine-mean is NaN (need >= 0.99)",
                                      "scale-rel is NaN (need <= 0.01)"}));
}

TEST(CompareCli, ANaNCosineFailsTheRequirement) {
  write_output(kDir + "/nan_a", "g", {10, 20, 30, 40, 1, 1, 1, 1, 1, 2, 3, 4}, {0.1f, 1, 1});
  write_output(kDir + "/nan_b", "g", {10, 20, 30, 40, 1, 1, 1, 1, 1, 2, 3, 4},
               {std::nanf(""), 1, 1});
  const auto r =
      run_cli("compare " + kDir + "/nan_a " + kDir + "/nan_b --require cosine-mean=0.99");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: compare: requirements missed: cosine-mean is NaN (need >= 0.99)\n");
}

// Two directories of one tile each pair tiles by grid name like any others: different grids
// are refused naming both. Two <grid>.npy files named by the user are compared whatever their
// names.
TEST(Compare, TwoDirectoriesOfDifferentGridsAreRefused) {
  write_output(kDir + "/one_a", "grid_1_1", std::vector<int8_t>(12, 1), {1, 1, 1});
  write_output(kDir + "/one_b", "grid_2_2", std::vector<int8_t>(12, 1), {1, 1, 1});
  EXPECT_EQ(error_of([] { compare_outputs(kDir + "/one_a", kDir + "/one_b"); }),
            kDir + "/one_a and " + kDir +
                "/one_b: their tiles are different grids (grid_1_1 and grid_2_2); name the two "
                "<grid>.npy files to compare them anyway");
  const auto rows = compare_outputs(kDir + "/one_a/grid_1_1.npy", kDir + "/one_b/grid_2_2.npy");
  EXPECT_DOUBLE_EQ(rows.back().equal_percent, 100.0);
}

// 8 values of 524,288 differ: the Markdown table says 99.998, never 100.00, which it keeps for
// all values equal. Cosines short of 1 never print as 1.0000000 either.
TEST(Compare, AShareShortOfAllNeverPrintsAsAll) {
  EmbeddingAgreement almost;
  almost.tile = "g";
  almost.values = 524288;
  almost.equal_percent = 100.0 * (524288 - 8) / 524288;
  almost.within_one_percent = 100;
  almost.cosine_mean = almost.cosine_q001 = almost.cosine_min = 0.99999999;
  EmbeddingAgreement all;
  all.tile = "all";
  all.equal_percent = all.within_one_percent = 100;
  const std::string md = agreement_table({almost, all}).to_markdown();
  EXPECT_NE(md.find("| g    |      0 |  99.998 |    100.000 |"), std::string::npos) << md;
  EXPECT_NE(md.find("0.99999999"), std::string::npos) << md;
  EXPECT_NE(md.find("| all  |      0 |  100.00 |    100.000 |"), std::string::npos) << md;
}

}  // namespace
}  // namespace tessera
