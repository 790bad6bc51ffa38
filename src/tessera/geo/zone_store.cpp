#include "tessera/geo/zone_store.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include "tessera/common/error.h"
#include "tessera/geo/store_lock.h"
#include "tessera/geo/zarr_shard.h"
#include "tessera/geo/zone_shards.h"
#include "tessera/io/atomic_file.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::int64_t kZoneWidth = 17 * kShardSide;    // 696 320 m: 6 degrees at the equator
constexpr std::int64_t kZoneHeight = 489 * kShardSide;  // 20 029 440 m: pole to pole
constexpr std::int64_t kCoordinateChunk = 262144;       // items per chunk of x and y

void make_directory(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(dir + ": cannot create directory: " + ec.message());
}

// The document at `path`, or nothing when there is none. Absence is told by the open's own
// errno, never by a second look: another process may rename the file into place between the two
// (metadata lands by rename, so an opened file is always whole).
std::optional<json> read_json(const std::string& path) {
  errno = 0;
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) {
    const int err = errno;
    if (err == ENOENT) return std::nullopt;
    throw Error(path + ": cannot read: " + errno_text(err));
  }
  json doc = json::parse(file.get(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) throw Error(path + ": not valid JSON");
  return doc;
}

void write_file_atomically(const std::string& path, const void* data, std::size_t bytes) {
  AtomicFile file(path);
  file.write(data, bytes);
  file.commit();
}

void write_json_atomically(const std::string& path, const json& doc) {
  const std::string text = doc.dump(2) + "\n";
  write_file_atomically(path, text.data(), text.size());
}

// Refuses a store node whose zarr.json differs from the one this layout writes.
void require_layout(const std::string& path, const json& found, const json& expected) {
  const std::string difference = layout_difference(found, expected);
  if (!difference.empty())
    throw Error(path + ": a store of another layout (" + difference +
                "); write into another store");
}

// A coordinate array's chunks, each `chunk` items padded with the fill value 0.
template <typename T>
void write_coordinate_chunks(const std::string& dir, const std::vector<T>& values,
                             std::int64_t chunk, bool compressed) {
  make_directory(dir + "/c");
  for (std::int64_t first = 0, c = 0; first < std::ssize(values); first += chunk, ++c) {
    std::vector<T> part(static_cast<std::size_t>(chunk), T{0});
    const std::int64_t n = std::min<std::int64_t>(chunk, std::ssize(values) - first);
    std::copy_n(values.begin() + first, n, part.begin());
    const std::string key = dir + "/c/" + std::to_string(c);
    const std::size_t bytes = part.size() * sizeof(T);
    if (!compressed) {
      write_file_atomically(key, part.data(), bytes);
      continue;
    }
    const std::vector<std::uint8_t> frame = blosc_compress_chunk(part.data(), bytes, sizeof(T));
    write_file_atomically(key, frame.data(), frame.size());
  }
}

template <typename T>
void write_coordinate_array(const std::string& dir, const std::string& dimension,
                            const std::string& dtype, const std::vector<T>& values,
                            std::int64_t chunk, bool compressed) {
  make_directory(dir);
  write_coordinate_chunks(dir, values, chunk, compressed);
  write_json_atomically(
      dir + "/zarr.json",
      coordinate_array_json(dimension, dtype, std::ssize(values), chunk, compressed));
}

std::vector<double> pixel_centres(double origin, double step, std::int64_t n) {
  std::vector<double> centres(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) centres[i] = origin + (static_cast<double>(i) + 0.5) * step;
  return centres;
}

void write_band_array(const std::string& dir, const std::string& name, int bands) {
  std::vector<std::int32_t> values(static_cast<std::size_t>(bands));
  for (int b = 0; b < bands; ++b) values[b] = b;
  write_coordinate_array(dir, name, "int32", values, bands, false);
}

std::string zone_group_name(int zone) {
  return fmt::format("utm{:02d}", zone);
}

}  // namespace

ZoneGrid zone_grid(int zone) {
  ZoneGrid grid;
  grid.zone = zone;
  grid.width = kZoneWidth;
  grid.height = kZoneHeight;
  grid.origin_x = 500000.0 - 5.0 * static_cast<double>(kZoneWidth);
  grid.origin_y = 5.0 * static_cast<double>(kZoneHeight);
  return grid;
}

