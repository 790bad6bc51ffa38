#include "tessera/pipeline/preparer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <numeric>

#include "io/test_tiles.h"
#include "tessera/common/error.h"
#include "tessera/io/npy.h"
#include "tessera/io/synth_tile.h"
#include "test_support.h"

namespace tessera {
namespace {

using testing::TestTileSpec;

// Prepares every pixel of `dir` with the C++ pipeline, dumps the inputs, and has the numpy
// oracle recompute them; 0 = bit-identical.
int compare_with_oracle(const std::string& dir, int s2_steps, int s1_steps, int64_t offset) {
  const Tile tile = open_tile(dir);
  const std::vector<int64_t> valid = valid_pixels(tile);
  std::vector<int64_t> pixels(static_cast<std::size_t>(tile.pixels()));
  std::iota(pixels.begin(), pixels.end(), 0);  // invalid pixels too: the rules still apply
  PixelPreparer prep(tile, s2_steps, s1_steps);
  const auto n = static_cast<int64_t>(pixels.size());
  std::vector<float> s2(static_cast<std::size_t>(n * prep.s2_row_floats()));
  std::vector<float> s1(static_cast<std::size_t>(n * prep.s1_row_floats()));
  prep.prepare_batch(pixels.data(), n, offset, s2.data(), s1.data());
  const std::string out = dir + ".out";
  std::filesystem::create_directories(out);
  write_npy(out + "/pixels.npy", DType::kInt64, {n}, pixels.data());
  write_npy(out + "/valid.npy", DType::kInt64, {static_cast<int64_t>(valid.size())}, valid.data());
  write_npy(out + "/s2.npy", DType::kFloat32, {n, s2_steps, 11}, s2.data());
  write_npy(out + "/s1.npy", DType::kFloat32, {n, s1_steps, 3}, s1.data());
  return testing::run_python(
      std::string(TESSERA_SOURCE_DIR) + "/tests/reference/pipeline_oracle.py prepare --tile " +
      dir + " --s2-steps " + std::to_string(s2_steps) + " --s1-steps " + std::to_string(s1_steps) +
      " --offset " + std::to_string(offset) + " --pixels " + out + "/pixels.npy --valid " + out +
      "/valid.npy --s2 " + out + "/s2.npy --s1 " + out + "/s1.npy");
}

TEST(Preparer, Int16TileShortSeriesMatchesOracle) {
  // T2 = 7 < 40 steps: repetition; offsets 0 and 1.
  const std::string dir = testing::test_dir("prep_int16") + "/tile";
  testing::write_test_tile(dir, TestTileSpec{});
  EXPECT_EQ(compare_with_oracle(dir, 40, 40, 0), 0);
  EXPECT_EQ(compare_with_oracle(dir, 40, 40, 1), 0);
}

TEST(Preparer, LongSeriesEmptyDescendingMatchesOracle) {
  // T2 = 95 > 40: stratified bins; no descending data; uint16 bands, bool masks, int32 doys.
  TestTileSpec spec;
  spec.t2 = 95;
  spec.ta = 57;
  spec.td = 0;
  spec.height = 6;
  spec.width = 7;
  spec.bands = DType::kUInt16;
  spec.masks = DType::kBool;
  spec.doys = DType::kInt32;
  spec.nested = false;
  spec.seed = 2;
  const std::string dir = testing::test_dir("prep_long") + "/tile";
  testing::write_test_tile(dir, spec);
  EXPECT_EQ(compare_with_oracle(dir, 40, 40, 0), 0);
  EXPECT_EQ(compare_with_oracle(dir, 40, 40, 1), 0);
  EXPECT_EQ(compare_with_oracle(dir, 16, 24, 3), 0);  // a small model's step counts
}

TEST(Preparer, FloatBandsNoS1MatchesOracle) {
  TestTileSpec spec;
  spec.t2 = 41;
  spec.ta = 0;
  spec.td = 0;
  spec.bands = DType::kFloat32;
  spec.masks = DType::kInt16;
  spec.sar = DType::kFloat32;
  spec.seed = 3;
  const std::string dir = testing::test_dir("prep_float") + "/tile";
  testing::write_test_tile(dir, spec);
  EXPECT_EQ(compare_with_oracle(dir, 40, 40, 0), 0);
  EXPECT_EQ(compare_with_oracle(dir, 40, 40, 1), 0);
}

// Overwrites element `index` of the float32 .npy file at `path` with `value`.
void poke_float(const std::string& path, int64_t index, float value) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  char prefix[10];
  f.read(prefix, 10);
  const int header = 10 + static_cast<uint8_t>(prefix[8]) + 256 * static_cast<uint8_t>(prefix[9]);
  f.seekp(header + 4 * index);
  f.write(reinterpret_cast<const char*>(&value), 4);
}

TEST(Preparer, ValuesThatAreNotFiniteAreRefusedNamingFileAndPlace) {
  TestTileSpec spec;
  spec.bands = DType::kFloat32;
  spec.sar = DType::kFloat32;
  spec.doys = DType::kFloat32;
  const std::string dir = testing::test_dir("prep_nan") + "/tile";
  const auto error_of = [&] { return testing::error_of([&] { valid_pixels(open_tile(dir)); }); };
  const std::string what = ": a value that is not a finite number (NaN or infinity) at ";
  // (T, H, W, bands) = (7, 5, 4, 10): step 2, row 3, column 1, band 4.
  testing::write_test_tile(dir, spec);
  poke_float(dir + "/s2/bands.npy", ((2 * 5 + 3) * 4 + 1) * 10 + 4, std::nanf(""));
  EXPECT_EQ(error_of(), dir + "/s2/bands.npy" + what + "step 2, row 3, column 1");
  // S1 (T, H, W, 2): step 1, row 0, column 2, band 1.
  testing::write_test_tile(dir, spec);
  poke_float(dir + "/s1/sar_descending.npy", ((1 * 5 + 0) * 4 + 2) * 2 + 1, -INFINITY);
  EXPECT_EQ(error_of(), dir + "/s1/sar_descending.npy" + what + "step 1, row 0, column 2");
  testing::write_test_tile(dir, spec);
  poke_float(dir + "/s2/doys.npy", 5, INFINITY);
  EXPECT_EQ(error_of(), dir + "/s2/doys.npy" + what + "step 5");
  testing::write_test_tile(dir, spec);
  EXPECT_EQ(error_of(), "(no error)");
}

// Overwrites element `index` of the float64 .npy file at `path` with `value`.
void poke_double(const std::string& path, int64_t index, double value) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  char prefix[10];
  f.read(prefix, 10);
  const int header = 10 + static_cast<uint8_t>(prefix[8]) + 256 * static_cast<uint8_t>(prefix[9]);
  f.seekp(header + 8 * index);
  f.write(reinterpret_cast<const char*>(&value), 8);
}

