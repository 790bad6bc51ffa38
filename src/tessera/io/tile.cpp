#include "tessera/io/tile.h"

#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <utility>
#include <vector>

#include "tessera/common/error.h"
#include "tessera/io/atomic_file.h"
#include "tessera/io/safe_file.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

// Whether something is at `path` (following links, as reading it would). Nothing there (or a
// parent that is not a directory) is false; a regular file is true; anything else, a dangling
// link, a link loop or a path that cannot be searched, throws naming `path` and what is there.
bool member_exists(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISREG(st.st_mode)) return true;
    throw Error(path.string() + ": is " + file_kind(st.st_mode) + ", not a .npy file");
  }
  const int err = errno;
  if (err == ELOOP) {
    throw Error(path.string() + ": a loop of symbolic links (it never reaches a file)");
  }
  if (err == ENOENT && ::lstat(path.c_str(), &st) == 0) {
    throw Error(path.string() + ": a symbolic link to a file that does not exist");
  }
  if (err == ENOENT || err == ENOTDIR) return false;
  throw Error(path.string() + ": cannot access: " + errno_text(err));
}

// The seven members of a tile: their subdirectory (nested layout) and file name.
constexpr std::pair<const char*, const char*> kTileMembers[] = {{"s2", "bands.npy"},
                                                                {"s2", "masks.npy"},
                                                                {"s2", "doys.npy"},
                                                                {"s1", "sar_ascending.npy"},
                                                                {"s1", "sar_ascending_doy.npy"},
                                                                {"s1", "sar_descending.npy"},
                                                                {"s1", "sar_descending_doy.npy"}};

// Opens `sub/name` (nested) or `name` (flat) in `dir`; reports which layout it found.
NpyArray open_member(const std::string& dir, const std::string& sub, const std::string& name,
                     bool* nested) {
  const fs::path nested_path = fs::path(dir) / sub / name;
  const fs::path flat_path = fs::path(dir) / name;
  if (member_exists(nested_path)) {
    *nested = true;
    return NpyArray(nested_path.string());
  }
  if (member_exists(flat_path)) {
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

std::vector<std::string> tile_input_paths(const std::string& dir) {
  const auto regular = [](const fs::path& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
  };
  std::vector<std::string> paths;
  for (const auto& [sub, name] : kTileMembers) {
    const fs::path nested_path = fs::path(dir) / sub / name;
    const fs::path flat_path = fs::path(dir) / name;
    if (regular(nested_path)) {
      paths.push_back(nested_path.string());
    } else if (regular(flat_path)) {
      paths.push_back(flat_path.string());
    }
  }
  return paths;
}

void require_tile_directory(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return;
    throw Error(dir + ": not a directory (it is " + file_kind(st.st_mode) + ")");
  }
  const int err = errno;
  if (err == ELOOP) throw Error(dir + ": a loop of symbolic links (it never reaches a directory)");
  if (err == ENOENT || err == ENOTDIR) throw Error(dir + ": not a directory");
  throw Error(dir + ": cannot access: " + errno_text(err));
}

Tile open_tile(const std::string& dir) {
  require_tile_directory(dir);
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
