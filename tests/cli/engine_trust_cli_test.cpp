// The two engines fail the same way on the same bad model or input, and a run's memory follows
// the work (the tile's pixels), not -b.

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "run_cli.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using tessera::testing::run_cli;
using tessera::testing::slurp;

const tessera::testing::ProcessTestDir kTestDir("engine_trust_cli");
const std::string& kDir = kTestDir.path();

// A v2 student of d_model 32 (latent 8), one layer of 2 heads.
const std::string& v2_model() {
  static const std::string path = [] {
    const std::string p = kDir + "/v2.onnx";
    fs::create_directories(kDir);
    const auto r =
        run_cli("make-model --force --arch v2 --latent 8 --layers 1 --heads 2 --ffn 64 -o " + p);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return p;
  }();
  return path;
}

// The v2 model with element `element` of initializer `name` set to `value`, at dir/<file>.
std::string v2_model_with(const std::string& file, const std::string& name, int64_t element,
                          float value) {
  onnx::ModelProto model;
  std::ifstream in(v2_model(), std::ios::binary);
  EXPECT_TRUE(model.ParseFromIstream(&in));
  for (auto& tensor : *model.mutable_graph()->mutable_initializer()) {
    if (tensor.name() == name)
      std::memcpy(tensor.mutable_raw_data()->data() + element * sizeof(float), &value, 4);
  }
  const std::string path = kDir + "/" + file;
  std::ofstream out(path, std::ios::binary);
  model.SerializeToOstream(&out);
  return path;
}

// The error line of `infer` on a small tile with `engine`; the run must fail and write nothing.
std::string infer_error(const std::string& tile, const std::string& model,
                        const std::string& engine) {
  const std::string out = kDir + "/out_" + engine;
  fs::remove_all(out);
  const auto r = run_cli("infer " + tile + " -o " + out + " -m " + model + " --engine " + engine +
                         " --layout 1x1 -b 8");
  EXPECT_EQ(r.exit_code, 1) << engine << ": " << r.err;
  EXPECT_FALSE(fs::exists(out + "/" + fs::path(tile).filename().string() + ".npy")) << engine;
  // The run's first line names the engine asked for; the error follows it.
  const std::string engine_line = "tessera: engine: " + engine + " fp32 (--engine)\n";
  EXPECT_EQ(r.err.rfind(engine_line, 0), 0u) << r.err;
  return r.err.rfind(engine_line, 0) == 0 ? r.err.substr(engine_line.size()) : r.err;
}

// A NaN bias ahead of a ReLU (which turned it into 0 on the native engine, exit 0) and an
// infinite weight: both engines refuse the model with the same line before any tile runs.
TEST(EngineTrustCli, ANonFiniteWeightIsTheSameOneLineOnBothEngines) {
  const std::string tile = tessera::testing::make_small_tile(kDir, "grid_1.05_2.05");
  const std::string nan_model = v2_model_with("nan.onnx", "s2.layers.0.ffn.linear1.bias", 5,
                                              std::numeric_limits<float>::quiet_NaN());
  const std::string inf_model =
      v2_model_with("inf.onnx", "fusion.linear2.weight", 7, std::numeric_limits<float>::infinity());
  for (const std::string engine : {"ort", "native"}) {
    EXPECT_EQ(
        infer_error(tile, nan_model, engine),
        "tessera: " + nan_model + ": weight s2.layers.0.ffn.linear1.bias holds NaN (element 5)\n");
    EXPECT_EQ(
        infer_error(tile, inf_model, engine),
        "tessera: " + inf_model + ": weight fusion.linear2.weight holds infinity (element 7)\n");
  }
}