namespace {

// What is wrong with the request before the store is touched: "" when nothing.
std::string tile_problem(const ZoneStoreTile& tile) {
  const TileGeometry& g = tile.geometry;
  const TileEmbeddingsView& e = tile.embeddings;
  const ZoneStoreLayout& layout = tile.layout;
  if (utm_zone_of(g.epsg) == 0)
    return fmt::format("CRS {} is not UTM (EPSG:326NN or 327NN); a zone store holds UTM tiles",
                       g.epsg ? fmt::format("EPSG:{}", g.epsg) : "without an EPSG code");
  if (g.pixel_size != 10.0)
    return fmt::format("pixels of {} m; a zone store holds 10 m pixels", g.pixel_size);
  if (layout.dims < 1 || e.dims != layout.dims)
    return "embeddings of " + std::to_string(e.dims) + " values, the store's layout has " +
           std::to_string(layout.dims);
  for (std::size_t i = 0; i < layout.depths.size(); ++i) {
    const int d = layout.depths[i];
    if ((d != 4 && d != 16) || d >= layout.dims || (i > 0 && d <= layout.depths[i - 1]))
      return "depths must be 4 and/or 16, ascending and below " + std::to_string(layout.dims);
  }
  if (e.height != g.height || e.width != g.width || !e.codes || !e.scales || e.height < 1 ||
      e.width < 1)
    return "embeddings of " + std::to_string(e.height) + " x " + std::to_string(e.width) +
           " pixels on a grid of " + std::to_string(g.height) + " x " + std::to_string(g.width);
  return "";
}

// The tile's top-left pixel in its zone grid; throws when the tile does not lie inside it.
std::pair<std::int64_t, std::int64_t> tile_offset(const TileGeometry& g, const ZoneGrid& grid) {
  const double northing = is_southern_utm(g.epsg) ? g.origin_y - 10000000.0 : g.origin_y;
  const auto row = static_cast<std::int64_t>(std::llround((grid.origin_y - northing) / 10.0));
  const auto col = static_cast<std::int64_t>(std::llround((g.origin_x - grid.origin_x) / 10.0));
  if (row < 0 || col < 0 || row + g.height > grid.height || col + g.width > grid.width)
    throw Error(fmt::format("{}: the tile (origin {}, {}) lies outside UTM zone {}'s grid",
                            g.source, g.origin_x, g.origin_y, grid.zone));
  return {row, col};
}

class ZoneStore {
 public:
  ZoneStore(std::string root, ZoneStoreLayout layout, ZoneGrid grid)
      : root_(std::move(root)),
        layout_(std::move(layout)),
        grid_(grid),
        group_(root_ + "/" + zone_group_name(grid.zone)) {}

  // Creates what is missing (root, zone group) or checks that what is there is this layout.
  void open() {
    require_directory_or_absent(root_);
    if (!check_existing()) {
      make_directory(root_);
      StoreLock lock(root_ + "/.tessera.lock");
      if (!check_existing()) create_missing();
    }
  }

  // The time index of `year`, appending it to the time axis when it is new.
  std::int64_t time_index(int year) {
    if (const auto t = find_year(year)) return *t;
    StoreLock lock(root_ + "/.tessera.lock");
    if (const auto t = find_year(year)) return *t;
    return append_year(year);
  }

  std::string array_dir(const std::string& name) const { return group_ + "/" + name; }

  // Throws what open() would for a store of another layout, changing nothing.
  void check() const {
    require_directory_or_absent(root_);
    check_existing();
  }

 private:
  static void require_directory_or_absent(const std::string& dir) {
    std::error_code ec;
    if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
      throw Error(dir + ": not a directory (a zarr store is one); write into another store");
  }

  // True when root and zone group exist (and are this layout); false when either is missing.
  bool check_existing() const {
    const auto root = read_json(root_ + "/zarr.json");
    if (root) require_layout(root_ + "/zarr.json", *root, root_group_json(layout_));
    const auto group = read_json(group_ + "/zarr.json");
    if (!root || !group) return false;
    require_layout(group_ + "/zarr.json", *group, zone_group_json(grid_));
    for (const ShardedArraySpec& spec : sharded_arrays(layout_)) {
      const std::string path = array_dir(spec.name) + "/zarr.json";
      const auto found = read_json(path);
      if (!found) throw Error(path + ": missing from the zone group");
      require_layout(path, *found, sharded_array_json(spec, grid_, 0));
    }
    return true;
  }

  // Under the store lock. The group's zarr.json comes last: once it exists, so does the rest.
  void create_missing() {
    if (!read_json(root_ + "/zarr.json"))
      write_json_atomically(root_ + "/zarr.json", root_group_json(layout_));
    make_directory(group_);
    write_coordinate_array(array_dir("x"), "x", "float64",
                           pixel_centres(grid_.origin_x, 10.0, grid_.width), kCoordinateChunk,
                           true);
    write_coordinate_array(array_dir("y"), "y", "float64",
                           pixel_centres(grid_.origin_y, -10.0, grid_.height), kCoordinateChunk,
                           true);
    write_band_array(array_dir("band"), "band", layout_.dims);
    for (int d : layout_.depths)
      write_band_array(array_dir("band_d" + std::to_string(d)), "band_d" + std::to_string(d), d);
    write_coordinate_array(array_dir("time"), "time", "int32", std::vector<std::int32_t>{}, 1,
                           false);
    for (const ShardedArraySpec& spec : sharded_arrays(layout_)) {
      make_directory(array_dir(spec.name));
      write_json_atomically(array_dir(spec.name) + "/zarr.json",
                            sharded_array_json(spec, grid_, 0));
    }
    write_json_atomically(group_ + "/zarr.json", zone_group_json(grid_));
  }

