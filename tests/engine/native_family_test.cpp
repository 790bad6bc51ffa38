// NativeEngine on every architecture of the family (v1.0 early, v1.1, v2 with and without QK
// norm) at step counts chosen per run: fp32 against ONNX Runtime on the same file, bf16 and int8
// against native fp32, runs at changing step counts on one engine, and the one-line refusals.

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <dnnl.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "native_comparisons.h"
#include "tessera/engine/dummy_inputs.h"
#include "tessera/engine/native/native_engine.h"
#include "tessera/engine/ort/ort_engine.h"
#include "tessera/model/model_builder.h"
#include "test_support.h"

namespace tessera {
namespace {

using testing::error_of;
using StepPair = std::pair<int64_t, int64_t>;

const std::string kDir = std::string(TESSERA_TEST_TMP) + "/native_family_test";

// Small widths of each architecture (d 32, two layers); the file is written once per process
// (write_model replaces it atomically, so parallel test processes may share it).
std::string family_model(const std::string& name, ArchConfig config) {
  std::filesystem::create_directories(kDir);
  const std::string path = kDir + "/" + name + ".onnx";
  write_model(config, path);
  return path;
}

ArchConfig small_config(ModelVersion arch, uint64_t seed) {
  ArchConfig a = default_arch_config(arch);
  a.shape.d_model = 32;
  a.shape.layers = 2;
  a.shape.heads = 4;
  a.shape.ffn = 48;
  a.shape.seed = seed;
  if (arch == ModelVersion::kV1_1) {
    a.fusion_hidden = 96;
    a.fusion_width = 24;
    a.shape.latent = 16;  // the output keeps the first 16 of the MLP's 24
  }
  return a;
}

const std::vector<std::string>& family_models() {
  static const std::vector<std::string> paths = [] {
    ArchConfig v2 = v2_arch_config(8, 2, 2, 48, false);
    v2.shape.seed = 7;
    ArchConfig v2_qk = v2_arch_config(8, 2, 4, 40, true);
    v2_qk.shape.seed = 8;
    return std::vector<std::string>{
        family_model("v1_0_early", small_config(ModelVersion::kV1_0Early, 5)),
        family_model("v1_1", small_config(ModelVersion::kV1_1, 6)), family_model("v2", v2),
        family_model("v2_qk_norm", v2_qk)};
  }();
  return paths;
}

std::vector<float> outputs_at(Engine& engine, int64_t batch, StepPair steps, uint64_t seed) {
  engine.set_steps(steps.first, steps.second);
  fill_dummy_inputs(engine, seed);
  engine.run(batch);
  return {engine.output(), engine.output() + batch * engine.shape().output_dim};
}

std::unique_ptr<Engine> native_engine(const std::string& model, const std::string& precision,
                                      int64_t max_batch) {
  NativeEngineOptions options;
  options.precision = parse_precision(precision);
  options.max_batch = max_batch;
  return std::make_unique<NativeEngine>(model, options);
}

std::unique_ptr<Engine> ort_engine(const std::string& model, int64_t max_batch) {
  OrtEngineOptions options;
  options.max_batch = max_batch;
  return std::make_unique<OrtEngine>(model, options);
}

using testing::cpu_offers;
using testing::min_cosine;
using testing::relative_error;

const std::vector<StepPair> kStepPairs = {{1, 1}, {1, 8}, {8, 16}, {13, 8}, {256, 40}};

TEST(NativeFamily, ReportsSymbolicStepsAndTheOutputWidth) {
  const auto engine = native_engine(family_models()[1], "fp32", 3);
  EXPECT_TRUE(engine->shape().symbolic_steps);
  EXPECT_EQ(engine->shape().s2_steps, kMaxModelSteps);
  EXPECT_EQ(engine->shape().s1_steps, kMaxModelSteps);
  EXPECT_EQ(engine->shape().output_dim, 16);
  EXPECT_EQ(error_of([&] { engine->set_steps(0, 4); }),
            "native-cpu: 0 S2 and 4 S1 steps are outside 1..256 and 1..256");
}

// Five pixels: at 256 steps the engine goes through in chunks of one pixel (its buffers hold
// max(5 x 64, 256) rows), so chunking is checked against ONNX Runtime's one piece.
TEST(NativeFamily, Fp32AgreesWithOnnxRuntimeAtEveryStepCount) {
  for (const std::string& model : family_models()) {
    const auto native = native_engine(model, "fp32", 5);
    const auto ort = ort_engine(model, 5);
    for (const StepPair& steps : kStepPairs) {
      const std::vector<float> expected = outputs_at(*ort, 5, steps, 3);
      const std::vector<float> got = outputs_at(*native, 5, steps, 3);
      EXPECT_LT(relative_error(got, expected), 1e-4)
          << model << " at " << steps.first << "/" << steps.second;
    }
  }
}

// Cosine of every pixel's output > 0.999 against native fp32, for every model.
void expect_agreement_with_fp32(const std::string& precision) {
  for (const std::string& model : family_models()) {
    const auto fp32 = native_engine(model, "fp32", 6);
    const auto reduced = native_engine(model, precision, 6);
    for (const StepPair& steps : {StepPair{1, 8}, StepPair{13, 8}, StepPair{72, 40}}) {
      const std::vector<float> expected = outputs_at(*fp32, 6, steps, 4);
      const std::vector<float> got = outputs_at(*reduced, 6, steps, 4);
      EXPECT_GT(min_cosine(got, expected, fp32->shape().output_dim), 0.999)
          << precision << " " << model << " at " << steps.first << "/" << steps.second;
    }
  }
}

TEST(NativeFamily, Bf16AgreesWithFp32) {
  if (!cpu_offers(dnnl::cpu_isa::avx512_core_bf16)) GTEST_SKIP() << "no AVX512_BF16";
  expect_agreement_with_fp32("bf16");
}

TEST(NativeFamily, Int8AgreesWithFp32) {
  if (!cpu_offers(dnnl::cpu_isa::avx512_core_vnni)) GTEST_SKIP() << "no AVX512_VNNI";
  expect_agreement_with_fp32("int8");
}

// One engine runs at changing step counts (one primitive set per shape, kept) and gives what a
// fresh engine gives at each.
TEST(NativeFamily, RunsAtChangingStepCountsOnOneEngine) {
  const std::vector<StepPair> sequence = {{8, 16}, {256, 40}, {1, 1}, {13, 8}, {8, 16}};
  for (const std::string& model : {family_models()[0], family_models()[3]}) {
    const auto shared = native_engine(model, "fp32", 4);
    for (const StepPair& steps : sequence) {
      const auto fresh = native_engine(model, "fp32", 4);
      EXPECT_EQ(outputs_at(*shared, 3, steps, 9), outputs_at(*fresh, 3, steps, 9))
          << model << " at " << steps.first << "/" << steps.second;
    }
  }
}

// Past 128 run shapes an engine drops its primitives and makes them again as runs need them:
// the results stay those of a fresh engine, before and after the drop.
TEST(NativeFamily, ManyRunShapesKeepTheResultsOfAFreshEngine) {
  const std::string& model = family_models()[2];  // v2: the cheapest
  const auto shared = native_engine(model, "fp32", 3);
  const auto fresh = native_engine(model, "fp32", 3);
  const std::vector<float> before = outputs_at(*shared, 2, {9, 4}, 5);
  for (int64_t s2 = 1; s2 <= 45; ++s2) {
    for (int64_t batch = 1; batch <= 3; ++batch) outputs_at(*shared, batch, {s2, 1}, 3);
  }
  EXPECT_EQ(before, outputs_at(*fresh, 2, {9, 4}, 5));
  EXPECT_EQ(outputs_at(*shared, 2, {9, 4}, 5), outputs_at(*fresh, 2, {9, 4}, 5));
  EXPECT_EQ(outputs_at(*shared, 3, {40, 2}, 6), outputs_at(*fresh, 3, {40, 2}, 6));
}

// `model` with `edit` applied to its protobuf, written to a directory of this process.
std::string edited_model(const std::string& model, const std::string& dir,
                         const std::function<void(onnx::ModelProto&)>& edit) {
  onnx::ModelProto proto;
  std::ifstream in(model, std::ios::binary);
  EXPECT_TRUE(proto.ParseFromIstream(&in));
  edit(proto);
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/edited.onnx";
  std::ofstream out(path, std::ios::binary);
  proto.SerializeToOstream(&out);
  return path;
}

TEST(NativeFamily, NamesAMissingQkNormGain) {
  testing::ProcessTestDir dir("native_family_missing");
  const std::string path = edited_model(family_models()[3], dir.path(), [](onnx::ModelProto& m) {
    auto* tensors = m.mutable_graph()->mutable_initializer();
    for (int i = 0; i < tensors->size(); ++i) {
      if (tensors->Get(i).name() == "s1.layers.1.attn.k_norm.weight") tensors->DeleteSubrange(i, 1);
    }
  });
  EXPECT_EQ(error_of([&] { NativeEngine(path, NativeEngineOptions{}); }),
            path +
                ": initializer 's1.layers.1.attn.k_norm.weight' is missing (not a Tessera v2 "
                "model?)");
}

TEST(NativeFamily, NamesAnUnknownPooling) {
  testing::ProcessTestDir dir("native_family_pooling");
  const std::string path = edited_model(family_models()[2], dir.path(), [](onnx::ModelProto& m) {
    for (auto& entry : *m.mutable_metadata_props())
      if (entry.key() == "tessera.pooling") entry.set_value("lstm");
  });
  EXPECT_EQ(error_of([&] { NativeEngine(path, NativeEngineOptions{}); }),
            path + ": metadata tessera.pooling = 'lstm' is not one of custom_gru, gru, attention");
}

}  // namespace
}  // namespace tessera
