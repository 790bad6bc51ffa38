#pragma once
// Small Tessera-architecture models for tests that run an engine (link tessera_model).

#include <filesystem>
#include <string>

#include "tessera/model/model_builder.h"

namespace tessera::testing {

// d_model 32, one layer of 2 heads, FFN 64: runs in milliseconds. Steps as given.
inline ModelConfig tiny_model_config(int s2_steps = 40, int s1_steps = 40) {
  ModelConfig config;
  config.d_model = 32;
  config.layers = 1;
  config.heads = 2;
  config.ffn = 64;
  config.s2_steps = s2_steps;
  config.s1_steps = s1_steps;
  return config;
}

// Writes `config` to dir/name, replacing any file there, and returns the path. The file is
// replaced atomically (write_model renames a complete file into place), so tests running as
// parallel processes may write and read the same model at once.
inline std::string write_test_model(const std::string& dir, const std::string& name,
                                    const ModelConfig& config) {
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/" + name;
  write_model(config, path);
  return path;
}

}  // namespace tessera::testing