  // The years on the time axis, in the order they were added.
  std::vector<std::int32_t> years() const {
    const std::string dir = array_dir("time");
    const auto meta = read_json(dir + "/zarr.json");
    if (!meta) throw Error(dir + "/zarr.json: missing from the zone group");
    require_layout(dir + "/zarr.json", *meta, coordinate_array_json("time", "int32", 0, 1, false));
    const auto count = (*meta)["shape"][0].get<std::int64_t>();
    std::vector<std::int32_t> years(static_cast<std::size_t>(count));
    for (std::int64_t t = 0; t < count; ++t) {
      const std::string key = dir + "/c/" + std::to_string(t);
      std::ifstream in(key, std::ios::binary);
      if (!in.read(reinterpret_cast<char*>(&years[t]), sizeof(std::int32_t)))
        throw Error(key + ": missing or short (a time axis entry of 4 bytes)");
    }
    return years;
  }

  std::optional<std::int64_t> find_year(int year) const {
    const std::vector<std::int32_t> known = years();
    const auto at = std::find(known.begin(), known.end(), year);
    if (at == known.end()) return std::nullopt;
    return at - known.begin();
  }

  // Under the store lock. The time array's zarr.json is the commit point: its value is written
  // first, the data arrays grow next, and only then does the time axis say the year is there;
  // a run killed on the way leaves arrays one longer than `time`, which the next append reuses.
  std::int64_t append_year(int year) {
    const auto t = static_cast<std::int64_t>(years().size());
    const std::int32_t value = year;
    write_file_atomically(array_dir("time") + "/c/" + std::to_string(t), &value, sizeof value);
    for (const ShardedArraySpec& spec : sharded_arrays(layout_))
      write_json_atomically(array_dir(spec.name) + "/zarr.json",
                            sharded_array_json(spec, grid_, t + 1));
    write_json_atomically(array_dir("time") + "/zarr.json",
                          coordinate_array_json("time", "int32", t + 1, 1, false));
    return t;
  }

  std::string root_;
  ZoneStoreLayout layout_;
  ZoneGrid grid_;
  std::string group_;
};

// The tile's codes as (dims, H, W) planes: the layout of every embeddings array's chunks.
std::vector<std::int8_t> planar_codes(const TileEmbeddingsView& e) {
  const std::size_t pixels = static_cast<std::size_t>(e.height) * e.width;
  std::vector<std::int8_t> planes(pixels * e.dims);
  for (std::size_t p = 0; p < pixels; ++p)
    for (int c = 0; c < e.dims; ++c) planes[c * pixels + p] = e.codes[p * e.dims + c];
  return planes;
}

// Scales with "no embedding" (0, or not finite) as NaN: no data within a tile.
std::vector<float> stored_scales(const TileEmbeddingsView& e) {
  std::vector<float> scales(e.scales, e.scales + static_cast<std::size_t>(e.height) * e.width);
  for (float& s : scales)
    if (s == 0.0f || !std::isfinite(s)) s = std::numeric_limits<float>::quiet_NaN();
  return scales;
}

// Writes `patch` into every shard of `spec` at time index `t` that the tile touches.
void write_array(const std::string& dir, const ShardedArraySpec& spec, std::int64_t t,
                 const PlanarPatch& patch) {
  for (std::int64_t sr = patch.row / kShardSide; sr <= (patch.row + patch.height - 1) / kShardSide;
       ++sr)
    for (std::int64_t sc = patch.col / kShardSide; sc <= (patch.col + patch.width - 1) / kShardSide;
         ++sc) {
      // Chunk keys: c/{t}/0/{row}/{col} (embeddings), c/{t}/{row}/{col} (scales).
      const std::string shard_dir = spec.channels > 0 ? fmt::format("{}/c/{}/0/{}", dir, t, sr)
                                                      : fmt::format("{}/c/{}/{}", dir, t, sr);
      make_directory(shard_dir);
      update_shard(fmt::format("{}/{}", shard_dir, sc), spec, sr, sc, patch);
    }
}

}  // namespace

void check_zone_store(const std::string& store, const ZoneStoreLayout& layout, int zone) {
  ZoneStore(store, layout, zone_grid(zone)).check();
}

void write_tile_to_zone_store(const ZoneStoreTile& tile) {
  const std::string problem = tile_problem(tile);
  if (!problem.empty()) throw Error(tile.geometry.source + ": " + problem);
  const ZoneGrid grid = zone_grid(utm_zone_of(tile.geometry.epsg));
  const auto [row, col] = tile_offset(tile.geometry, grid);
  ZoneStore store(tile.store, tile.layout, grid);
  store.open();
  const std::int64_t t = store.time_index(tile.year);
  const std::vector<std::int8_t> codes = planar_codes(tile.embeddings);
  const std::vector<float> scales = stored_scales(tile.embeddings);
  for (const ShardedArraySpec& spec : sharded_arrays(tile.layout)) {
    const void* data = spec.channels > 0 ? static_cast<const void*>(codes.data()) : scales.data();
    write_array(store.array_dir(spec.name), spec, t,
                {data, tile.embeddings.height, tile.embeddings.width, row, col});
  }
}

}  // namespace tessera
