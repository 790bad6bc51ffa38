#include "tessera/runtime/tile_record.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tessera/common/clock.h"
#include "tessera/common/error.h"
#include "tessera/io/atomic_file.h"

namespace tessera {

std::string tile_record_path(const std::string& out_dir, const std::string& grid) {
  return (std::filesystem::path(out_dir) / (grid + ".tessera.json")).string();
}

std::optional<TileRecord> read_tile_record(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::nullopt;
  std::ifstream in(path);
  try {
    const nlohmann::json j = nlohmann::json::parse(in);
    TileRecord r;
    r.tessera_version = j.at("tessera").get<std::string>();
    r.model = j.at("model").get<std::string>();
    r.model_sha256 = j.at("model_sha256").get<std::string>();
    r.weights = j.at("weights").get<std::string>();
    r.version = j.at("version").get<std::string>();
    r.engine = j.at("engine").get<std::string>();
    r.precision = j.at("precision").get<std::string>();
    r.output_dim = j.at("output_dim").get<int64_t>();
    r.repeat = j.at("repeat").get<int>();
    r.created = j.at("created").get<std::string>();
    return r;
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": not a tessera tile record (" + e.what() + ")");
  }
}

void write_tile_record(const std::string& path, TileRecord record) {
  record.created = utc_timestamp();
  const nlohmann::json j = {{"tessera", record.tessera_version},
                            {"model", record.model},
                            {"model_sha256", record.model_sha256},
                            {"weights", record.weights},
                            {"version", record.version},
                            {"engine", record.engine},
                            {"precision", record.precision},
                            {"output_dim", record.output_dim},
                            {"repeat", record.repeat},
                            {"created", record.created}};
  const std::string text = j.dump(2) + "\n";
  AtomicFile file(path);
  file.write(text.data(), text.size());
  file.commit();
}

std::string record_difference(const TileRecord& made, const TileRecord& now) {
  const auto differs = [](const std::string& what, const std::string& a, const std::string& b) {
    return fmt::format("{} {} (this run: {})", what, a, b);
  };
  if (made.model_sha256 != now.model_sha256) {
    return differs("model sha256", made.model_sha256.substr(0, 12), now.model_sha256.substr(0, 12));
  }
  if (made.engine != now.engine) return differs("engine", made.engine, now.engine);
  if (made.precision != now.precision) return differs("precision", made.precision, now.precision);
  if (made.output_dim != now.output_dim) {
    return differs("width", std::to_string(made.output_dim), std::to_string(now.output_dim));
  }
  if (made.repeat != now.repeat) {
    return differs("repeat", std::to_string(made.repeat), std::to_string(now.repeat));
  }
  return "";
}

}  // namespace tessera