// The model reads float32: a float64 value finite as a double but infinite as a float32 is
// refused like infinity itself; the largest finite float32 passes.
TEST(Preparer, Float64ValuesBeyondFloat32AreRefusedNamingFileAndPlace) {
  TestTileSpec spec;
  spec.bands = DType::kFloat64;
  spec.sar = DType::kFloat64;
  spec.doys = DType::kFloat64;
  const std::string dir = testing::test_dir("prep_f64") + "/tile";
  const auto error_of = [&] { return testing::error_of([&] { valid_pixels(open_tile(dir)); }); };
  const std::string what =
      " is too large for float32, the model's input type (at most 3.4e+38 "
      "in magnitude)";
  testing::write_test_tile(dir, spec);
  poke_double(dir + "/s2/bands.npy", ((2 * 5 + 3) * 4 + 1) * 10 + 4, 1e300);
  EXPECT_EQ(error_of(), dir + "/s2/bands.npy: value 1e+300 at step 2, row 3, column 1" + what);
  testing::write_test_tile(dir, spec);
  poke_double(dir + "/s1/sar_ascending.npy", ((1 * 5 + 0) * 4 + 2) * 2 + 1, -4e38);
  EXPECT_EQ(error_of(),
            dir + "/s1/sar_ascending.npy: value -4e+38 at step 1, row 0, column 2" + what);
  testing::write_test_tile(dir, spec);
  poke_double(dir + "/s1/sar_ascending_doy.npy", 2, 4e38);
  EXPECT_EQ(error_of(), dir + "/s1/sar_ascending_doy.npy: value 4e+38 at step 2" + what);
  testing::write_test_tile(dir, spec);
  poke_double(dir + "/s2/bands.npy", 7, 3.4e38);  // finite as float32
  EXPECT_EQ(error_of(), "(no error)");
}

TEST(Preparer, SynthTileMatchesOracle) {
  SynthOptions o;
  o.height = 24;
  o.width = 20;
  o.s2_steps = 90;
  o.s1_asc_steps = 0;
  o.s1_desc_steps = 45;
  o.nodata = 0.1;
  o.seed = 5;
  const std::string dir = testing::test_dir("prep_synth") + "/grid_0.15_0.25";
  write_synth_tile(dir, o, true);
  EXPECT_EQ(compare_with_oracle(dir, 40, 40, 0), 0);
  EXPECT_EQ(compare_with_oracle(dir, 40, 40, 2), 0);
}

TEST(Preparer, EmptyDirectionIsOneZeroStepAtDay180) {
  TestTileSpec spec;
  spec.ta = 0;
  spec.td = 0;
  const std::string dir = testing::test_dir("prep_empty_s1") + "/tile";
  testing::write_test_tile(dir, spec);
  const Tile tile = open_tile(dir);
  PixelPreparer prep(tile, 40, 4);
  std::vector<float> s2(static_cast<std::size_t>(prep.s2_row_floats()));
  std::vector<float> s1(static_cast<std::size_t>(prep.s1_row_floats()));
  prep.prepare(5, 0, s2.data(), s1.data());
  // Two all-zero steps (ascending, descending), both doy 180, sampled [0, 0, 1, 1].
  for (int k = 0; k < 4; ++k) {
    const InputStats& v10 = input_stats("v1.0");
    EXPECT_EQ(s1[static_cast<std::size_t>(k * 3 + 0)], (0.0f - v10.asc_mean[0]) / v10.asc_std[0]);
    EXPECT_EQ(s1[static_cast<std::size_t>(k * 3 + 1)], (0.0f - v10.asc_mean[1]) / v10.asc_std[1]);
    EXPECT_EQ(s1[static_cast<std::size_t>(k * 3 + 2)], 180.0f);
  }
}

TEST(Preparer, ValidPixelsSkipNoDataAndApplyTheS1Rule) {
  const std::string dir = testing::test_dir("prep_valid") + "/tile";
  testing::write_test_tile(dir, TestTileSpec{});
  const Tile tile = open_tile(dir);
  std::vector<int64_t> all(20);
  std::iota(all.begin(), all.end(), 0);
  all.erase(all.begin());  // pixel 0 has no S2 data
  EXPECT_EQ(valid_pixels(tile), all);
  // With a positive threshold, pixel 2 (no S1 data at all) drops out too.
  const std::vector<int64_t> strict = valid_pixels(tile, 1);
  EXPECT_EQ(std::count(strict.begin(), strict.end(), 2), 0);
  EXPECT_EQ(std::count(strict.begin(), strict.end(), 3), 1);
}

}  // namespace
}  // namespace tessera
