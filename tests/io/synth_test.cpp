#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "io/test_tiles.h"
#include "run_cli.h"
#include "tessera/common/error.h"
#include "tessera/io/synth_tile.h"
#include "tessera/io/tile.h"
#include "test_support.h"

namespace tessera {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

SynthOptions small_options() {
  SynthOptions o;
  o.height = 48;
  o.width = 40;
  o.s2_steps = 24;
  o.s1_asc_steps = 6;
  o.s1_desc_steps = 0;
  o.cloud = 0.3;
  o.nodata = 0.1;
  o.seed = 7;
  return o;
}

TEST(Synth, WritesAValidRealisticTile) {
  const std::string dir = testing::test_dir("synth_tile") + "/grid_0.05_0.15";
  SynthOptions o = small_options();
  o.height = 96;  // 4 x 5 cloud cells of 24 pixels, x 24 steps: enough draws for the rate
  o.width = 120;
  write_synth_tile(dir, o, false);
  EXPECT_FALSE(std::filesystem::exists(dir + ".partial"));
  const Tile t = open_tile(dir);
  EXPECT_EQ(t.grid, "grid_0.05_0.15");
  EXPECT_TRUE(t.nested);
  EXPECT_EQ(t.t2, 24);
  EXPECT_EQ(t.height, 96);
  EXPECT_EQ(t.width, 120);
  EXPECT_EQ(t.ta, 6);
  EXPECT_EQ(t.td, 0);
  EXPECT_EQ(t.s1_desc.shape(), (std::vector<int64_t>{0, 96, 120, 2}));
  EXPECT_EQ(t.s2_bands.dtype(), DType::kInt16);
  EXPECT_EQ(t.s2_masks.dtype(), DType::kUInt8);

  // DOYs sorted in 1..365.
  for (const NpyArray* d : {&t.s2_doys, &t.s1_asc_doys}) {
    for (int64_t i = 0; i < d->size(); ++i) {
      EXPECT_GE(d->value(i), 1);
      EXPECT_LE(d->value(i), 365);
      if (i > 0) {
        EXPECT_LE(d->value(i - 1), d->value(i));
      }
    }
  }
  // No-data pixels: every band zero at every step, mask zero; other pixels: bands in 1..10000.
  const int64_t plane = t.pixels();
  int64_t nodata = 0, clear = 0, observed = 0;
  std::vector<double> v(10);
  for (int64_t p = 0; p < plane; ++p) {
    bool all_zero = true;
    for (int64_t s = 0; s < t.t2; ++s) {
      t.s2_bands.read_as_double((s * plane + p) * 10, 10, v.data());
      for (double x : v) {
        all_zero = all_zero && x == 0;
        EXPECT_LE(x, 10000);
      }
    }
    if (all_zero) {
      ++nodata;
      for (int64_t s = 0; s < t.t2; ++s) EXPECT_EQ(t.s2_masks.value(s * plane + p), 0);
      continue;
    }
    for (int64_t s = 0; s < t.t2; ++s) {
      ++observed;
      clear += t.s2_masks.value(s * plane + p) != 0 ? 1 : 0;
    }
  }
  EXPECT_NEAR(static_cast<double>(nodata) / plane, 0.1, 0.03);
  // Clouds come in cells, so the observed rate scatters more than per-pixel draws would.
  EXPECT_NEAR(1.0 - static_cast<double>(clear) / observed, 0.3, 0.06);
}

// Varied observations: valid S2 counts per pixel spread like the length buckets of v1.1 and v2
// see them: some pixels (beyond the no-data ones) with 0-8, the bulk with 40-100, some above 256.
TEST(Synth, VariedObservationsSpreadTheValidCounts) {
  const std::string dir = testing::test_dir("synth_varied") + "/grid_1_2";
  SynthOptions o;
  o.height = 4800;  // 200 cloud cells of 24 x 1 pixels (a small file: 29 MB)
  o.width = 1;
  o.s2_steps = kVariedS2Steps;
  o.s1_asc_steps = o.s1_desc_steps = 1;
  o.nodata = 0;
  o.varied_observations = true;
  write_synth_tile(dir, o, false);
  const Tile tile = open_tile(dir);
  const auto* masks = static_cast<const uint8_t*>(tile.s2_masks.data());
  int64_t few = 0, bulk = 0, many = 0, total = 0;
  for (int64_t p = 0; p < tile.pixels(); ++p) {
    int64_t n = 0;
    for (int64_t t = 0; t < tile.t2; ++t) n += masks[t * tile.pixels() + p];
    few += n <= 8;
    bulk += n >= 40 && n <= 100;
    many += n > 256;
    total += n;
  }
  const double pixels = static_cast<double>(tile.pixels());
  EXPECT_GT(few / pixels, 0.02);
  EXPECT_LT(few / pixels, 0.10);
  EXPECT_GT(bulk / pixels, 0.75);
  EXPECT_GT(many / pixels, 0.005);
  EXPECT_NEAR(total / pixels, 68.0, 12.0);
  std::filesystem::remove_all(dir);
  const auto r =
      testing::run_cli("synth -o " + dir + " --size 8x8 --observations varied --cloud 0.2");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "tessera: --cloud applies to --observations uniform (varied sets its own rates)\n");
}

