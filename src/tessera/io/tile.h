#pragma once
// A dpixel tile: the seven .npy arrays of one tile directory, memory-mapped and validated.
//
// Layouts: nested (DIR/s2/bands.npy, DIR/s1/sar_ascending.npy, ...) or flat (the same file
// names directly in DIR); each file is looked up nested first, then flat.
//
// Invariants after open_tile() (every violation is a one-line tessera::Error naming the file):
//   s2_bands  (T2, H, W, 10)   any integer or float dtype
//   s2_masks  (T2, H, W)       bool or any integer or float dtype (non-zero = clear)
//   s2_doys   (T2,)            any integer or float dtype
//   s1_asc    (Ta, H, W, 2), s1_asc_doys (Ta,); s1_desc (Td, H, W, 2), s1_desc_doys (Td,)
//   T2 >= 1, H >= 1, W >= 1; Ta and Td may be 0.
// A Tile is immutable once opened; all its methods are thread-safe.

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/io/npy.h"

namespace tessera {

constexpr int kS2Bands = 10;
constexpr int kS1Bands = 2;

struct Tile {
  std::string dir;   // as given
  std::string grid;  // the directory's base name, e.g. "grid_51.05_10.35": names the outputs
  bool nested = true;

  NpyArray s2_bands, s2_masks, s2_doys;
  NpyArray s1_asc, s1_asc_doys, s1_desc, s1_desc_doys;

  int64_t height = 0, width = 0;
  int64_t t2 = 0, ta = 0, td = 0;

  int64_t pixels() const { return height * width; }
};

// The grid name of the tile in `dir`: its base name, after resolving "." and links.
std::string tile_grid_name(const std::string& dir);

// Throws Error "<dir>: not a directory (...)", or naming a loop of symbolic links or an access
// error, unless `dir` is (or links to) a directory.
void require_tile_directory(const std::string& dir);

// Opens and validates the tile in `dir`. A member that is not a regular file (a directory, a
// FIFO, a dangling link, a loop of links) is an error saying so, not "missing".
Tile open_tile(const std::string& dir);

// The tile's seven input arrays.
std::vector<const NpyArray*> tile_files(const Tile& tile);

// The input files open_tile(dir) would read (each member nested first, then flat), those of them
// that are regular files; never throws. For checks made before any tile is opened.
std::vector<std::string> tile_input_paths(const std::string& dir);

}  // namespace tessera
