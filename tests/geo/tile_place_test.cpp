// Grid names and the landmask grid of a cell (the values themselves are checked against pyproj
// in geotiff_cli_test.py).

#include "tessera/geo/tile_place.h"

#include <gtest/gtest.h>

#include "tessera/common/error.h"

namespace tessera {
namespace {

TEST(GridName, ParsesCellCentres) {
  const auto cell = parse_grid_name("grid_0.15_52.05");
  ASSERT_TRUE(cell);
  EXPECT_DOUBLE_EQ(cell->lon, 0.15);
  EXPECT_DOUBLE_EQ(cell->lat, 52.05);
  const auto south = parse_grid_name("grid_-70.65_-33.45");
  ASSERT_TRUE(south);
  EXPECT_DOUBLE_EQ(south->lon, -70.65);
  EXPECT_DOUBLE_EQ(south->lat, -33.45);
  EXPECT_EQ(grid_name_of(*south), "grid_-70.65_-33.45");
}

TEST(GridName, RefusesOtherNames) {
  for (const char* name : {"grid_0.15", "grid_0.15_", "grid__52.05", "tile_0.15_52.05",
                           "grid_0.15_52.05x", "grid_181.05_10.05", "grid_10.05_90.05",
                           "grid_1e1_2", "grid_0.15_52.05_3", "0_3500_500_4000", "grid_nan_1"}) {
    EXPECT_FALSE(parse_grid_name(name)) << name;
  }
}

TEST(GridCellGeometry, PicksTheZoneAndHemisphere) {
  EXPECT_EQ(grid_cell_geometry({0.15, 52.05}).epsg, 32631);
  EXPECT_EQ(grid_cell_geometry({147.05, -42.85}).epsg, 32755);
  EXPECT_EQ(grid_cell_geometry({6.05, 45.05}).epsg, 32632);  // 6 E starts zone 32
  EXPECT_EQ(grid_cell_geometry({-0.05, 0.05}).epsg, 32630);
  EXPECT_EQ(grid_cell_geometry({-0.05, -0.05}).epsg, 32730);
  const TileGeometry g = grid_cell_geometry({0.15, 52.05});
  EXPECT_EQ(g.pixel_size, 10);
  EXPECT_EQ(g.height, 1139);  // about 11.1 km north-south
  EXPECT_GT(g.width, 680);    // about 6.9 km east-west at 52 N, more in the zone's skew
  EXPECT_EQ(g.source, "grid name grid_0.15_52.05");
}

TEST(LocateTile, NoRasterAndNoGridNameIsNowhere) {
  const TilePlace place = locate_tile("t", "plain", {"/nonexistent/roi.tiff"}, 12, 10);
  EXPECT_FALSE(place.geometry);
  EXPECT_FALSE(place.cell);
}

TEST(LocateTile, GridNameOfAnotherSizeIsAnError) {
  try {
    locate_tile("t", "grid_0.15_52.05", {}, 12, 10);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "t: the landmask grid of grid_0.15_52.05 is 1139 x 729 pixels (H x W), but the "
              "tile is 12 x 10 (give it a roi.tiff)");
  }
}

}  // namespace
}  // namespace tessera
