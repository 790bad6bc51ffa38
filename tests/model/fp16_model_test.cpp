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
#include <utility>
#include <vector>

#include "tessera/common/error.h"
#include "tessera/engine/dummy_inputs.h"
#include "tessera/engine/ort/ort_engine.h"
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
  std::filesystem::create_directories(kDir);
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

// The graph's one node of type `op` (the test fails when there is not exactly one).
onnx::NodeProto the_node(const onnx::ModelProto& model, const std::string& op) {
  std::vector<onnx::NodeProto> found;
  for (const auto& n : model.graph().node()) {
    if (n.op_type() == op) found.push_back(n);
  }
  EXPECT_EQ(found.size(), 1u) << op;
  return found.empty() ? onnx::NodeProto() : found[0];
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
            "m.onnx: fp16: cannot convert operator Exp (the converter knows 31 operators whose "
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

// A Tessera-shaped model (output = for pixel b and j < 128, with x the pixel's S2 values flattened:
// cond[j] ? x[j] : float(int(x[j]))) built from the operators that move data or make float32 from
// other types: Cast, ConstantOfShape, Gather, Where.
std::string write_casting_model() {
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.add_opset_import()->set_version(17);
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("casting");
  testing::declare_batched_float(graph->add_input(), "s2_input", {40, 11});
  testing::declare_batched_float(graph->add_input(), "s1_input", {40, 3});
  testing::declare_batched_float(graph->add_output(), "output", {128});
  auto ints = [&](const char* name, std::vector<int64_t> values, bool vector = true) {
    auto* t = graph->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    if (vector) t->add_dims(static_cast<int64_t>(values.size()));
    for (const int64_t v : values) t->add_int64_data(v);
  };
  ints("rows", {-1, 440});
  std::vector<int64_t> first(128);
  for (int j = 0; j < 128; ++j) first[static_cast<size_t>(j)] = j;
  ints("first", first);
  ints("shape", {1, 128});
  auto* cond = graph->add_initializer();
  cond->set_name("cond");
  cond->set_data_type(onnx::TensorProto::BOOL);
  cond->add_dims(128);
  for (int j = 0; j < 128; ++j) cond->add_int32_data(j % 2);
  auto node = [&](const char* op, std::initializer_list<const char*> in, const char* out,
                  int64_t to = -1, int64_t axis = -1) {
    auto* n = graph->add_node();
    n->set_op_type(op);
    n->set_name(out);
    for (const char* i : in) n->add_input(i);
    n->add_output(out);
    for (const auto& [key, v] : {std::pair<const char*, int64_t>{"to", to}, {"axis", axis}}) {
      if (v < 0) continue;
      auto* a = n->add_attribute();
      a->set_name(key);
      a->set_type(onnx::AttributeProto::INT);
      a->set_i(v);
    }
  };
  node("Reshape", {"s2_input", "rows"}, "flat");
  node("Gather", {"flat", "first"}, "x", -1, 1);
  node("Cast", {"s2_input"}, "ints", onnx::TensorProto::INT32);
  node("Cast", {"ints"}, "truncated", onnx::TensorProto::FLOAT);
  node("Reshape", {"truncated", "rows"}, "truncated_flat");
  node("Gather", {"truncated_flat", "first"}, "y", -1, 1);
  node("ConstantOfShape", {"shape"}, "zero");  // float32 zeros
  node("Where", {"cond", "x", "y"}, "chosen");
  node("Add", {"chosen", "zero"}, "output");
  std::filesystem::create_directories(kDir);
  const std::string path = kDir + "/casting.onnx";
  std::ofstream out(path, std::ios::binary);
  model.SerializeToOstream(&out);
  return path;
}

TEST(Fp16Model, FloatMadeFromOtherTypesIsCastForFloat16Readers) {
  const std::string path = write_casting_model();
  onnx::ModelProto model = read(path);
  convert_to_fp16(model, path);
  std::map<std::string, const onnx::NodeProto*> by_output;
  for (const auto& node : model.graph().node()) by_output[node.output(0)] = &node;
  // Casts from the input stay as they were; float16 readers get casts of their float32 outputs.
  EXPECT_EQ(by_output.at("ints")->input(0), "s2_input");
  EXPECT_EQ(by_output.at("truncated_flat")->input(0), "truncated/to_fp16");
  EXPECT_EQ(by_output.at("output/fp16")->input(1), "zero/to_fp16");
  EXPECT_EQ(by_output.at("chosen")->input(0), "cond");
  const std::string converted = write(model, "casting_fp16.onnx");

  OrtEngineOptions options;
  options.max_batch = 4;
  OrtEngine fp32(path, options), fp16(converted, options);
  fill_dummy_inputs(fp32, 9);
  fill_dummy_inputs(fp16, 9);
  fp32.run(4);
  fp16.run(4);
  for (int b = 0; b < 4; ++b) {
    for (int j = 0; j < 128; ++j) {
      const float x = fp32.s2_input()[b * 440 + j];
      const float expected = j % 2 ? x : std::trunc(x);
      ASSERT_EQ(fp32.output()[b * 128 + j], expected) << b << " " << j;
      // Float16 keeps 11 significant bits.
      ASSERT_NEAR(fp16.output()[b * 128 + j], expected, std::fabs(expected) / 1024)
          << b << " " << j;
    }
  }
}

// ---- edge cases of general ONNX graphs (not the built-in model's) ----

// A small graph on X [2, 4] (float32), built node by node.
struct MiniGraph {
  onnx::ModelProto model;
  onnx::GraphProto* graph = model.mutable_graph();
  MiniGraph() {
    model.set_ir_version(8);
    model.add_opset_import()->set_version(17);
    graph->set_name("mini");
    declare(graph->add_input(), "X", onnx::TensorProto::FLOAT);
  }
  static void declare(onnx::ValueInfoProto* v, const std::string& name, int type) {
    v->set_name(name);
    auto* tensor = v->mutable_type()->mutable_tensor_type();
    tensor->set_elem_type(type);
    tensor->mutable_shape()->add_dim()->set_dim_value(2);
    tensor->mutable_shape()->add_dim()->set_dim_value(4);
  }
  void output(const std::string& name, int type = onnx::TensorProto::FLOAT) {
    declare(graph->add_output(), name, type);
  }
  onnx::TensorProto* floats(const std::string& name, std::vector<float> values,
                            std::vector<int64_t> dims) {
    auto* t = graph->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (const int64_t d : dims) t->add_dims(d);
    for (const float v : values) t->add_float_data(v);
    return t;
  }
  // "scale" and "bias" of a LayerNormalization over X's last axis (4).
  void layer_norm_weights() {
    floats("scale", {1, 1, 1, 1}, {4});
    floats("bias", {0, 0, 0, 0}, {4});
  }
  void ints(const std::string& name, std::vector<int64_t> values) {
    auto* t = graph->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(values.size()));
    for (const int64_t v : values) t->add_int64_data(v);
  }
  onnx::NodeProto* node(const std::string& op, std::vector<std::string> inputs,
                        std::vector<std::string> outputs, int64_t to = -1) {
    auto* n = graph->add_node();
    n->set_op_type(op);
    n->set_name(outputs.front());
    for (const auto& i : inputs) n->add_input(i);
    for (const auto& o : outputs) n->add_output(o);
    if (to >= 0) {
      auto* a = n->add_attribute();
      a->set_name("to");
      a->set_type(onnx::AttributeProto::INT);
      a->set_i(to);
    }
    return n;
  }
  // Converts the graph, checks that every node reads only tensors made before it and that ONNX
  // Runtime loads the result, and returns it.
  onnx::ModelProto converted() const {
    onnx::ModelProto result = model;
    convert_to_fp16(result, "mini.onnx");
    std::set<std::string> known{""}, node_names;
    for (const auto& input : result.graph().input()) known.insert(input.name());
    for (const auto& t : result.graph().initializer()) known.insert(t.name());
    for (const auto& n : result.graph().node()) {
      for (const auto& input : n.input())
        EXPECT_TRUE(known.count(input)) << n.name() << " reads " << input;
      for (const auto& output : n.output())
        EXPECT_TRUE(known.insert(output).second || output.empty()) << output;
      EXPECT_TRUE(node_names.insert(n.name()).second) << "two nodes named " << n.name();
    }
    const std::string bytes = result.SerializeAsString();
    EXPECT_NO_THROW(Ort::Session(ort_env(), bytes.data(), bytes.size(), Ort::SessionOptions()));
    return result;
  }
};

