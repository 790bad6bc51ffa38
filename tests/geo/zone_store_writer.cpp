// Writes one tile into a zone store, for the tests that read stores with other readers:
//   zone_store_writer STORE EPSG ORIGIN_X ORIGIN_Y YEAR CODES.npy SCALES.npy MODEL [DEPTHS]
// CODES.npy is int8 (H, W, dims), SCALES.npy float32 (H, W); DEPTHS is "4,16" or absent.
// Errors print one line to stderr and exit 1.

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <sstream>
#include <string>

#include "tessera/geo/zone_store.h"
#include "tessera/io/npy.h"

int main(int argc, char** argv) {
  if (argc < 9 || argc > 10) {
    std::fprintf(stderr, "usage: %s STORE EPSG X Y YEAR CODES SCALES MODEL [DEPTHS]\n", argv[0]);
    return 2;
  }
  try {
    const tessera::NpyArray codes(argv[6]);
    const tessera::NpyArray scales(argv[7]);
    tessera::ZoneStoreTile tile;
    tile.store = argv[1];
    tile.geometry.epsg = std::atoi(argv[2]);
    tile.geometry.crs_wkt = "EPSG:" + std::string(argv[2]);
    tile.geometry.origin_x = std::strtod(argv[3], nullptr);
    tile.geometry.origin_y = std::strtod(argv[4], nullptr);
    tile.geometry.height = static_cast<int>(codes.dim(0));
    tile.geometry.width = static_cast<int>(codes.dim(1));
    tile.geometry.source = argv[6];
    tile.year = std::atoi(argv[5]);
    tile.layout.model_version = argv[8];
    tile.layout.dims = static_cast<int>(codes.dim(2));
    if (argc == 10) {
      std::stringstream depths(argv[9]);
      for (std::string d; std::getline(depths, d, ',');) tile.layout.depths.push_back(std::stoi(d));
    }
    tile.embeddings = {static_cast<const std::int8_t*>(codes.data()),
                       static_cast<const float*>(scales.data()), tile.geometry.height,
                       tile.geometry.width, tile.layout.dims};
    tessera::write_tile_to_zone_store(tile);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
