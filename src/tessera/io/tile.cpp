#include "tessera/io/tile.h"

#include <filesystem>
#include <vector>

#include "tessera/common/error.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

// Opens `sub/name` (nested) or `name` (flat) in `dir`; reports which layout it found.
NpyArray open_member(const std::string& dir, const std::string& sub, const std::string& name,
                     bool* nested) {
  const fs::path nested_path = fs::path(dir) / sub / name;
  const fs::path flat_path = fs::path(dir) / name;
  std::error_code ec;
  if (fs::is_regular_file(nested_path, ec)) {
    *nested = true;
    return NpyArray(nested_path.string());
  }
  if (fs::is_regular_file(flat_path, ec)) {
    *nested = false;
    return NpyArray(flat_path.string());
  }
  throw Error(dir + ": missing " + sub + "/" + name + " (nor " + name + ")");
}

void require_numeric(const NpyArray& a) {
  if (a.dtype() == DType::kBool) {
    throw Error(a.path() + ": dtype bool is not allowed here (need an integer or float dtype)");
  }
}

void require_shape(const NpyArray& a, const std::vector<int64_t>& want, const std::string& pattern,
                   const std::string& reference) {
  if (a.shape() != want) {
    throw Error(a.path() + ": expected shape " + pattern + " = " + format_shape(want) +
                " to match " + reference + ", got " + format_shape(a.shape()));
  }
}

}  // namespace

std::string tile_grid_name(const std::string& dir) {
  std::error_code ec;
  fs::path p = fs::path(dir);
  if (!p.has_filename()) p = p.parent_path();  // "a/b/" -> "a/b"
  std::string grid = fs::weakly_canonical(p, ec).filename().string();
  if (grid.empty() || grid == "." || grid == "..") grid = p.filename().string();
  return grid;
}

std::vector<const NpyArray*> tile_files(const Tile& t) {
  return {&t.s2_bands,    &t.s2_masks, &t.s2_doys,     &t.s1_asc,
          &t.s1_asc_doys, &t.s1_desc,  &t.s1_desc_doys};
}

Tile open_tile(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(dir + ": not a directory");
  Tile t;
  t.dir = dir;
  t.grid = tile_grid_name(dir);

  bool nested = true;
  t.s2_bands = open_member(dir, "s2", "bands.npy", &nested);
  t.nested = nested;
  t.s2_masks = open_member(dir, "s2", "masks.npy", &nested);
  t.s2_doys = open_member(dir, "s2", "doys.npy", &nested);
  t.s1_asc = open_member(dir, "s1", "sar_ascending.npy", &nested);
  t.s1_asc_doys = open_member(dir, "s1", "sar_ascending_doy.npy", &nested);
  t.s1_desc = open_member(dir, "s1", "sar_descending.npy", &nested);
  t.s1_desc_doys = open_member(dir, "s1", "sar_descending_doy.npy", &nested);

  const NpyArray& bands = t.s2_bands;
  require_numeric(bands);
  if (bands.ndim() != 4 || bands.dim(3) != kS2Bands) {
    throw Error(bands.path() + ": expected shape (T, H, W, 10), got " +
                format_shape(bands.shape()));
  }
  t.t2 = bands.dim(0);
  t.height = bands.dim(1);
  t.width = bands.dim(2);
  if (t.t2 == 0 || t.height == 0 || t.width == 0) {
    throw Error(bands.path() + ": empty array of shape " + format_shape(bands.shape()) +
                " (need T, H, W >= 1)");
  }
  const std::string ref = "s2/bands.npy";
  require_shape(t.s2_masks, {t.t2, t.height, t.width}, "(T, H, W)", ref);
  require_numeric(t.s2_doys);
  require_shape(t.s2_doys, {t.t2}, "(T,)", ref);

  struct Direction {
    NpyArray* bands;
    NpyArray* doys;
    int64_t* steps;
    const char* name;
  };
  for (const Direction& d :
       {Direction{&t.s1_asc, &t.s1_asc_doys, &t.ta, "s1/sar_ascending.npy"},
        Direction{&t.s1_desc, &t.s1_desc_doys, &t.td, "s1/sar_descending.npy"}}) {
    require_numeric(*d.bands);
    const int64_t steps = d.bands->ndim() == 4 ? d.bands->dim(0) : 0;
    require_shape(*d.bands, {steps, t.height, t.width, kS1Bands}, "(T, H, W, 2)", ref);
    *d.steps = steps;
    require_numeric(*d.doys);
    require_shape(*d.doys, {steps}, "(T,)", d.name);
  }
  return t;
}

}  // namespace tessera