TEST(Fp16Model, InitializersListedAsInputsStayFloat32) {
  MiniGraph g;
  g.floats("W", std::vector<float>(16, 0.5f), {4, 4});
  MiniGraph::declare(g.graph->add_input(), "W", onnx::TensorProto::FLOAT);  // older IR
  g.graph->mutable_input(1)
      ->mutable_type()
      ->mutable_tensor_type()
      ->mutable_shape()
      ->mutable_dim(0)
      ->set_dim_value(4);
  g.node("MatMul", {"X", "W"}, {"Y"});
  g.output("Y");
  const onnx::ModelProto m = g.converted();
  EXPECT_EQ(m.graph().initializer(0).data_type(), onnx::TensorProto::FLOAT);
}

TEST(Fp16Model, LayerNormalizationStatisticsStayFloat32) {
  MiniGraph g;
  g.layer_norm_weights();
  g.node("LayerNormalization", {"X", "scale", "bias"}, {"N", "mean"});
  g.node("Add", {"N", "mean"}, {"Y"});
  g.output("Y");
  EXPECT_EQ(the_node(g.converted(), "Add").input(1), "mean/to_fp16");
}

TEST(Fp16Model, AbsentOptionalInputsStayAbsent) {
  MiniGraph g;
  g.layer_norm_weights();
  g.ints("starts", {0});
  g.ints("ends", {4});
  g.ints("steps", {1});
  // An absent optional output ("", of a node kept in float32 for Sin) and an absent optional
  // input ("", of a float16 Slice) are not one tensor.
  g.node("LayerNormalization", {"X", "scale", "bias"}, {"N", ""});
  g.node("Sin", {"N"}, {"S"});
  g.node("Slice", {"X", "starts", "ends", "", "steps"}, {"Y"});
  g.output("S");
  g.output("Y");
  EXPECT_EQ(the_node(g.converted(), "Slice").input(3), "");
}

