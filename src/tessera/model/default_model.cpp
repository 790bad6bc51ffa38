#include "tessera/model/default_model.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "tessera/common/error.h"
#include "tessera/model/model_builder.h"
#include "tessera/model/model_config.h"

namespace tessera {
namespace {

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::string(value) : std::string();
}

}  // namespace

std::string default_model_path() {
  std::filesystem::path dir;
  if (const std::string models = env("TESSERA_MODEL_DIR"); !models.empty()) {
    dir = models;
  } else if (const std::string cache = env("XDG_CACHE_HOME"); !cache.empty()) {
    dir = std::filesystem::path(cache) / "tessera";
  } else if (const std::string home = env("HOME"); !home.empty()) {
    dir = std::filesystem::path(home) / ".cache" / "tessera";
  } else {
    throw Error(
        "cannot place the built-in model: none of TESSERA_MODEL_DIR, XDG_CACHE_HOME, HOME is set");
  }
  return (dir / kDefaultModelFile).string();
}

std::string ensure_default_model(bool verbose) {
  const std::string path = default_model_path();
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) return path;
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    throw Error("cannot create the model directory " + dir.string() + ": " + ec.message());
  }
  if (verbose) {
    std::fprintf(stderr, "tessera: building the built-in model at %s (one time)\n", path.c_str());
  }
  write_model(ModelConfig{}, path);
  return path;
}

}  // namespace tessera
