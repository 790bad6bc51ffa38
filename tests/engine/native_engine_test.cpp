// NativeEngine against ONNX Runtime on the same file (fp32), against its own fp32 results
// (bf16, int8), across batch sizes, and the exact one-line errors users see.

#include "tessera/engine/native/native_engine.h"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <cstdlib>
#include <dnnl.hpp>
#include <fstream>
#include <vector>

#include "native_comparisons.h"
#include "tessera/common/error.h"
#include "tessera/engine/dummy_inputs.h"
#include "tessera/engine/ort/ort_engine.h"
#include "test_models.h"
#include "test_support.h"

namespace tessera {
namespace {

using testing::error_of;

const std::string kDir = std::string(TESSERA_TEST_TMP) + "/native_engine_test";

// d 32, 2 heads, 1 layer (tests/test_models.h).
const std::string& tiny_model() {
  static const std::string path =
      testing::write_test_model(kDir, "tiny.onnx", testing::tiny_model_config(12, 9));
  return path;
}

// d 64, 4 heads, 2 layers, other step counts: shapes the tiny model does not exercise.
const std::string& small_model() {
  static const std::string path = [] {
    ModelConfig config = testing::tiny_model_config(7, 10);
    config.d_model = 64;
    config.heads = 4;
    config.layers = 2;
    config.ffn = 96;
    config.seed = 11;
    return testing::write_test_model(kDir, "small.onnx", config);
  }();
  return path;
}

std::vector<float> outputs_of(Engine& engine, int64_t batch, uint64_t seed) {
  fill_dummy_inputs(engine, seed);
  engine.run(batch);
  return {engine.output(), engine.output() + batch * engine.shape().output_dim};
}

std::vector<float> native_outputs(const std::string& model, const std::string& precision,
                                  int64_t batch, uint64_t seed) {
  NativeEngineOptions options;
  options.precision = parse_precision(precision);
  options.max_batch = batch;
  NativeEngine engine(model, options);
  return outputs_of(engine, batch, seed);
}

std::vector<float> ort_outputs(const std::string& model, int64_t batch, uint64_t seed) {
  OrtEngineOptions options;
  options.max_batch = batch;
  OrtEngine engine(model, options);
  return outputs_of(engine, batch, seed);
}

using testing::cpu_offers;
using testing::min_cosine;
using testing::relative_error;

TEST(NativeEngine, ReadsShapesFromTheModel) {
  NativeEngineOptions options;
  options.max_batch = 2;
  NativeEngine engine(tiny_model(), options);
  EXPECT_EQ(engine.shape().s2_steps, 12);
  EXPECT_EQ(engine.shape().s2_features, 11);
  EXPECT_EQ(engine.shape().s1_steps, 9);
  EXPECT_EQ(engine.shape().s1_features, 3);
  EXPECT_EQ(engine.shape().output_dim, 128);
  EXPECT_EQ(engine.max_batch(), 2);
  EXPECT_EQ(engine.name(), "native-cpu");
}

TEST(NativeEngine, Fp32AgreesWithOnnxRuntime) {
  for (const std::string* model : {&tiny_model(), &small_model()}) {
    const std::vector<float> native = native_outputs(*model, "fp32", 9, 3);
    const std::vector<float> ort = ort_outputs(*model, 9, 3);
    EXPECT_LT(relative_error(native, ort), 1e-4) << *model;
  }
}

TEST(NativeEngine, Bf16AgreesWithFp32) {
  if (!cpu_offers(dnnl::cpu_isa::avx512_core_bf16)) GTEST_SKIP() << "no AVX512_BF16";
  for (const std::string* model : {&tiny_model(), &small_model()}) {
    const std::vector<float> fp32 = native_outputs(*model, "fp32", 16, 5);
    const std::vector<float> bf16 = native_outputs(*model, "bf16", 16, 5);
    EXPECT_GT(min_cosine(bf16, fp32, 128), 0.999) << *model;
  }
}

TEST(NativeEngine, Int8AgreesWithFp32) {
  if (!cpu_offers(dnnl::cpu_isa::avx512_core_vnni)) GTEST_SKIP() << "no AVX512_VNNI";
  for (const std::string* model : {&tiny_model(), &small_model()}) {
    const std::vector<float> fp32 = native_outputs(*model, "fp32", 16, 5);
    const std::vector<float> int8 = native_outputs(*model, "int8", 16, 5);
    EXPECT_GT(min_cosine(int8, fp32, 128), 0.995) << *model;
  }
}

TEST(NativeEngine, TailBatchesAgreeWithFullBatches) {
  for (const std::string precision : {"fp32", "bf16", "int8"}) {
    if (precision == "bf16" && !cpu_offers(dnnl::cpu_isa::avx512_core_bf16)) continue;
    if (precision == "int8" && !cpu_offers(dnnl::cpu_isa::avx512_core_vnni)) continue;
    NativeEngineOptions options;
    options.precision = parse_precision(precision);
    options.max_batch = 8;
    NativeEngine engine(small_model(), options);
    const std::vector<float> full = outputs_of(engine, 8, 21);
    engine.run(3);  // the first three pixels again, in a batch of their own
    for (int i = 0; i < 3 * 128; ++i) {
      EXPECT_NEAR(engine.output()[i], full[i], 1e-5f * (1.0f + std::fabs(full[i])))
          << precision << " " << i;
    }
    engine.run(8);
    for (int i = 0; i < 8 * 128; ++i) EXPECT_EQ(engine.output()[i], full[i]) << precision << i;
  }
}

TEST(NativeEngine, ThreadsDoNotChangeTheResultMuch) {
  NativeEngineOptions two;
  two.threads = 2;
  two.max_batch = 5;
  NativeEngine engine(small_model(), two);
  const std::vector<float> threaded = outputs_of(engine, 5, 9);
  EXPECT_LT(relative_error(threaded, native_outputs(small_model(), "fp32", 5, 9)), 1e-5);
}

TEST(NativeEngine, InterruptedRunsThrowUntilAllowed) {
  NativeEngineOptions options;
  options.max_batch = 2;
  NativeEngine engine(tiny_model(), options);
  fill_dummy_inputs(engine, 1);
  engine.interrupt();
  EXPECT_EQ(error_of([&] { engine.run(2); }), "native engine: run interrupted");
  engine.allow_runs();
  engine.run(2);
  EXPECT_EQ(error_of([&] { engine.run(3); }), "native engine: batch 3 is outside 1..2");
}

// The tiny model with `edit` applied to its protobuf, written to a directory of this process.
std::string edited_model(const std::string& dir,
                         const std::function<void(onnx::ModelProto&)>& edit) {
  onnx::ModelProto model;
  std::ifstream in(tiny_model(), std::ios::binary);
  EXPECT_TRUE(model.ParseFromIstream(&in));
  edit(model);
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/edited.onnx";
  std::ofstream out(path, std::ios::binary);
  model.SerializeToOstream(&out);
  return path;
}

onnx::TensorProto* initializer(onnx::ModelProto& model, const std::string& name) {
  for (auto& tensor : *model.mutable_graph()->mutable_initializer())
    if (tensor.name() == name) return &tensor;
  return nullptr;
}

TEST(NativeEngine, NamesAMissingInitializer) {
  testing::ProcessTestDir dir("native_missing");
  const std::string path = edited_model(dir.path(), [](onnx::ModelProto& model) {
    auto* tensors = model.mutable_graph()->mutable_initializer();
    for (int i = 0; i < tensors->size(); ++i) {
      if (tensors->Get(i).name() == "s1.pool.gru.W_hz") tensors->DeleteSubrange(i, 1);
    }
  });
  EXPECT_EQ(error_of([&] { NativeEngine(path, NativeEngineOptions{}); }),
            path + ": initializer 's1.pool.gru.W_hz' is missing (not a Tessera v1.0 model?)");
}

TEST(NativeEngine, NamesAMisShapedInitializer) {
  testing::ProcessTestDir dir("native_misshaped");
  const std::string path = edited_model(dir.path(), [](onnx::ModelProto& model) {
    onnx::TensorProto* w = initializer(model, "s2.layers.0.ffn.linear1.weight");
    w->set_dims(1, 48);
    w->mutable_raw_data()->resize(32 * 48 * sizeof(float));
  });
  EXPECT_EQ(error_of([&] { NativeEngine(path, NativeEngineOptions{}); }),
            path +
                ": initializer 's2.layers.0.ffn.linear1.weight' has shape [32, 48], expected "
                "[32, 64]");
}

TEST(NativeEngine, ReadsFloatDataAndFindsHeadsWithoutMetadata) {
  testing::ProcessTestDir dir("native_float_data");
  const std::string path = edited_model(dir.path(), [](onnx::ModelProto& model) {
    model.clear_metadata_props();  // heads from the attention Reshape
    for (auto& tensor : *model.mutable_graph()->mutable_initializer()) {
      std::vector<float> values(tensor.raw_data().size() / sizeof(float));
      std::memcpy(values.data(), tensor.raw_data().data(), tensor.raw_data().size());
      tensor.clear_raw_data();
      for (const float v : values) tensor.add_float_data(v);
    }
  });
  NativeEngineOptions options;
  options.max_batch = 4;
  NativeEngine engine(path, options);
  EXPECT_EQ(outputs_of(engine, 4, 2), native_outputs(tiny_model(), "fp32", 4, 2));
}

// Metadata is not what ONNX Runtime runs: a head count edited in the metadata (4, which still
// divides d_model 32) against the graph's 2 is refused rather than computed with.
TEST(NativeEngine, RefusesAHeadCountInMetadataThatTheGraphDoesNotHave) {
  testing::ProcessTestDir dir("native_heads");
  const std::string path = edited_model(dir.path(), [](onnx::ModelProto& model) {
    for (auto& entry : *model.mutable_metadata_props())
      if (entry.key() == "tessera.heads") entry.set_value("4");
  });
  EXPECT_EQ(error_of([&] { NativeEngine(path, NativeEngineOptions{}); }),
            path +
                ": metadata tessera.heads = 4 disagrees with the graph, whose attention has 2 "
                "heads");
}

// A max_batch far beyond what a run needs: the activation buffers stop at the budget (whole
// pixels of the fixed 12 steps), the rest is inputs, outputs and pooled rows of max_batch.
TEST(NativeEngine, ActivationMemoryStopsAtTheBudgetWhateverTheBatch) {
  const int64_t per_pixel_bytes = (12 * 11 + 9 * 3 + 128 + 2 * 32) * 4;  // in, out, pooled
  NativeEngineOptions options;
  options.max_batch = 8;
  NativeEngine small(tiny_model(), options);
  EXPECT_EQ(small.activation_rows(), 8 * 12);
  const std::vector<float> expected = outputs_of(small, 8, 5);
  int64_t budget_rows = 0;
  for (const int64_t batch : {100'000, 200'000}) {
    options.max_batch = batch;
    NativeEngine large(tiny_model(), options);
    EXPECT_LT(large.activation_rows(), batch * 12);
    EXPECT_EQ(large.activation_rows() % 12, 0);
    if (budget_rows > 0) {
      EXPECT_EQ(large.activation_rows(), budget_rows);  // both at the budget
    }
    budget_rows = large.activation_rows();
    EXPECT_LT(large.buffer_bytes(), batch * per_pixel_bytes + kActivationBudgetBytes);
    // A batch in chunks of the budget computes what one piece computes.
    std::vector<float> out(8 * 128);
    large.run_from(small.s2_input(), small.s1_input(), 8, out.data());
    EXPECT_LT(relative_error(out, expected), 1e-5);
  }
}

// A max_batch whose buffers cannot fit in this machine's memory is one line before anything is
// allocated.
TEST(NativeEngine, RefusesABatchWhoseBuffersCannotFit) {
  NativeEngineOptions options;
  options.max_batch = int64_t{1} << 36;
  const std::string error = error_of([&] { NativeEngine(tiny_model(), options); });
  const std::string start = tiny_model() + ": batches of 68719476736 pixels need about ";
  EXPECT_EQ(error.substr(0, start.size()), start) << error;
  EXPECT_NE(error.find(" GiB of native engine buffers, more than the "), std::string::npos);
  EXPECT_TRUE(error.ends_with(" GiB of memory available (use a smaller -b)")) << error;
}

TEST(NativeEngine, RejectsAnUnknownPrecision) {
  NativeEngineOptions options;
  options.precision = Precision::fp16;
  EXPECT_EQ(error_of([&] { NativeEngine(tiny_model(), options); }),
            "the native engine computes fp32, bf16 or int8, not fp16");
}

// Run by the ctest entry engine.native_isa_avx512_core with ONEDNN_MAX_CPU_ISA=AVX512_CORE
// (tests/engine/tests.cmake): oneDNN then behaves as on a CPU without VNNI or BF16.
TEST(NativeEngineIsa, RefusesBf16AndInt8WithoutTheirInstructions) {
  const char* limit = std::getenv("ONEDNN_MAX_CPU_ISA");
  if (!limit || std::string(limit) != "AVX512_CORE") GTEST_SKIP() << "needs ONEDNN_MAX_CPU_ISA";
  NativeEngineOptions options;
  options.precision = Precision::bf16;
  EXPECT_EQ(error_of([&] { NativeEngine(tiny_model(), options); }),
            "--precision bf16 needs a CPU with AVX512_BF16 or AMX (this one offers avx512_core)");
  options.precision = Precision::int8;
  EXPECT_EQ(error_of([&] { NativeEngine(tiny_model(), options); }),
            "--precision int8 needs a CPU with AVX512_VNNI or AMX (this one offers avx512_core)");
  options.precision = Precision::fp32;
  options.max_batch = 3;
  NativeEngine fp32(tiny_model(), options);
  EXPECT_LT(relative_error(outputs_of(fp32, 3, 4), ort_outputs(tiny_model(), 3, 4)), 1e-4);
}

}  // namespace
}  // namespace tessera
