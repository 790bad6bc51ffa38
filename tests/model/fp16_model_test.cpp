// The float16 converter: the structure it promises (float32 edges, the day-of-year encoding in
// float32, float16 weights) and what ONNX Runtime's CPU provider computes from the result
// against the float32 model. ORT's CPU provider runs float16 nodes it has no kernel for through
// Casts of its own, so the converted graph is checked for validity and meaning here; its speed
// is a GPU matter (docs/GPU.md).

#include "tessera/model/fp16_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "tessera/common/error.h"
#include "tessera/model/dummy_inputs.h"
#include "tessera/model/ort_engine.h"
#include "test_models.h"
#include "test_support.h"

namespace tessera {
namespace {

const testing::ProcessTestDir kTestDir("fp16_model_test");
const std::string& kDir = kTestDir.path();

using testing::error_of;

const std::string& small_model() {
  static const std::string path =
      testing::write_test_model(kDir, "small.onnx", testing::tiny_model_config(6, 5));
  return path;
}

onnx::ModelProto read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  onnx::ModelProto model;
  EXPECT_TRUE(model.ParseFromIstream(&in)) << path;
  return model;
}

std::string write(const onnx::ModelProto& model, const std::string& name) {
  const std::string path = kDir + "/" + name;
  std::ofstream out(path, std::ios::binary);
  model.SerializeToOstream(&out);
  return path;
}

// The data type of every initializer and Constant value, by name.
std::map<std::string, int> tensor_types(const onnx::GraphProto& graph) {
  std::map<std::string, int> types;
  for (const auto& t : graph.initializer()) types[t.name()] = t.data_type();
  for (const auto& node : graph.node()) {
    if (node.op_type() != "Constant") continue;
    for (const auto& a : node.attribute()) {
      if (a.name() == "value") types[node.output(0)] = a.t().data_type();
    }
  }
  return types;
}

TEST(Fp16Model, KeepsFloat32EdgesAndTheDayOfYearEncoding) {
  onnx::ModelProto model = read(small_model());
  convert_to_fp16(model, "small.onnx");
  const onnx::GraphProto& graph = model.graph();
  for (const auto& io : graph.input())
    EXPECT_EQ(io.type().tensor_type().elem_type(), onnx::TensorProto::FLOAT) << io.name();
  ASSERT_EQ(graph.output_size(), 1);
  EXPECT_EQ(graph.output(0).type().tensor_type().elem_type(), onnx::TensorProto::FLOAT);
  // The last node casts the float16 result back to float32 under the output's name.
  const onnx::NodeProto& last = graph.node(graph.node_size() - 1);
  EXPECT_EQ(last.op_type(), "Cast");
  EXPECT_EQ(last.output(0), "output");
  EXPECT_EQ(last.attribute(0).i(), onnx::TensorProto::FLOAT);

  const std::map<std::string, int> types = tensor_types(graph);
  std::map<std::string, const onnx::NodeProto*> producer;
  for (const auto& node : graph.node()) {
    for (const auto& output : node.output()) producer[output] = &node;
  }
  int matmul_weights = 0, trig = 0;
  for (const auto& node : graph.node()) {
    if (node.op_type() == "MatMul" && types.count(node.input(1))) {
      EXPECT_EQ(types.at(node.input(1)), onnx::TensorProto::FLOAT16) << node.input(1);
      ++matmul_weights;
    }
    if (node.op_type() == "Sin" || node.op_type() == "Cos") {
      // angle = doy * frequency, computed in float32 from the float32 input.
      ++trig;
      const onnx::NodeProto* angle = producer.at(node.input(0));
      ASSERT_EQ(angle->op_type(), "Mul") << node.name();
      for (const auto& input : angle->input()) {
        EXPECT_EQ(input.find("/to_fp16"), std::string::npos) << input;
        if (types.count(input)) {
          EXPECT_EQ(types.at(input), onnx::TensorProto::FLOAT) << input;
        }
      }
    }
  }
  EXPECT_GT(matmul_weights, 4);
  EXPECT_EQ(trig, 4);  // sin and cos in each of the two branches
  // No tensor is cast twice the same way.
  std::set<std::string> cast_outputs;
  for (const auto& node : graph.node()) {
    if (node.op_type() == "Cast") {
      EXPECT_TRUE(cast_outputs.insert(node.output(0)).second) << node.output(0);
    }
  }
}

TEST(Fp16Model, ComputesWhatTheFloat32ModelComputes) {
  onnx::ModelProto model = read(small_model());
  convert_to_fp16(model, "small.onnx");
  const std::string converted = write(model, "small_fp16.onnx");
  OrtEngineOptions options;
  options.max_batch = 16;
  OrtEngine fp32(small_model(), options), fp16(converted, options);
  fill_dummy_inputs(fp32, 5);
  fill_dummy_inputs(fp16, 5);
  fp32.run(16);
  fp16.run(16);
  float largest = 0, difference = 0;
  for (int i = 0; i < 16 * 128; ++i) {
    ASSERT_TRUE(std::isfinite(fp16.output()[i])) << i;
    largest = std::max(largest, std::fabs(fp32.output()[i]));
    difference = std::max(difference, std::fabs(fp32.output()[i] - fp16.output()[i]));
  }
  // Float16 weights and activations: near, but not the float32 numbers.
  EXPECT_GT(difference, 0.0f);
  EXPECT_LT(difference, 1e-2f * largest) << difference << " of " << largest;
}

TEST(Fp16Model, FileBytesAreTheConvertedModel) {
  onnx::ModelProto model = read(small_model());
  convert_to_fp16(model, small_model());
  onnx::ModelProto from_bytes;
  ASSERT_TRUE(from_bytes.ParseFromString(fp16_model_bytes(small_model())));
  EXPECT_EQ(from_bytes.SerializeAsString(), model.SerializeAsString());
  EXPECT_EQ(error_of([] { fp16_model_bytes(kDir + "/none.onnx"); }),
            kDir + "/none.onnx: cannot be read");
}

TEST(Fp16Model, RefusesWhatItCannotConvert) {
  // An operator outside the converter's list, on a float tensor.
  onnx::ModelProto model = read(small_model());
  onnx::NodeProto* exp = model.mutable_graph()->add_node();
  exp->set_op_type("Exp");
  exp->add_input("output");
  exp->add_output("exp_output");
  EXPECT_EQ(error_of([&] { convert_to_fp16(model, "m.onnx"); }),
            "m.onnx: fp16: cannot convert operator Exp (the converter knows 27 operators whose "
            "float inputs and outputs share one type)");

  // A weight that float16 cannot hold.
  model = read(small_model());
  for (auto& tensor : *model.mutable_graph()->mutable_initializer()) {
    if (tensor.data_type() != onnx::TensorProto::FLOAT || tensor.raw_data().empty()) continue;
    const float big = 1e6f;
    std::string raw = tensor.raw_data();
    std::memcpy(raw.data(), &big, sizeof(big));
    tensor.set_raw_data(raw);
    const std::string name = tensor.name();
    EXPECT_EQ(error_of([&] { convert_to_fp16(model, "m.onnx"); }),
              "m.onnx: fp16: tensor " + name + " has a value beyond float16's range (1000000)");
    break;
  }
}

TEST(Fp16Model, PrecisionNames) {
  for (const char* ok : {"fp32", "tf32", "fp16"}) EXPECT_NO_THROW(check_precision(ok));
  EXPECT_EQ(error_of([] { check_precision("bf16"); }),
            "unknown precision 'bf16' (expected fp32, tf32 or fp16)");
}

}  // namespace
}  // namespace tessera
