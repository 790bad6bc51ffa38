// The native engine's stage profile: every stage the model has is measured and no other, the
// GEMM stages count exactly the matmul operations the architecture does, the stages add up to
// the runs' time, primitive creation happens once per run shape, measuring changes no output,
// and the table and JSON say what was measured.

#include "tessera/engine/stage_profile.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tessera/engine/dummy_inputs.h"
#include "tessera/engine/native/native_engine.h"
#include "tessera/model/model_builder.h"

namespace tessera {
namespace {

const std::string kDir = std::string(TESSERA_TEST_TMP) + "/stage_profile_test";

// d 32, two layers, FFN 48: small widths of v1.1 (custom GRU pooling) and v2 (attention
// pooling, no GRU). write_model replaces the file atomically, so test processes may share it.
struct SmallModel {
  std::string path;
  ArchConfig config;
};

SmallModel small_model(ModelVersion version) {
  ArchConfig a = version == ModelVersion::kV2 ? v2_arch_config(8, 2, 2, 48, false)
                                              : default_arch_config(version);
  a.shape.d_model = 32;
  a.shape.layers = 2;
  a.shape.heads = 2;
  a.shape.ffn = 48;
  a.shape.seed = 5;
  if (version == ModelVersion::kV1_1) {
    a.fusion_hidden = 96;
    a.fusion_width = 24;
    a.shape.latent = 16;
  }
  std::filesystem::create_directories(kDir);
  const std::string path = kDir + "/" + version_name(version) + ".onnx";
  write_model(a, path);
  return {path, a};
}

double stage_ops(const StageProfile& p, Stage s) {
  return p.operations[static_cast<size_t>(s)];
}

// Runs `batch` pixels at (s2, s1) steps with a profile attached; returns the outputs.
std::vector<float> profiled_run(NativeEngine& engine, StageProfile* profile, int64_t batch,
                                int64_t s2, int64_t s1) {
  engine.set_steps(s2, s1);
  fill_dummy_inputs(engine, 3);
  EXPECT_TRUE(engine.set_stage_profile(profile));
  engine.run(batch);
  engine.set_stage_profile(nullptr);
  return {engine.output(), engine.output() + batch * engine.shape().output_dim};
}

TEST(StageProfile, GruModelMeasuresEveryStageItHasAndCountsItsMatmulsExactly) {
  const SmallModel model = small_model(ModelVersion::kV1_1);
  NativeEngine engine(model.path, {Precision::fp32, 1, 16});
  StageProfile profile;
  const int64_t batch = 12, s2 = 16, s1 = 8;
  profiled_run(engine, &profile, batch, s2, s1);

  for (size_t i = 0; i < StageProfile::kStages; ++i) {
    const auto stage = static_cast<Stage>(i);
    // fp32 converts nothing; the stages outside the engine are the runtime's.
    const bool expected = is_engine_stage(stage) && stage != Stage::kActivationConversion;
    EXPECT_EQ(profile.ns[i] > 0, expected) << stage_name(stage);
  }
  // 2 * rows * in * out per matmul, both branches, both layers (d 32, FFN 48).
  const double d = 32, ffn = 48, rows = batch * (s2 + s1);
  EXPECT_DOUBLE_EQ(stage_ops(profile, Stage::kGemmFfn), 2 * 2 * rows * (d * ffn + ffn * d));
  EXPECT_DOUBLE_EQ(stage_ops(profile, Stage::kGemmQkvOut), 2 * 2 * rows * (d * 3 * d + d * d));
  EXPECT_DOUBLE_EQ(stage_ops(profile, Stage::kGemmGruInput), 2 * rows * d * 3 * d);
  // Two recurrent matmuls ([d, 2d] and [d, d]) per step after the first.
  EXPECT_DOUBLE_EQ(stage_ops(profile, Stage::kGemmGruRecurrent),
                   2 * batch * (s2 - 1 + s1 - 1) * (d * 2 * d + d * d));
  // q kᵀ and p v: 2 * steps² * d each, per sequence and layer.
  EXPECT_DOUBLE_EQ(stage_ops(profile, Stage::kAttentionCore),
                   2 * 2 * 2 * batch * (s2 * s2 + s1 * s1) * d);
  EXPECT_EQ(stage_ops(profile, Stage::kSoftmax), 0);

  // Stages never overlap and cover the run but for loop overhead.
  EXPECT_EQ(profile.runs, 1);
  EXPECT_EQ(profile.shapes, 1);
  EXPECT_LE(engine_stages_ns(profile), profile.engine_ns);
  EXPECT_GT(static_cast<double>(engine_stages_ns(profile)), 0.8 * profile.engine_ns);
}

TEST(StageProfile, ModelWithoutGruHasNoGruStagesAndInt8ConvertsActivations) {
  const SmallModel model = small_model(ModelVersion::kV2);
  NativeEngine engine(model.path, {Precision::int8, 1, 16});
  StageProfile profile;
  profiled_run(engine, &profile, 10, 24, 8);
  for (const Stage s : {Stage::kGemmGruInput, Stage::kGemmGruRecurrent, Stage::kGruGates})
    EXPECT_EQ(profile.stage_ns(s), 0) << stage_name(s);
  for (const Stage s : {Stage::kGemmQkvOut, Stage::kGemmFfn, Stage::kAttentionCore,
                        Stage::kActivationConversion, Stage::kPooling, Stage::kPrimitiveCreation})
    EXPECT_GT(profile.stage_ns(s), 0) << stage_name(s);
}

TEST(StageProfile, PrimitivesAreCreatedOncePerRunShapeAndMeasuringChangesNoOutput) {
  const SmallModel model = small_model(ModelVersion::kV1_1);
  NativeEngine engine(model.path, {Precision::bf16, 1, 16});
  StageProfile profile;
  const std::vector<float> first = profiled_run(engine, &profile, 9, 16, 8);
  const int64_t creation = profile.stage_ns(Stage::kPrimitiveCreation);
  EXPECT_EQ(profiled_run(engine, &profile, 9, 16, 8), first);
  EXPECT_EQ(profile.stage_ns(Stage::kPrimitiveCreation), creation) << "a known shape again";
  EXPECT_EQ(profile.shapes, 1);
  profiled_run(engine, &profile, 9, 24, 8);
  EXPECT_EQ(profile.shapes, 2);
  EXPECT_EQ(profile.runs, 3);

  // Detached: nothing is added; the outputs are those of a profiled run.
  const StageProfile before = profile;
  engine.set_steps(16, 8);
  fill_dummy_inputs(engine, 3);
  engine.run(9);
  EXPECT_EQ(std::vector<float>(engine.output(), engine.output() + 9 * 16), first);
  EXPECT_EQ(profile.ns, before.ns);
  EXPECT_EQ(profile.engine_ns, before.engine_ns);
}

TEST(StageProfile, TableAndJsonSayWhatWasMeasured) {
  StageProfile p;
  p.add(Stage::kGemmFfn, 2'000'000, 4e6);  // 2 ms, 4 MFLOP: 2 GFLOP/s
  p.add(Stage::kSoftmax, 1'000'000);
  p.add(Stage::kWriting, 1'000'000);
  p.engine_ns = 4'000'000;  // 1 ms in the engine that no stage measured
  p.runs = 2;
  p.shapes = 1;
  const std::string table = stage_table(p, 4.0).to_markdown();
  EXPECT_EQ(table.substr(0, table.find('\n')),
            "| stage        | ms  | share % | GFLOP/s | % of peak |");
  for (const char* row : {"| gemm_ffn ", "| softmax ", "| writing ", "| engine_other ", "| total "})
    EXPECT_NE(table.find(row), std::string::npos) << row << "\n" << table;
  const nlohmann::json rows = stage_table(p, 4.0).to_json();
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0]["stage"], "gemm_ffn");
  EXPECT_DOUBLE_EQ(rows[0]["gops"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(rows[0]["of_peak"].get<double>(), 50.0);
  EXPECT_DOUBLE_EQ(rows[0]["share"].get<double>(), 40.0);  // of 4 ms engine + 1 ms writing
  EXPECT_DOUBLE_EQ(rows[3]["ms"].get<double>(), 1.0);      // engine_other
  EXPECT_DOUBLE_EQ(rows[4]["ms"].get<double>(), 5.0);      // total
  const std::string plain = stage_table(p, 0).to_markdown();
  EXPECT_EQ(plain.substr(0, plain.find('\n')), "| stage        | ms  | share % | GFLOP/s |");

  const nlohmann::json json = stage_json(p);
  EXPECT_EQ(json.size(), StageProfile::kStages + 4);
  EXPECT_DOUBLE_EQ(json["gemm_ffn"]["gops"].get<double>(), 2.0);
  EXPECT_TRUE(json["gemm_qkv_out"]["gops"].is_null());
  EXPECT_FALSE(json["softmax"].contains("gops"));
  EXPECT_EQ(json["run_shapes"], 1);
  const StageProfile back = stage_profile_from_json(json);
  EXPECT_EQ(back.ns, p.ns);
  EXPECT_EQ(back.operations, p.operations);
  EXPECT_EQ(back.engine_ns, p.engine_ns);
  EXPECT_EQ(back.runs, p.runs);
}

}  // namespace
}  // namespace tessera
