#include "tessera/infer/tile_source.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <system_error>

#include "tessera/common/error.h"

namespace tessera {
namespace fs = std::filesystem;

bool looks_like_tile(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir / "s2", ec) || fs::is_regular_file(dir / "bands.npy", ec);
}

namespace {

std::vector<std::string> read_list_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot read the tile list");
  std::vector<std::string> tiles;
  const fs::path base = fs::path(path).parent_path();
  bool first = true;
  for (std::string line; std::getline(in, line);) {
    if (first && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // a UTF-8 byte order mark
    first = false;
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    const size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    line.erase(0, start);
    const fs::path tile(line);
    tiles.push_back(tile.is_absolute() ? line : (base / tile).string());
  }
  if (tiles.empty()) throw Error(path + ": the tile list is empty (no tile directory in it)");
  return tiles;
}

std::vector<std::string> scan_directory(const std::string& path) {
  if (looks_like_tile(path)) return {path};
  std::vector<std::string> tiles;
  std::error_code ec;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    // Left by a synth that is still writing, or that stopped while replacing a tile.
    const std::string name = it->path().filename().string();
    const size_t old = name.rfind(".old-");
    const bool in_the_making =
        name.ends_with(".partial") ||
        (old != std::string::npos && name.size() == old + 11);  // .old-XXXXXX
    if (!in_the_making && it->is_directory(ec) && looks_like_tile(it->path()))
      tiles.push_back(it->path().string());
  }
  if (ec) throw Error(path + ": cannot list the tile directory (" + ec.message() + ")");
  if (tiles.empty())
    throw Error(path + ": no tile directories in it (a tile holds s2/ or bands.npy)");
  std::sort(tiles.begin(), tiles.end());
  return tiles;
}

}  // namespace

std::vector<std::string> read_tile_source(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return scan_directory(path);
  if (!fs::exists(path, ec)) throw Error(path + ": no such tile list or tile directory");
  return read_list_file(path);
}

}  // namespace tessera
