#include "tessera/model/fp16_model.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <vector>

#include "tessera/common/error.h"

namespace tessera {
namespace {

// Operators whose float inputs and outputs share one type T, so that they compute in float16
// when given float16: output i is float when input 0 is (Concat: when any input is; Where: when
// input 1 is). Their other inputs (indices, shapes, conditions) are not float.
const std::set<std::string> kFloatOps = {"Gather",
                                         "Expand",
                                         "Tile",
                                         "Where",
                                         "Add",
                                         "Sub",
                                         "Mul",
                                         "Div",
                                         "MatMul",
                                         "Gemm",
                                         "Relu",
                                         "Sigmoid",
                                         "Tanh",
                                         "Erf",
                                         "Sqrt",
                                         "Softmax",
                                         "LayerNormalization",
                                         "Reshape",
                                         "Transpose",
                                         "Split",
                                         "Slice",
                                         "Concat",
                                         "Unsqueeze",
                                         "Squeeze",
                                         "ReduceSum",
                                         "ReduceMean",
                                         "Sin",
                                         "Cos",
                                         "Identity",
                                         "Flatten",
                                         "Neg"};

// Nodes that stay float32, with everything upstream of them.
const std::set<std::string> kKeepFloat32 = {"Sin", "Cos"};

constexpr float kFloat16Max = 65504.0f;

std::vector<float> float_values(const onnx::TensorProto& tensor, const std::string& what) {
  if (tensor.data_location() == onnx::TensorProto::EXTERNAL) {
    throw Error(what + ": fp16: tensor " + tensor.name() + " has external data (not supported)");
  }
  if (!tensor.raw_data().empty()) {
    std::vector<float> values(tensor.raw_data().size() / sizeof(float));
    std::memcpy(values.data(), tensor.raw_data().data(), values.size() * sizeof(float));
    return values;
  }
  return {tensor.float_data().begin(), tensor.float_data().end()};
}

// Rewrites a float32 tensor as float16 (round to nearest even), in raw_data.
void to_float16(onnx::TensorProto& tensor, const std::string& what) {
  const std::vector<float> values = float_values(tensor, what);
  std::string raw(values.size() * sizeof(uint16_t), '\0');
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i]) || std::fabs(values[i]) > kFloat16Max) {
      throw Error(fmt::format("{}: fp16: tensor {} has a value beyond float16's range ({})", what,
                              tensor.name(), values[i]));
    }
    const auto half = static_cast<_Float16>(values[i]);
    std::memcpy(raw.data() + i * sizeof(uint16_t), &half, sizeof(uint16_t));
  }
  tensor.clear_float_data();
  tensor.set_raw_data(raw);
  tensor.set_data_type(onnx::TensorProto::FLOAT16);
}

onnx::TensorProto* constant_value(onnx::NodeProto& node) {
  for (auto& attribute : *node.mutable_attribute()) {
    if (attribute.name() == "value") return attribute.mutable_t();
  }
  return nullptr;
}

}  // namespace

