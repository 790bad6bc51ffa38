// OrtEngine against real ONNX Runtime: model checks, buffer reuse, and the exact errors users see.

#include "tessera/engine/ort/ort_engine.h"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "tessera/common/error.h"
#include "tessera/engine/dummy_inputs.h"
#include "tessera/model/model_builder.h"
#include "tessera/model/model_family.h"
#include "test_models.h"
#include "test_support.h"

namespace tessera {
namespace {

const std::string kDir = std::string(TESSERA_TEST_TMP) + "/ort_engine_test";

using testing::error_of;

const std::string& small_model() {
  static const std::string path =
      testing::write_test_model(kDir, "small.onnx", testing::tiny_model_config(6, 5));
  return path;
}

TEST(OrtEngine, ReadsShapesFromTheModel) {
  OrtEngineOptions options;
  options.max_batch = 4;
  OrtEngine engine(small_model(), options);
  EXPECT_EQ(engine.shape().s2_steps, 6);
  EXPECT_EQ(engine.shape().s2_features, 11);
  EXPECT_EQ(engine.shape().s1_steps, 5);
  EXPECT_EQ(engine.shape().s1_features, 3);
  EXPECT_EQ(engine.shape().output_dim, 128);
  EXPECT_EQ(engine.name(), "ort-cpu");
}

TEST(OrtEngine, SmallerBatchesReuseTheBuffersAndAgree) {
  OrtEngineOptions options;
  options.max_batch = 5;
  OrtEngine engine(small_model(), options);
  fill_dummy_inputs(engine, 7);
  engine.run(5);
  const std::vector<float> full(engine.output(), engine.output() + 5 * 128);
  for (float v : full) ASSERT_TRUE(std::isfinite(v));
  engine.run(2);  // the first two pixels again, in a smaller batch
  for (int i = 0; i < 2 * 128; ++i) EXPECT_NEAR(engine.output()[i], full[i], 1e-5f) << i;
  engine.run(5);
  for (int i = 0; i < 5 * 128; ++i) EXPECT_EQ(engine.output()[i], full[i]) << i;
}

TEST(OrtEngine, ThreadsDoNotChangeTheResult) {
  OrtEngineOptions one, two;
  one.max_batch = two.max_batch = 3;
  two.intra_op_threads = 2;
  OrtEngine a(small_model(), one), b(small_model(), two);
  fill_dummy_inputs(a, 3);
  fill_dummy_inputs(b, 3);
  a.run(3);
  b.run(3);
  for (int i = 0; i < 3 * 128; ++i) EXPECT_NEAR(a.output()[i], b.output()[i], 1e-5f);
}

TEST(OrtEngine, MissingFile) {
  EXPECT_EQ(error_of([] { OrtEngine(kDir + "/nope.onnx", {}); }),
            kDir + "/nope.onnx: no such file");
}

TEST(OrtEngine, CorruptFile) {
  std::filesystem::create_directories(kDir);
  const std::string path = kDir + "/corrupt.onnx";
  std::ofstream(path) << "this is not protobuf at all";
  const std::string message = error_of([&] { OrtEngine(path, {}); });
  EXPECT_EQ(message.rfind(path + ": not a loadable ONNX model (ONNX Runtime: ", 0), 0u) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos);
}

TEST(OrtEngine, WrongInputNames) {
  // A valid model whose inputs are called a and b: output = a (Identity), b unused.
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.add_opset_import()->set_version(17);
  auto* graph = model.mutable_graph();
  graph->set_name("wrong_names");
  for (const char* name : {"a", "b"}) {
    auto* input = graph->add_input();
    input->set_name(name);
    auto* tensor = input->mutable_type()->mutable_tensor_type();
    tensor->set_elem_type(onnx::TensorProto::FLOAT);
    tensor->mutable_shape()->add_dim()->set_dim_param("batch");
    tensor->mutable_shape()->add_dim()->set_dim_value(128);
  }
  auto* output = graph->add_output();
  output->set_name("output");
  output->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  auto* node = graph->add_node();
  node->set_op_type("Identity");
  node->add_input("a");
  node->add_output("output");
  std::filesystem::create_directories(kDir);
  const std::string path = kDir + "/wrong_names.onnx";
  std::ofstream out(path, std::ios::binary);
  model.SerializeToOstream(&out);
  out.close();
  EXPECT_EQ(error_of([&] { OrtEngine(path, {}); }),
            path + ": expected inputs s2_input and s1_input, found a, b");
}

TEST(OrtEngine, CudaRefusesScatterNDModels) {
  // A graph with the ScatterND form that crashes ORT's CUDA EP: refused before any session.
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.add_opset_import()->set_version(17);
  auto* graph = model.mutable_graph();
  graph->set_name("scatter");
  auto* node = graph->add_node();
  node->set_op_type("ScatterND");
  node->add_input("data");
  node->add_input("indices");
  node->add_input("updates");
  node->add_output("output");
  std::filesystem::create_directories(kDir);
  const std::string path = kDir + "/scatter.onnx";
  std::ofstream out(path, std::ios::binary);
  model.SerializeToOstream(&out);
  out.close();
  OrtEngineOptions options;
  options.device = parse_device("cuda:0");
  EXPECT_EQ(
      error_of([&] { OrtEngine(path, options); }),
      path +
          ": has ScatterND nodes, which crash ONNX Runtime's CUDA execution provider; export the "
          "positional encoding with Concat/Reshape (as `tessera make-model` does) or run on cpu");
}

TEST(OrtEngine, BatchOfZero) {
  OrtEngineOptions options;
  options.max_batch = 0;
  EXPECT_EQ(error_of([&] { OrtEngine(small_model(), options); }),
            "batch size must be at least 1 (got 0)");
}

TEST(OrtEngine, RunOutsideTheBuffer) {
  OrtEngineOptions options;
  options.max_batch = 2;
  OrtEngine engine(small_model(), options);
  EXPECT_EQ(error_of([&] { engine.run(3); }), "batch of 3 pixels is outside 1..2");
}

TEST(OrtEngine, LogLevelFromTheEnvironment) {
  EXPECT_EQ(ort_log_level(nullptr), ORT_LOGGING_LEVEL_FATAL);
  EXPECT_EQ(ort_log_level(""), ORT_LOGGING_LEVEL_FATAL);
  EXPECT_EQ(ort_log_level("error"), ORT_LOGGING_LEVEL_ERROR);
  EXPECT_EQ(ort_log_level("verbose"), ORT_LOGGING_LEVEL_VERBOSE);
  EXPECT_EQ(ort_log_level("warning"), ORT_LOGGING_LEVEL_WARNING);
  EXPECT_EQ(error_of([] { ort_log_level("loud"); }),
            "TESSERA_ORT_LOG: unknown log level 'loud' (expected verbose, info, warning, error or "
            "fatal)");
}

TEST(OrtEngine, MemoryPatternFromTheEnvironment) {
  EXPECT_FALSE(cpu_memory_pattern(nullptr));
  EXPECT_FALSE(cpu_memory_pattern("0"));
  EXPECT_TRUE(cpu_memory_pattern("1"));
  EXPECT_EQ(error_of([] { cpu_memory_pattern("yes"); }),
            "TESSERA_CPU_MEM_PATTERN: expected 0 or 1 (got 'yes')");
}

TEST(OrtEngine, UnknownDevice) {
  EXPECT_EQ(error_of([&] { parse_device("tpu"); }),
            "unknown device 'tpu' (expected cpu or cuda:N[+io|+graph])");
}

TEST(OrtEngine, CudaWithoutTheProviderIsOneClearLine) {
  if (std::filesystem::exists("/dev/nvidia0"))
    GTEST_SKIP() << "a GPU is present: see the GPU tests";
  OrtEngineOptions options;
  options.device = parse_device("cuda:0");
  const std::string message = error_of([&] { OrtEngine(small_model(), options); });
  EXPECT_EQ(message.rfind("cuda:0: the CUDA execution provider is not available (", 0), 0u)
      << message;
  EXPECT_EQ(message.find('\n'), std::string::npos);
}

// A model with symbolic step axes runs at the steps set before each run, exactly as a copy of it
// with those steps fixed; steps outside 1..256, or other than a fixed model's own, are refused.
TEST(OrtEngine, SymbolicStepsRunAtTheStepsSet) {
  ArchConfig arch = default_arch_config(ModelVersion::kV1_1);
  arch.shape.d_model = 16;
  arch.shape.layers = 1;
  arch.shape.heads = 2;
  arch.shape.ffn = 16;
  arch.shape.latent = 4;
  arch.fusion_hidden = 16;
  arch.fusion_width = 8;
  std::filesystem::create_directories(kDir);
  const std::string symbolic = kDir + "/symbolic.onnx", fixed = kDir + "/fixed_13_8.onnx";
  write_model(arch, symbolic);
  write_with_fixed_steps(symbolic, 13, 8, fixed);
  OrtEngineOptions options;
  options.max_batch = 3;
  OrtEngine any_steps(symbolic, options), fixed_steps(fixed, options);
  EXPECT_TRUE(any_steps.shape().symbolic_steps);
  any_steps.set_steps(13, 8);
  EXPECT_EQ(any_steps.s2_pixel_floats(), 13 * 11);
  fill_dummy_inputs(fixed_steps, 5);
  std::copy_n(fixed_steps.s2_input(), 3 * 13 * 11, any_steps.s2_input());
  std::copy_n(fixed_steps.s1_input(), 3 * 8 * 3, any_steps.s1_input());
  fixed_steps.run(3);
  any_steps.run(3);
  for (int i = 0; i < 3 * 4; ++i) EXPECT_EQ(any_steps.output()[i], fixed_steps.output()[i]) << i;
  EXPECT_EQ(error_of([&] { any_steps.set_steps(257, 8); }),
            "ort-cpu: 257 S2 and 8 S1 steps are outside 1..256 and 1..256");
  EXPECT_EQ(error_of([&] { fixed_steps.set_steps(14, 8); }),
            "ort-cpu: the model takes exactly 13 S2 and 8 S1 steps, not 14 and 8");
}

}  // namespace
}  // namespace tessera