// A finite float32 input (3e38) that makes the model overflow: the runtime's check of every
// output applies to the native engine's as to ONNX Runtime's, with the same line.
TEST(EngineTrustCli, ANonFiniteOutputIsTheSameOneLineOnBothEngines) {
  const std::string tile = tessera::testing::make_small_tile(kDir, "grid_3.05_4.05");
  const std::string bands = tile + "/s2/bands.npy";
  const std::string script = "import numpy as np; b = np.load('" + bands +
                             "').astype(np.float32); b[:, 1, 2, :] = 3e38; np.save('" + bands +
                             "', b)";
  ASSERT_EQ(std::system((std::string(TESSERA_PYTHON3) + " -c \"" + script + "\"").c_str()), 0);
  const std::string model = tessera::testing::make_small_model(kDir);
  const std::string expected = "tessera: " + tile + ": pixel 1,2: the model (" + model +
                               ") produced a non-finite output (nan in element 0)\n";
  {
    // ONNX Runtime leaves a few allocations of its own behind when a run ends on this error;
    // LeakSanitizer (sanitizer builds) would add its report to the one line compared here.
    const char* given = std::getenv("ASAN_OPTIONS");
    const std::string options = std::string(given ? given : "") + ":detect_leaks=0";
    ::setenv("ASAN_OPTIONS", options.c_str(), 1);
    EXPECT_EQ(infer_error(tile, model, "ort"), expected);
    if (given) ::setenv("ASAN_OPTIONS", given, 1);
    if (!given) ::unsetenv("ASAN_OPTIONS");
  }
  EXPECT_EQ(infer_error(tile, model, "native"), expected);
}

// -b far beyond a 32 x 32 tile: the engines hold no more pixels than the tile has, so the peak
// memory stays that of -b 1024, and the results are byte-identical (the same batches).
TEST(EngineMemoryCli, PeakMemoryFollowsTheTileNotTheBatchSize) {
  const std::string tile = kDir + "/tiles/grid_5.05_6.05";
  fs::remove_all(tile);
  ASSERT_EQ(
      run_cli("synth -o " + tile + " --size 32x32 --s2-steps 20 --s1-steps 6/6 --seed 3").exit_code,
      0);
  for (const std::string engine : {"native", "ort"}) {
    int64_t peak[2] = {0, 0};
    std::string rows[2];
    for (int i = 0; i < 2; ++i) {
      const std::string b = i == 0 ? "1024" : "100000";
      const std::string out = kDir + "/out_mem_" + engine + "_" + b;
      fs::remove_all(out);
      const auto r = run_cli("infer " + tile + " -o " + out + " -m " + v2_model() + " --engine " +
                             engine + " --layout 1x1 -b " + b + " --summary " + out + "/s.json");
      ASSERT_EQ(r.exit_code, 0) << engine << " -b " << b << ": " << r.err;
      std::ifstream summary(out + "/s.json");
      peak[i] = nlohmann::json::parse(summary)["tiles"][0]["peak_rss_anon_bytes"].get<int64_t>();
      rows[i] = slurp(out + "/grid_5.05_6.05.npy") + slurp(out + "/grid_5.05_6.05_scales.npy");
    }
    EXPECT_GT(peak[0], 0) << engine;
    EXPECT_LE(peak[1], peak[0] * 3 / 2)
        << engine << ": -b 100000 peaked at " << peak[1] << " bytes, -b 1024 at " << peak[0];
    EXPECT_FALSE(rows[0].empty()) << engine;
    EXPECT_EQ(rows[0], rows[1]) << engine;
  }
}

// Two tiles, the smaller first: infer reads both tiles' H x W before either runs, so the engine
// built for the first already holds the second's batches and is kept (not built again).
TEST(EngineMemoryCli, TheEngineIsSizedForTheLargestTileBeforeTheFirstRuns) {
  const std::string small = kDir + "/tiles/grid_7.05_8.05", large = kDir + "/tiles/grid_9.05_0.05";
  for (const auto& [tile, size] : {std::pair{small, "4x4"}, std::pair{large, "12x10"}}) {
    fs::remove_all(tile);
    ASSERT_EQ(
        run_cli("synth -o " + tile + " --size " + size + " --s2-steps 12 --s1-steps 4/4").exit_code,
        0);
  }
  const std::string out = kDir + "/out_two_tiles";
  fs::remove_all(out);
  const auto r = run_cli("infer " + small + " " + large + " -o " + out + " -m " +
                         tessera::testing::make_small_model(kDir) +
                         " --engine native --layout 1x1 -b 64 --summary " + out + "/s.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream summary(out + "/s.json");
  const auto tiles = nlohmann::json::parse(summary)["tiles"];
  ASSERT_EQ(tiles.size(), 2u);
  EXPECT_EQ(tiles[0]["engines_built"].get<int>(), 1);
  EXPECT_EQ(tiles[1]["engines_built"].get<int>(), 0);
}

}  // namespace