void convert_to_fp16(onnx::ModelProto& model, const std::string& what) {
  onnx::GraphProto& graph = *model.mutable_graph();
  const int nodes = graph.node_size();

  // 1. Which tensors are float, who produces them, which nodes compute on floats.
  std::set<std::string> floats, graph_inputs, sources;  // sources: initializers and Constants
  std::map<std::string, onnx::TensorProto*> initializers;
  for (const auto& input : graph.input()) {
    graph_inputs.insert(input.name());
    if (input.type().tensor_type().elem_type() == onnx::TensorProto::FLOAT)
      floats.insert(input.name());
  }
  for (auto& tensor : *graph.mutable_initializer()) {
    initializers[tensor.name()] = &tensor;
    if (tensor.data_type() == onnx::TensorProto::FLOAT) {
      floats.insert(tensor.name());
      sources.insert(tensor.name());
    }
  }
  std::map<std::string, int> producer;
  std::vector<bool> computes(static_cast<size_t>(nodes), false);
  for (int i = 0; i < nodes; ++i) {
    onnx::NodeProto& node = *graph.mutable_node(i);
    for (const auto& output : node.output()) producer[output] = i;
    if (node.op_type() == "Constant") {
      const onnx::TensorProto* value = constant_value(node);
      if (value && value->data_type() == onnx::TensorProto::FLOAT) {
        floats.insert(node.output(0));
        sources.insert(node.output(0));
      }
      for (const auto& attribute : node.attribute()) {
        if (attribute.name() == "value_float" || attribute.name() == "value_floats") {
          throw Error(what + ": fp16: cannot convert a Constant given as " + attribute.name());
        }
      }
      continue;
    }
    // Nodes that make float32 tensors from anything: left as they are, their outputs read like
    // graph inputs (float32, cast for float16 readers). Cast reads any type, float16 included.
    if (node.op_type() == "Cast") {
      for (const auto& attribute : node.attribute()) {
        if (attribute.name() == "to" && attribute.i() == onnx::TensorProto::FLOAT)
          floats.insert(node.output(0));
      }
      continue;
    }
    if (node.op_type() == "ConstantOfShape") {
      const onnx::TensorProto* value = constant_value(node);
      if (!value || value->data_type() == onnx::TensorProto::FLOAT) floats.insert(node.output(0));
      continue;
    }
    bool any_float = false;
    for (const auto& input : node.input()) any_float = any_float || floats.count(input) > 0;
    if (!any_float) continue;  // shape and index arithmetic: left as it is
    if (!kFloatOps.count(node.op_type()) || !node.domain().empty()) {
      throw Error(what + ": fp16: cannot convert operator " + node.op_type() +
                  " (the converter knows " + std::to_string(kFloatOps.size()) +
                  " operators whose float inputs and outputs share one type)");
    }
    computes[static_cast<size_t>(i)] = true;
    const std::string& op = node.op_type();
    const bool float_out = op == "Concat"  ? true
                           : op == "Where" ? floats.count(node.input(1)) > 0
                                           : floats.count(node.input(0)) > 0;
    if (float_out) {
      for (const auto& output : node.output()) floats.insert(output);
    }
  }

  // 2. Nodes that stay float32: Sin, Cos and every float-computing node upstream of them.
  std::vector<bool> keep32(static_cast<size_t>(nodes), false);
  std::vector<int> pending;
  for (int i = 0; i < nodes; ++i) {
    if (computes[static_cast<size_t>(i)] && kKeepFloat32.count(graph.node(i).op_type()))
      pending.push_back(i);
  }
  while (!pending.empty()) {
    const int i = pending.back();
    pending.pop_back();
    if (keep32[static_cast<size_t>(i)]) continue;
    keep32[static_cast<size_t>(i)] = true;
    for (const auto& input : graph.node(i).input()) {
      const auto p = producer.find(input);
      if (floats.count(input) && p != producer.end() && computes[static_cast<size_t>(p->second)])
        pending.push_back(p->second);
    }
  }

  // 3. Weights and constants become float16 when only float16 nodes read them.
  std::set<std::string> read32, read16;
  for (int i = 0; i < nodes; ++i) {
    if (!computes[static_cast<size_t>(i)]) continue;
    for (const auto& input : graph.node(i).input()) {
      if (floats.count(input)) (keep32[static_cast<size_t>(i)] ? read32 : read16).insert(input);
    }
  }
  for (const auto& output : graph.output()) read32.insert(output.name());
  std::set<std::string> converted;
  for (const auto& name : sources) {
    if (read16.count(name) && !read32.count(name)) converted.insert(name);
  }
  const auto is16 = [&](const std::string& tensor) {
    if (converted.count(tensor)) return true;
    if (sources.count(tensor) || graph_inputs.count(tensor)) return false;
    const auto p = producer.find(tensor);
    return p != producer.end() && computes[static_cast<size_t>(p->second)] &&
           !keep32[static_cast<size_t>(p->second)];
  };

  // 4. Graph outputs computed in float16 get an internal name and a Cast back to float32.
  std::map<std::string, std::string> renamed;
  for (const auto& output : graph.output()) {
    if (floats.count(output.name()) && is16(output.name()))
      renamed[output.name()] = output.name() + "/fp16";
  }
  const auto name_of = [&](const std::string& tensor) {
    const auto r = renamed.find(tensor);
    return r == renamed.end() ? tensor : r->second;
  };

  // 5. Rebuild the node list: before each float-computing node, the Casts its inputs need.
  google::protobuf::RepeatedPtrField<onnx::NodeProto> rebuilt;
  std::set<std::string> casts;
  const auto add_cast = [&](const std::string& from, const std::string& to, bool to16) {
    if (!casts.insert(to).second) return;
    onnx::NodeProto* cast = rebuilt.Add();
    cast->set_op_type("Cast");
    cast->set_name("cast:" + to);
    cast->add_input(from);
    cast->add_output(to);
    onnx::AttributeProto* attribute = cast->add_attribute();
    attribute->set_name("to");
    attribute->set_type(onnx::AttributeProto::INT);
    attribute->set_i(to16 ? onnx::TensorProto::FLOAT16 : onnx::TensorProto::FLOAT);
  };
  for (int i = 0; i < nodes; ++i) {
    onnx::NodeProto node = graph.node(i);
    if (computes[static_cast<size_t>(i)]) {
      const bool want16 = !keep32[static_cast<size_t>(i)];
      for (int k = 0; k < node.input_size(); ++k) {
        const std::string& input = node.input(k);
        if (!floats.count(input) || is16(input) == want16) {
          node.set_input(k, name_of(input));
          continue;
        }
        const std::string cast = input + (want16 ? "/to_fp16" : "/to_fp32");
        add_cast(name_of(input), cast, want16);
        node.set_input(k, cast);
      }
    } else if (node.op_type() == "Constant" && converted.count(node.output(0))) {
      to_float16(*constant_value(node), what);
    }
    for (int k = 0; k < node.output_size(); ++k) node.set_output(k, name_of(node.output(k)));
    *rebuilt.Add() = std::move(node);
  }
  for (const auto& [output, internal] : renamed) add_cast(internal, output, false);
  graph.mutable_node()->Swap(&rebuilt);
  for (const auto& name : converted) {
    const auto tensor = initializers.find(name);
    if (tensor != initializers.end()) to_float16(*tensor->second, what);
  }
  graph.clear_value_info();
}

std::string fp16_model_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot be read");
  onnx::ModelProto model;
  if (!model.ParseFromIstream(&in))
    throw Error(path + ": not an ONNX model (protobuf parse failed)");
  convert_to_fp16(model, path);
  std::string bytes;
  if (!model.SerializeToString(&bytes)) throw Error(path + ": fp16: cannot serialise the result");
  return bytes;
}

}  // namespace tessera
