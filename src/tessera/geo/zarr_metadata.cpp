#include "tessera/geo/zarr_metadata.h"

#include "tessera/common/error.h"

namespace tessera {
namespace {

using nlohmann::json;

json bytes_codec() {
  return {{"name", "bytes"}, {"configuration", {{"endian", "little"}}}};
}

json blosc_codec(int item_size) {
  return {{"name", "blosc"},
          {"configuration",
           {{"typesize", item_size},
            {"cname", "zstd"},
            {"clevel", 3},
            {"shuffle", item_size == 1 ? "bitshuffle" : "shuffle"},
            {"blocksize", 0}}}};
}

json regular_grid(const std::vector<std::int64_t>& chunk_shape) {
  return {{"name", "regular"}, {"configuration", {{"chunk_shape", chunk_shape}}}};
}

json default_keys() {
  return {{"name", "default"}, {"configuration", {{"separator", "/"}}}};
}

std::string depth_array_name(int depth) {
  return "embeddings_d" + std::to_string(depth);
}

json depths_attribute(const ZoneStoreLayout& layout) {
  json depths = json::array();
  for (int d : layout.depths) depths.push_back({{"dimensions", d}, {"array", depth_array_name(d)}});
  depths.push_back({{"dimensions", layout.dims}, {"array", "embeddings"}});
  return depths;
}

}  // namespace

std::vector<ShardedArraySpec> sharded_arrays(const ZoneStoreLayout& layout) {
  std::vector<ShardedArraySpec> arrays{{"embeddings", layout.dims, 32, 1}};
  for (int d : layout.depths) arrays.push_back({depth_array_name(d), d, d == 4 ? 128 : 64, 1});
  arrays.push_back({"scales", 0, 32, 4});
  return arrays;
}

json root_group_json(const ZoneStoreLayout& layout) {
  json attrs = {{"geoemb:type", "pixel"},
                {"geoemb:dimensions", layout.dims},
                {"geoemb:model", "https://geotessera.org/model/" + layout.model_version},
                {"geoemb:source_data",
                 {"https://sentinel.esa.int/web/sentinel/missions/sentinel-1",
                  "https://sentinel.esa.int/web/sentinel/missions/sentinel-2"}},
                {"geoemb:data_type", "int8"},
                {"geoemb:gsd", 10.0},
                {"geoemb:spatial_layout", "utm_zones"},
                {"geoemb:build_version", "tessera"},
                {"geoemb:quantization",
                 {{"method", "per_pixel_scale"},
                  {"original_dtype", "float32"},
                  {"quantized_dtype", "int8"},
                  {"scale", {{"type", "array"}, {"array_name", "scales"}, {"nodata", "+inf"}}}}}};
  if (!layout.depths.empty()) attrs["geoemb:depths"] = depths_attribute(layout);
  return {{"zarr_format", 3}, {"node_type", "group"}, {"attributes", attrs}};
}

json zone_group_json(const ZoneGrid& grid) {
  const double x_max = grid.origin_x + 10.0 * static_cast<double>(grid.width);
  const double y_min = grid.origin_y - 10.0 * static_cast<double>(grid.height);
  const std::string code = "EPSG:" + std::to_string(32600 + grid.zone);
  json attrs = {{"spatial:dimensions", {"y", "x"}},
                {"spatial:bbox", {grid.origin_x, y_min, x_max, grid.origin_y}},
                {"spatial:transform_type", "affine"},
                {"spatial:transform", {10.0, 0.0, grid.origin_x, 0.0, -10.0, grid.origin_y}},
                {"spatial:shape", {grid.height, grid.width}},
                {"spatial:registration", "pixel"},
                {"proj:code", code}};
  return {{"zarr_format", 3}, {"node_type", "group"}, {"attributes", attrs}};
}

json sharded_array_json(const ShardedArraySpec& spec, const ZoneGrid& grid, std::int64_t years) {
  const std::int64_t side = spec.chunk_side;
  std::vector<std::int64_t> shape{years}, shard{1}, chunk{1};
  std::vector<std::string> names{"time"};
  if (spec.channels > 0) {
    shape.push_back(spec.channels), shard.push_back(spec.channels), chunk.push_back(spec.channels);
    names.push_back(spec.name == "embeddings" ? "band" : "band_d" + std::to_string(spec.channels));
  }
  shape.insert(shape.end(), {grid.height, grid.width});
  shard.insert(shard.end(), {kShardSide, kShardSide});
  chunk.insert(chunk.end(), {side, side});
  names.insert(names.end(), {"y", "x"});
  const json sharding = {{"name", "sharding_indexed"},
                         {"configuration",
                          {{"chunk_shape", chunk},
                           {"codecs", {bytes_codec(), blosc_codec(spec.item_size)}},
                           {"index_codecs", {bytes_codec(), {{"name", "crc32c"}}}},
                           {"index_location", "end"}}}};
  return {{"zarr_format", 3},
          {"node_type", "array"},
          {"shape", shape},
          {"data_type", spec.item_size == 1 ? "int8" : "float32"},
          {"chunk_grid", regular_grid(shard)},
          {"chunk_key_encoding", default_keys()},
          {"fill_value", spec.item_size == 1 ? json(0) : json("Infinity")},
          {"codecs", {sharding}},
          {"attributes", json::object()},
          {"dimension_names", names}};
}

json coordinate_array_json(const std::string& dimension, const std::string& dtype,
                           std::int64_t length, std::int64_t chunk, bool compressed) {
  json codecs = {bytes_codec()};
  if (compressed) codecs.push_back(blosc_codec(dtype == "float64" ? 8 : 4));
  return {{"zarr_format", 3},
          {"node_type", "array"},
          {"shape", {length}},
          {"data_type", dtype},
          {"chunk_grid", regular_grid({chunk})},
          {"chunk_key_encoding", default_keys()},
          {"fill_value", 0},
          {"codecs", codecs},
          {"attributes", json::object()},
          {"dimension_names", {dimension}}};
}

namespace {

// The first difference between `have` and `want` under `path`, descending into objects; the
// first entry of a "shape" is skipped (the time axis grows).
std::string first_difference(const std::string& path, const json& have, const json& want) {
  if (have.is_object() && want.is_object()) {
    for (const auto& [key, value] : want.items()) {
      const std::string inner = path.empty() ? key : path + "." + key;
      if (!have.contains(key)) return "it has no " + inner;
      const std::string difference = first_difference(inner, have[key], value);
      if (!difference.empty()) return difference;
    }
    return "";
  }
  const bool shape = path == "shape" && have.is_array() && want.is_array() &&
                     have.size() == want.size() && !have.empty();
  if (shape ? std::equal(have.begin() + 1, have.end(), want.begin() + 1) : have == want) return "";
  return path + " is " + have.dump() + ", expected " + want.dump();
}

}  // namespace

std::string layout_difference(const json& found, const json& expected) {
  if (!found.is_object()) return "it is not a JSON object";
  return first_difference("", found, expected);
}

}  // namespace tessera
