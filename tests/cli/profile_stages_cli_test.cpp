// `bench --profile-stages` and `infer --profile-stages` as a user runs them: the stage tables'
// exact headers, the summary's "stages" (each computed tile's and the job's), what an engine
// that does not measure stages reports (its total), and the one-line refusals.

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "run_cli.h"
#include "test_support.h"

namespace {

using tessera::testing::run_cli;
using tessera::testing::slurp;

const tessera::testing::ProcessTestDir kTestDir("profile_stages_cli");
const std::string& kDir = kTestDir.path();

// v1.0's fixed 8 + 6 steps, d 32: a GRU model for bench.
const std::string& gru_model() {
  static const std::string path = [] {
    std::filesystem::create_directories(kDir);
    const std::string p = kDir + "/gru.onnx";
    const auto r = run_cli("make-model --force -o " + p +
                           " --d-model 32 --layers 1 --heads 2 --ffn 64 --s2-steps 8 --s1-steps 6");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return p;
  }();
  return path;
}

const std::string kEngineStages[] = {
    "primitive_creation", "input_features",        "gemm_embedding", "gemm_qkv_out",   "gemm_ffn",
    "gemm_gru_input",     "gemm_gru_recurrent",    "gemm_fusion",    "attention_core", "softmax",
    "normalization",      "activation_conversion", "gru_gates",      "pooling"};

double engine_stages_ms(const nlohmann::json& stages) {
  double sum = 0;
  for (const std::string& name : kEngineStages) sum += stages.at(name).at("ms").get<double>();
  return sum;
}

TEST(ProfileStagesCli, BenchPrintsOneStageTablePerRowAndOrtOnlyItsTotal) {
  const std::string bench = "bench -m " + gru_model() +
                            " --engine ort,native -t 1 -b 4 --batches 2 -r 1 --warmup 1 -q "
                            "--profile-stages";
  auto r = run_cli(bench + " --peak-gops 100");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const std::string row :
       {"1 (cpu ort fp32 single:1 b=4, 2 runs)", "2 (cpu native fp32 single:1 b=4, 2 runs)"}) {
    const size_t at = r.out.find("\nStages of row " + row + ":\n| stage ");
    ASSERT_NE(at, std::string::npos) << row << "\n" << r.out;
    const std::string header = r.out.substr(r.out.find("| stage", at));
    EXPECT_NE(header.substr(0, header.find('\n')).find(" | share % | GFLOP/s | % of peak |"),
              std::string::npos)
        << header;
  }
  const std::string native = r.out.substr(r.out.find("Stages of row 2"));
  for (const char* stage : {"| gemm_qkv_out ", "| gemm_gru_recurrent ", "| softmax ",
                            "| gru_gates ", "| engine_other ", "| total "})
    EXPECT_NE(native.find(stage), std::string::npos) << stage << "\n" << native;
  // The warm-up created the shape's primitives: the timed batches create none.
  EXPECT_EQ(native.find("primitive_creation"), std::string::npos) << native;
  const std::string ort = r.out.substr(
      r.out.find("Stages of row 1"), r.out.find("Stages of row 2") - r.out.find("Stages of row 1"));
  EXPECT_EQ(ort.find("gemm_"), std::string::npos) << ort;
  EXPECT_NE(ort.find("| engine_other "), std::string::npos) << ort;

  r = run_cli(bench + " --format json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json rows = nlohmann::json::parse(r.out)["rows"];
  ASSERT_EQ(rows.size(), 2u);
  const nlohmann::json &ort_stages = rows[0]["stages"], &native_stages = rows[1]["stages"];
  EXPECT_EQ(engine_stages_ms(ort_stages), 0);
  EXPECT_GT(ort_stages["engine_ms"].get<double>(), 0);
  EXPECT_EQ(native_stages["engine_runs"], 2);
  EXPECT_GT(native_stages["gemm_ffn"]["gops"].get<double>(), 0);
  EXPECT_GT(native_stages["gemm_gru_recurrent"]["ms"].get<double>(), 0);
  EXPECT_LE(engine_stages_ms(native_stages), native_stages["engine_ms"].get<double>());
}

TEST(ProfileStagesCli, BenchRefusals) {
  const std::string bench = "bench -m " + gru_model() + " --engine native -b 4 --batches 1 -r 1 ";
  auto r = run_cli(bench + "--peak-gops 100");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: --peak-gops needs --profile-stages\n");
  r = run_cli(bench + "--profile-stages --spawn process");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "tessera: --profile-stages needs --spawn thread (it adds up the workers' engines)\n");
}

TEST(ProfileStagesCli, InferSummaryHasEveryTilesStagesAndTheJobs) {
  const std::string tile = kDir + "/grid_3.05_4.15";
  ASSERT_EQ(run_cli("synth --force -o " + tile + " --size 12x10 --observations varied").exit_code,
            0);
  const std::string model = kDir + "/v2.onnx";
  ASSERT_EQ(
      run_cli("make-model --force --arch v2 --latent 4 --layers 1 --heads 2 --ffn 16 -o " + model)
          .exit_code,
      0);
  const std::string infer = "infer " + tile + " -m " + model +
                            " -b 16 --layout single:1 --force --profile-stages --summary ";
  for (const std::string engine : {"native", "ort"}) {
    const std::string summary = kDir + "/" + engine + ".json";
    const auto r = run_cli(infer + summary + " -o " + kDir + "/" + engine + " --engine " + engine);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const nlohmann::json s = nlohmann::json::parse(slurp(summary));
    const nlohmann::json& tile_stages = s["tiles"][0]["stages"];
    // One tile: the job's stages are the tile's (to the rounding of the milliseconds).
    for (const auto& [key, value] : tile_stages.items()) {
      const nlohmann::json& job = s["stages"][key];
      if (value.is_object()) {
        EXPECT_NEAR(job["ms"].get<double>(), value["ms"].get<double>(), 1e-5) << key;
      } else {
        EXPECT_NEAR(job.get<double>(), value.get<double>(), 1e-5) << key;
      }
    }
    EXPECT_EQ(tile_stages["engine_runs"], s["tiles"][0]["batches"]);
    for (const char* stage :
         {"tile_scan", "input_preparation", "embedding_quantisation", "writing"})
      EXPECT_GT(tile_stages[stage]["ms"].get<double>(), 0) << engine << " " << stage;
    const double engine_ms = tile_stages["engine_ms"].get<double>();
    EXPECT_GT(engine_ms, 0);
    EXPECT_LE(engine_stages_ms(tile_stages), engine_ms);
    EXPECT_LE(engine_ms, 1e3 * s["tiles"][0]["seconds"].get<double>());
    EXPECT_EQ(tile_stages["gemm_gru_recurrent"]["ms"], 0.0) << "v2 has no GRU";
    if (engine == "native") {
      EXPECT_GT(tile_stages["gemm_ffn"]["ms"].get<double>(), 0);
      EXPECT_GE(tile_stages["run_shapes"].get<int>(), 1);
    } else {
      EXPECT_EQ(engine_stages_ms(tile_stages), 0) << "ORT reports only its total";
    }
  }
  const auto r =
      run_cli("infer " + tile + " -m " + model + " -o " + kDir + "/none --profile-stages");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: --profile-stages needs --summary (the stages are written there)\n");
  EXPECT_FALSE(std::filesystem::exists(kDir + "/none"));
}

}  // namespace