TEST(Fp16Model, OutputsReadByOtherNodesAndNamesThatAreTaken) {
  MiniGraph g;
  g.node("Relu", {"X"}, {"X/to_fp16"});  // the name the converter would give X's cast
  g.node("Add", {"X", "X/to_fp16"}, {"Y"});
  g.node("Cast", {"Y"}, {"Z"}, onnx::TensorProto::INT64);  // reads an output made in float16
  g.output("Y");
  g.output("Z", onnx::TensorProto::INT64);
  g.converted();
}

TEST(Fp16Model, ValuesReadAsTheyAreStayFloat32) {
  MiniGraph g;
  g.floats("C", {4097.0f}, {});  // float16 would make it 4096
  g.node("Add", {"X", "C"}, {"Y"});
  g.node("Cast", {"C"}, {"Z"}, onnx::TensorProto::INT64);
  g.output("Y");
  g.output("Z", onnx::TensorProto::INT64);
  g.graph->mutable_output(1)->mutable_type()->mutable_tensor_type()->clear_shape();
  const onnx::ModelProto m = g.converted();
  EXPECT_EQ(m.graph().initializer(0).data_type(), onnx::TensorProto::FLOAT);
}

TEST(Fp16Model, RefusesSubgraphsAndRandomNumbers) {
  MiniGraph g;
  onnx::NodeProto* branch = g.node("If", {"cond"}, {"Y"});
  auto* then = branch->add_attribute();
  then->set_name("then_branch");
  then->set_type(onnx::AttributeProto::GRAPH);
  then->mutable_g()->set_name("then");
  EXPECT_EQ(error_of([&] {
              onnx::ModelProto m = g.model;
              convert_to_fp16(m, "m.onnx");
            }),
            "m.onnx: fp16: cannot convert operator If with a subgraph (If, Loop, Scan)");
  MiniGraph r;
  r.node("RandomNormal", {}, {"R"});
  EXPECT_EQ(error_of([&] {
              onnx::ModelProto m = r.model;
              convert_to_fp16(m, "m.onnx");
            }),
            "m.onnx: fp16: cannot convert operator RandomNormal (it makes float tensors from no "
            "float input)");
}

TEST(Fp16Model, PrecisionNames) {
  for (const Precision ok : {Precision::fp32, Precision::tf32, Precision::fp16})
    EXPECT_NO_THROW(check_ort_precision(ok));
  EXPECT_EQ(error_of([] { check_ort_precision(Precision::bf16); }),
            "the ort engine computes fp32, tf32 or fp16, not bf16");
}

}  // namespace
}  // namespace tessera
