#pragma once
// Where `tessera infer --tiles PATH` finds its tiles: PATH is either a list file (one tile
// directory per line; blank lines and '#' comments skipped; relative entries resolved against
// the list's folder) or a directory. A directory that is itself a tile gives that one tile;
// otherwise every immediate subdirectory that is a tile, in name order.
//
// A tile directory holds s2/ (nested layout) or bands.npy (flat layout); see io/tile.h.

#include <filesystem>
#include <string>
#include <vector>

namespace tessera {

// True when `dir` holds s2/ or bands.npy.
bool looks_like_tile(const std::filesystem::path& dir);

// The tile directories named by `path`, as described above. Throws tessera::Error naming
// `path` when it does not exist, cannot be read, or is a directory without tiles.
std::vector<std::string> read_tile_source(const std::string& path);

}  // namespace tessera
