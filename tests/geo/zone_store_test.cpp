#include "tessera/geo/zone_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tessera/common/error.h"

namespace tessera {
namespace {

// A 4 x 4 tile of 8 values per embedding in UTM zone 31 north, at a valid offset.
struct SmallTile {
  std::vector<std::int8_t> codes = std::vector<std::int8_t>(4 * 4 * 8, 3);
  std::vector<float> scales = std::vector<float>(16, 0.25f);
  ZoneStoreTile tile;
  SmallTile() {
    tile.store = std::string(TESSERA_TEST_TMP) + "/zone_store_refusals";
    tile.layout = {"1.1", 8, {}};
    tile.geometry = {"EPSG:32631", 32631, 300000.0, 5200000.0, 10.0, 4, 4, "tile/roi.tiff"};
    tile.year = 2024;
    tile.embeddings = {codes.data(), scales.data(), 4, 4, 8};
  }
};

std::string refusal(const ZoneStoreTile& tile) {
  try {
    write_tile_to_zone_store(tile);
  } catch (const Error& e) {
    return e.what();
  }
  return "(written)";
}

TEST(ZoneStore, RefusesTilesItCannotPlaceBeforeTouchingTheStore) {
  SmallTile t;
  std::filesystem::remove_all(t.tile.store);
  t.tile.geometry.pixel_size = 20.0;
  EXPECT_EQ(refusal(t.tile), "tile/roi.tiff: pixels of 20 m; a zone store holds 10 m pixels");
  t.tile.geometry.pixel_size = 10.0;
  t.tile.embeddings.dims = 16;
  EXPECT_EQ(refusal(t.tile), "tile/roi.tiff: embeddings of 16 values, the store's layout has 8");
  t.tile.embeddings.dims = 8;
  t.tile.layout.depths = {4, 16};
  EXPECT_EQ(refusal(t.tile), "tile/roi.tiff: depths must be 4 and/or 16, ascending and below 8");
  t.tile.layout.depths = {};
  t.tile.geometry.epsg = 0;
  EXPECT_EQ(refusal(t.tile),
            "tile/roi.tiff: CRS without an EPSG code is not UTM (EPSG:326NN or 327NN); a zone "
            "store holds UTM tiles");
  EXPECT_FALSE(std::filesystem::exists(t.tile.store));
}

TEST(ZoneStore, GridsCoverTheZoneFromPoleToPoleInWholeShards) {
  const ZoneGrid grid = zone_grid(31);
  EXPECT_EQ(grid.width % kShardSide, 0);
  EXPECT_EQ(grid.height % kShardSide, 0);
  EXPECT_DOUBLE_EQ(grid.origin_x + 5.0 * static_cast<double>(grid.width), 500000.0);
  EXPECT_DOUBLE_EQ(grid.origin_y - 10.0 * static_cast<double>(grid.height), -grid.origin_y);
  // Transverse Mercator (k0 0.9996): the pole lies 9 997 965 m north of the equator, and the
  // zone's edge (3 degrees from its meridian) 333 979 m east of it at the equator.
  EXPECT_GT(grid.origin_y, 9997965.0);
  EXPECT_LT(grid.origin_x, 500000.0 - 333979.0);
}

}  // namespace
}  // namespace tessera