TEST(Synth, DeterministicPerSeedAndRefusesToOverwrite) {
  const std::string root = testing::test_dir("synth_seed");
  SynthOptions o = small_options();
  o.nested = false;
  o.band_dtype = DType::kUInt16;
  write_synth_tile(root + "/a", o, false);
  write_synth_tile(root + "/b", o, false);
  EXPECT_EQ(slurp(root + "/a/bands.npy"), slurp(root + "/b/bands.npy"));
  EXPECT_EQ(slurp(root + "/a/sar_ascending.npy"), slurp(root + "/b/sar_ascending.npy"));
  EXPECT_EQ(open_tile(root + "/a").s2_bands.dtype(), DType::kUInt16);
  o.seed = 8;
  EXPECT_EQ(testing::error_of([&] { write_synth_tile(root + "/a", o, false); }),
            root + "/a: already exists (use --force to overwrite)");
  write_synth_tile(root + "/a", o, true);
  EXPECT_NE(slurp(root + "/a/bands.npy"), slurp(root + "/b/bands.npy"));
  EXPECT_FALSE(std::filesystem::exists(root + "/a.partial"));
}

TEST(Synth, ForceReplacesOnlyATileDirectory) {
  namespace fs = std::filesystem;
  const std::string root = testing::test_dir("synth_force");
  const SynthOptions o = small_options();
  // A directory holding a user's file besides tile files is refused and left as it was.
  write_synth_tile(root + "/mixed", o, false);
  { std::ofstream(root + "/mixed/notes.txt") << "mine"; }
  EXPECT_EQ(testing::error_of([&] { write_synth_tile(root + "/mixed", o, true); }),
            root + "/mixed: holds more than a tile (" + root +
                "/mixed/notes.txt); --force will not replace it");
  EXPECT_EQ(slurp(root + "/mixed/notes.txt"), "mine");
  EXPECT_TRUE(fs::exists(root + "/mixed/s2/bands.npy"));
  // A file is not replaced by a directory.
  { std::ofstream(root + "/file.txt") << "mine"; }
  EXPECT_EQ(testing::error_of([&] { write_synth_tile(root + "/file.txt", o, true); }),
            root + "/file.txt: exists and is not a directory (--force replaces directories only)");
  EXPECT_EQ(slurp(root + "/file.txt"), "mine");
  // . and .. are never the tile's name.
  for (const std::string name : {"/mixed/.", "/mixed/s2/.."}) {
    EXPECT_EQ(testing::error_of([&] { write_synth_tile(root + name, o, true); }),
              root + name + ": name the directory itself, not . or ..");
  }
  EXPECT_EQ(slurp(root + "/mixed/notes.txt"), "mine");
  // A tile directory is replaced, with nothing left beside it; a user's tile.old is not touched.
  write_synth_tile(root + "/tile", o, false);
  fs::create_directories(root + "/tile.old");
  { std::ofstream(root + "/tile.old/notes.txt") << "mine"; }
  write_synth_tile(root + "/tile", o, true);
  EXPECT_TRUE(fs::exists(root + "/tile/s2/bands.npy"));
  EXPECT_EQ(slurp(root + "/tile.old/notes.txt"), "mine");
  std::vector<std::string> beside;
  for (const auto& entry : fs::directory_iterator(root)) {
    beside.push_back(entry.path().filename().string());
  }
  std::sort(beside.begin(), beside.end());
  EXPECT_EQ(beside, (std::vector<std::string>{"file.txt", "mixed", "tile", "tile.old"}));
  // A directory in the way of the temporary one is removed only if it holds just a tile.
  fs::create_directories(root + "/next.partial");
  { std::ofstream(root + "/next.partial/notes.txt") << "mine"; }
  EXPECT_EQ(testing::error_of([&] { write_synth_tile(root + "/next", o, false); }),
            root + "/next.partial: holds more than a tile (" + root +
                "/next.partial/notes.txt); remove it to write " + root + "/next");
  EXPECT_EQ(slurp(root + "/next.partial/notes.txt"), "mine");
}

TEST(Synth, BadOptions) {
  SynthOptions o = small_options();
  o.cloud = 1.5;
  EXPECT_THROW(validate(o), UsageError);
  o = small_options();
  o.width = 0;
  EXPECT_THROW(validate(o), UsageError);
  o = small_options();
  o.band_dtype = DType::kFloat32;
  EXPECT_THROW(validate(o), UsageError);
}

TEST(SynthCli, WritesTileAndReportsBadFlags) {
  const std::string root = testing::test_dir("synth_cli");
  auto r = testing::run_cli("synth -o " + root +
                            "/grid_1 --size 20x30 --s2-steps 12 "
                            "--s1-steps 5/3 --cloud 0.2 --nodata 0 --seed 3 --layout flat");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Tile t = open_tile(root + "/grid_1");
  EXPECT_FALSE(t.nested);
  EXPECT_EQ(t.height, 20);
  EXPECT_EQ(t.width, 30);
  EXPECT_EQ(t.t2, 12);
  EXPECT_EQ(t.ta, 5);
  EXPECT_EQ(t.td, 3);

  r = testing::run_cli("synth -o " + root + "/grid_1 --size 20x30");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + root + "/grid_1: already exists (use --force to overwrite)\n");
  r = testing::run_cli("synth -o " + root + "/grid_1 --size 20x30 --s1-steps 4 --force");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(open_tile(root + "/grid_1").td, 4);

  r = testing::run_cli("synth -o " + root + "/x --size 20by30");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: --size: expected HxW (e.g. 512x512), got '20by30'\n");
  r = testing::run_cli("synth -o " + root + "/x --size 8x8 --s1-steps 4/x");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: --s1-steps: expected A/D or N (e.g. 60/0), got '4/x'\n");
  r = testing::run_cli("synth -o " + root + "/x --size 8x8 --nodata -1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: --nodata: need a fraction in [0, 1], got -1\n");
  EXPECT_FALSE(std::filesystem::exists(root + "/x"));
}

}  // namespace
}  // namespace tessera
