// make-model's builder: analytic counts, determinism, config validation, atomic writes.

#include "tessera/model/model_builder.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "tessera/common/error.h"
#include "tessera/model/default_model.h"
#include "test_support.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

ModelConfig small_config() {
  ModelConfig c;
  c.d_model = 16;
  c.layers = 2;
  c.heads = 4;
  c.ffn = 32;
  c.s2_steps = 5;
  c.s1_steps = 3;
  c.latent = 8;
  return c;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string test_dir(const std::string& name) {
  return testing::fresh_test_dir("model_builder_" + name);
}

std::string usage_error(const ModelConfig& c) {
  try {
    count_model(c);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ModelBuilder, DefaultConfigHasTesseraV1ParameterCount) {
  EXPECT_EQ(count_model(ModelConfig{}).parameters, 45'828'226);
}

TEST(ModelBuilder, DefaultConfigFlopsMatchTesseraV1) {
  const double gflop = count_model(ModelConfig{}).gflop_per_pixel;
  EXPECT_NEAR(gflop, 3.676, 3.676 * 0.01);
}

TEST(ModelBuilder, SmallConfigCountsByHand) {
  // d 16, ffn 32, 2 layers; s2 10 bands, s1 2 bands; latent 8.
  const int64_t layer = 3 * 16 * 16 + 3 * 16 + 16 * 16 + 16 + 2 * 16 * 32 + 32 + 16 + 4 * 16;
  const int64_t pool = 6 * 16 * 16 + 3 * 16 + 2 * 16 + 16 + 1;
  const int64_t s2 = 10 * 16 + 16 + 16 * 16 + 16 + 2 * layer + pool;
  const int64_t s1 = 2 * 16 + 16 + 16 * 16 + 16 + 2 * layer + pool;
  EXPECT_EQ(count_model(small_config()).parameters, s2 + s1 + 32 * 8 + 8);
}

TEST(ModelBuilder, WritesTheCountedParametersAndIsByteIdentical) {
  const std::string dir = test_dir("determinism");
  const ModelStats a = write_model(small_config(), dir + "/a.onnx");
  const ModelStats b = write_model(small_config(), dir + "/b.onnx");
  EXPECT_EQ(a.parameters, count_model(small_config()).parameters);
  EXPECT_GT(a.nodes, 0);
  EXPECT_EQ(a.bytes, static_cast<int64_t>(fs::file_size(dir + "/a.onnx")));
  EXPECT_GT(a.bytes, 4 * a.parameters);
  EXPECT_EQ(a.nodes, b.nodes);
  const std::string bytes_a = read_bytes(dir + "/a.onnx");
  EXPECT_EQ(bytes_a, read_bytes(dir + "/b.onnx"));
  // Another seed gives other weights.
  ModelConfig other = small_config();
  other.seed = 7;
  write_model(other, dir + "/c.onnx");
  const std::string bytes_c = read_bytes(dir + "/c.onnx");
  EXPECT_NE(bytes_a, bytes_c);
  // No temporary file is left beside the outputs.
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 3);
  fs::remove_all(dir);
}

TEST(ModelBuilder, GraphHasNoScatterND) {
  const std::string dir = test_dir("scatter");
  write_model(small_config(), dir + "/m.onnx");
  const std::string bytes = read_bytes(dir + "/m.onnx");
  EXPECT_EQ(bytes.find("ScatterND"), std::string::npos);
  EXPECT_NE(bytes.find("LayerNormalization"), std::string::npos);
  EXPECT_NE(bytes.find("s2.pool.gru.W_hh"), std::string::npos);
  fs::remove_all(dir);
}

TEST(ModelBuilder, RejectsBadConfigsWithExactMessages) {
  ModelConfig c;
  c.heads = 3;
  EXPECT_EQ(usage_error(c), "model config: d_model (512) must be divisible by heads (3)");
  c = ModelConfig{};
  c.layers = 0;
  EXPECT_EQ(usage_error(c), "model config: layers must be positive (got 0)");
  c = ModelConfig{};
  c.s1_steps = -4;
  EXPECT_EQ(usage_error(c), "model config: s1_steps must be positive (got -4)");
  c = ModelConfig{};
  c.d_model = 9;
  c.heads = 3;
  EXPECT_EQ(usage_error(c),
            "model config: d_model (9) must be even (the day-of-year encoding pairs sin and cos)");
  c = ModelConfig{};
  c.layers = 400;
  EXPECT_EQ(usage_error(c),
            "model config: 4205082754 parameters do not fit one ONNX file (at most 500,000,000)");
}

TEST(ModelBuilder, WriteIntoMissingDirectoryNamesThePathAndLeavesNoTmp) {
  const std::string dir = test_dir("missing");
  const std::string path = dir + "/no/such/dir/m.onnx";
  try {
    write_model(small_config(), path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "cannot write model " + path + ": No such file or directory");
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::is_empty(dir));
  fs::remove_all(dir);
}

TEST(ModelBuilder, FormatsStats) {
  EXPECT_EQ(format_thousands(0), "0");
  EXPECT_EQ(format_thousands(999), "999");
  EXPECT_EQ(format_thousands(1000), "1,000");
  EXPECT_EQ(format_thousands(45828226), "45,828,226");
  EXPECT_EQ(format_thousands(-1234567), "-1,234,567");
  ModelStats s;
  s.parameters = 45828226;
  s.gflop_per_pixel = 3.6761763;
  s.nodes = 2225;
  s.bytes = 183'312'345;
  EXPECT_EQ(format_model_stats(s),
            "45,828,226 parameters, 3.676 GFLOP/pixel, 2,225 nodes, 183.3 MB");
}

TEST(DefaultModel, PathFollowsEnvironment) {
  const char* saved_dir = std::getenv("TESSERA_MODEL_DIR");
  const char* saved_cache = std::getenv("XDG_CACHE_HOME");
  const char* saved_home = std::getenv("HOME");
  const std::string keep_dir = saved_dir ? saved_dir : "";
  const std::string keep_cache = saved_cache ? saved_cache : "";
  const std::string keep_home = saved_home ? saved_home : "";

  ::setenv("TESSERA_MODEL_DIR", "/models", 1);
  ::setenv("XDG_CACHE_HOME", "/cache", 1);
  ::setenv("HOME", "/home/u", 1);
  EXPECT_EQ(default_model_path(), "/models/tessera-v1.0-seed42.onnx");
  ::unsetenv("TESSERA_MODEL_DIR");
  EXPECT_EQ(default_model_path(), "/cache/tessera/tessera-v1.0-seed42.onnx");
  ::setenv("XDG_CACHE_HOME", "", 1);
  EXPECT_EQ(default_model_path(), "/home/u/.cache/tessera/tessera-v1.0-seed42.onnx");
  ::unsetenv("XDG_CACHE_HOME");
  ::unsetenv("HOME");
  EXPECT_THROW(default_model_path(), Error);

  auto restore = [](const char* name, const char* saved, const std::string& value) {
    if (saved) {
      ::setenv(name, value.c_str(), 1);
    } else {
      ::unsetenv(name);
    }
  };
  restore("TESSERA_MODEL_DIR", saved_dir, keep_dir);
  restore("XDG_CACHE_HOME", saved_cache, keep_cache);
  restore("HOME", saved_home, keep_home);
}

}  // namespace
}  // namespace tessera
