#include "tessera/io/tile.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "io/test_tiles.h"
#include "tessera/common/error.h"

namespace tessera {
namespace {

using testing::TestTileSpec;
using testing::write_test_tile;
using testing::write_values;

std::string open_error(const std::string& dir) {
  try {
    open_tile(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Tile, OpensNestedAndFlatLayouts) {
  const std::string root = testing::test_dir("tile_layouts");
  TestTileSpec spec;
  write_test_tile(root + "/grid_51.05_10.35", spec);
  const Tile t = open_tile(root + "/grid_51.05_10.35/");
  EXPECT_EQ(t.grid, "grid_51.05_10.35");
  EXPECT_TRUE(t.nested);
  EXPECT_EQ(t.t2, 7);
  EXPECT_EQ(t.height, 5);
  EXPECT_EQ(t.width, 4);
  EXPECT_EQ(t.ta, 3);
  EXPECT_EQ(t.td, 2);
  EXPECT_EQ(t.pixels(), 20);

  spec.nested = false;
  spec.td = 0;
  spec.bands = DType::kFloat32;
  spec.masks = DType::kBool;
  spec.doys = DType::kInt32;
  write_test_tile(root + "/flat", spec);
  const Tile f = open_tile(root + "/flat");
  EXPECT_FALSE(f.nested);
  EXPECT_EQ(f.grid, "flat");
  EXPECT_EQ(f.td, 0);
  EXPECT_EQ(f.s1_desc.shape(), (std::vector<int64_t>{0, 5, 4, 2}));
  EXPECT_EQ(f.s2_bands.dtype(), DType::kFloat32);
}

TEST(Tile, MalformedFilesGiveOneLineMessages) {
  const std::string root = testing::test_dir("tile_errors");
  const std::string d = root + "/t";
  auto fresh = [&] { write_test_tile(d, TestTileSpec{}); };

  EXPECT_EQ(open_error(root + "/absent"), root + "/absent: not a directory");

  fresh();
  std::filesystem::remove(d + "/s2/masks.npy");
  EXPECT_EQ(open_error(d), d + ": missing s2/masks.npy (nor masks.npy)");

  fresh();
  std::filesystem::remove(d + "/s1/sar_descending_doy.npy");
  EXPECT_EQ(open_error(d), d + ": missing s1/sar_descending_doy.npy (nor sar_descending_doy.npy)");

  fresh();
  write_values(d + "/s2/bands.npy", DType::kInt16, {7, 5, 4, 9},
               std::vector<double>(7 * 5 * 4 * 9, 1.0));
  EXPECT_EQ(open_error(d), d + "/s2/bands.npy: expected shape (T, H, W, 10), got (7, 5, 4, 9)");

  fresh();
  write_values(d + "/s2/bands.npy", DType::kInt16, {7, 20, 10}, std::vector<double>(1400, 1.0));
  EXPECT_EQ(open_error(d), d + "/s2/bands.npy: expected shape (T, H, W, 10), got (7, 20, 10)");

  fresh();
  write_values(d + "/s2/bands.npy", DType::kBool, {7, 5, 4, 10}, std::vector<double>(1400, 1.0));
  EXPECT_EQ(open_error(d), d + "/s2/bands.npy: dtype bool is not allowed here (need an integer "
                               "or float dtype)");

  fresh();
  write_values(d + "/s2/masks.npy", DType::kUInt8, {7, 4, 5}, std::vector<double>(140, 1.0));
  EXPECT_EQ(open_error(d), d + "/s2/masks.npy: expected shape (T, H, W) = (7, 5, 4) to match "
                               "s2/bands.npy, got (7, 4, 5)");

  fresh();
  write_values(d + "/s2/doys.npy", DType::kInt16, {6}, std::vector<double>(6, 1.0));
  EXPECT_EQ(open_error(d),
            d + "/s2/doys.npy: expected shape (T,) = (7,) to match s2/bands.npy, got (6,)");

  fresh();
  write_values(d + "/s1/sar_ascending.npy", DType::kInt16, {3, 5, 3, 2},
               std::vector<double>(90, 1.0));
  EXPECT_EQ(open_error(d), d + "/s1/sar_ascending.npy: expected shape (T, H, W, 2) = (3, 5, 4, 2) "
                               "to match s2/bands.npy, got (3, 5, 3, 2)");

  fresh();
  write_values(d + "/s1/sar_descending_doy.npy", DType::kInt16, {3}, {1, 2, 3});
  EXPECT_EQ(open_error(d), d + "/s1/sar_descending_doy.npy: expected shape (T,) = (2,) to match "
                               "s1/sar_descending.npy, got (3,)");

  fresh();
  write_values(d + "/s1/sar_ascending_doy.npy", DType::kBool, {3}, {1, 1, 1});
  EXPECT_EQ(open_error(d), d + "/s1/sar_ascending_doy.npy: dtype bool is not allowed here (need "
                               "an integer or float dtype)");

  fresh();
  write_values(d + "/s2/bands.npy", DType::kInt16, {0, 5, 4, 10}, {});
  EXPECT_EQ(open_error(d),
            d + "/s2/bands.npy: empty array of shape (0, 5, 4, 10) (need T, H, W >= 1)");

  fresh();
  std::filesystem::resize_file(d + "/s2/bands.npy", 200);
  EXPECT_EQ(open_error(d),
            d + "/s2/bands.npy: truncated: header says 2800 bytes of data, file has 72");
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

// A member that is there but is not a file is reported as what it is, not as "missing"; a loop
// of links gets a message of its own, not the library's text.
TEST(Tile, MembersThatAreNotFilesAreNamedForWhatTheyAre) {
  namespace fs = std::filesystem;
  const std::string root = testing::test_dir("tile_kinds");
  const std::string d = root + "/t";
  auto fresh = [&] { write_test_tile(d, TestTileSpec{}); };

  fresh();
  fs::remove(d + "/s2/masks.npy");
  fs::create_directories(d + "/s2/masks.npy");
  EXPECT_EQ(open_error(d), d + "/s2/masks.npy: is a directory, not a .npy file");

  fresh();
  fs::remove(d + "/s1/sar_ascending.npy");
  ASSERT_EQ(::mkfifo((d + "/s1/sar_ascending.npy").c_str(), 0600), 0);
  EXPECT_EQ(open_error(d), d + "/s1/sar_ascending.npy: is a FIFO, not a .npy file");

  fresh();
  fs::remove(d + "/s2/doys.npy");
  fs::create_symlink("doys.npy", d + "/s2/doys.npy");
  EXPECT_EQ(open_error(d), d + "/s2/doys.npy: a loop of symbolic links (it never reaches a file)");

  fresh();
  fs::remove(d + "/s2/doys.npy");
  fs::create_symlink(root + "/nowhere.npy", d + "/s2/doys.npy");
  EXPECT_EQ(open_error(d), d + "/s2/doys.npy: a symbolic link to a file that does not exist");

  fs::create_symlink("loop", root + "/loop");
  EXPECT_EQ(open_error(root + "/loop"),
            root + "/loop: a loop of symbolic links (it never reaches a directory)");
  std::ofstream(root + "/file") << "x";
  EXPECT_EQ(open_error(root + "/file"), root + "/file: not a directory (it is a regular file)");
}

}  // namespace
}  // namespace tessera
