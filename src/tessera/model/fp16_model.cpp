#include "tessera/model/fp16_model.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <utility>
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

// Operators that make float tensors from no float input, whose precision the converter cannot
// follow: refused.
const std::set<std::string> kMakesFloat = {"RandomNormal",      "RandomUniform", "RandomNormalLike",
                                           "RandomUniformLike", "EyeLike",       "Bernoulli",
                                           "Multinomial"};

// Nodes that stay float32, with everything upstream of them.
const std::set<std::string> kKeepFloat32 = {"Sin", "Cos"};

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
    const auto half = static_cast<_Float16>(values[i]);
    if (!std::isfinite(values[i]) || std::isinf(static_cast<float>(half))) {
      throw Error(fmt::format("{}: fp16: tensor {} has a value beyond float16's range ({})", what,
                              tensor.name(), values[i]));
    }
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
  const auto refuse = [&](const std::string& why) { throw Error(what + ": fp16: " + why); };

  // 1. Which tensors are float, who produces them, which nodes compute on floats. "" names an
  // absent optional input or output and is never a tensor.
  std::set<std::string> floats, graph_inputs, sources;  // sources: initializers and Constants
  std::set<std::string> fixed32;  // float32 whoever makes them (LayerNormalization's statistics)
  std::set<std::string> names;  // every tensor and node name, for new names that collide with none
  std::map<std::string, onnx::TensorProto*> initializers;
  for (const auto& input : graph.input()) {
    graph_inputs.insert(input.name());
    names.insert(input.name());
    if (input.type().tensor_type().elem_type() == onnx::TensorProto::FLOAT)
      floats.insert(input.name());
  }
  for (auto& tensor : *graph.mutable_initializer()) {
    names.insert(tensor.name());
    // An initializer that is also a graph input (older IR) can be fed: it stays float32.
    if (graph_inputs.count(tensor.name())) continue;
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
    const std::string& op = node.op_type();
    names.insert(node.name());
    for (const auto& output : node.output()) {
      if (output.empty()) continue;
      producer[output] = i;
      names.insert(output);
    }
    for (const auto& attribute : node.attribute()) {
      if (attribute.has_g() || attribute.graphs_size() > 0) {
        refuse("cannot convert operator " + op + " with a subgraph (If, Loop, Scan)");
      }
    }
    if (kMakesFloat.count(op)) {
      refuse("cannot convert operator " + op + " (it makes float tensors from no float input)");
    }
    if (op == "Constant") {
      const onnx::TensorProto* value = constant_value(node);
      if (value && value->data_type() == onnx::TensorProto::FLOAT) {
        floats.insert(node.output(0));
        sources.insert(node.output(0));
      }
      for (const auto& attribute : node.attribute()) {
        if (attribute.name() == "value_float" || attribute.name() == "value_floats") {
          refuse("cannot convert a Constant given as " + attribute.name());
        }
      }
      continue;
    }
    // Nodes that make float32 tensors from anything: left as they are, their outputs read like
    // graph inputs (float32, cast for float16 readers). Cast reads any type, float16 included.
    if (op == "Cast") {
      for (const auto& attribute : node.attribute()) {
        if (attribute.name() == "to" && attribute.i() == onnx::TensorProto::FLOAT)
          floats.insert(node.output(0));
      }
      continue;
    }
    if (op == "ConstantOfShape") {
      const onnx::TensorProto* value = constant_value(node);
      if (!value || value->data_type() == onnx::TensorProto::FLOAT) floats.insert(node.output(0));
      continue;
    }
    bool any_float = false;
    for (const auto& input : node.input()) any_float = any_float || floats.count(input) > 0;
    if (!any_float) continue;  // shape and index arithmetic: left as it is
    if (!kFloatOps.count(op) || !node.domain().empty()) {
      refuse("cannot convert operator " + op + " (the converter knows " +
             std::to_string(kFloatOps.size()) +
             " operators whose float inputs and outputs share one type)");
    }
    computes[static_cast<size_t>(i)] = true;
    const bool float_out = op == "Concat"  ? true
                           : op == "Where" ? floats.count(node.input(1)) > 0
                                           : floats.count(node.input(0)) > 0;
    if (!float_out) continue;
    for (int k = 0; k < node.output_size(); ++k) {
      if (node.output(k).empty()) continue;
      floats.insert(node.output(k));
      // Mean and InvStdDev are of type U (stash_type, float32), not T.
      if (op == "LayerNormalization" && k > 0) fixed32.insert(node.output(k));
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

  // 3. Weights and constants become float16 when only float16 nodes read them. Graph outputs and
  // the readers that are left as they are (a Cast to int reads the values) count as float32.
  std::set<std::string> read32, read16;
  for (int i = 0; i < nodes; ++i) {
    const bool as16 = computes[static_cast<size_t>(i)] && !keep32[static_cast<size_t>(i)];
    for (const auto& input : graph.node(i).input()) {
      if (floats.count(input)) (as16 ? read16 : read32).insert(input);
    }
  }
  for (const auto& output : graph.output()) read32.insert(output.name());
  std::set<std::string> converted;
  for (const auto& name : sources) {
    if (read16.count(name) && !read32.count(name)) converted.insert(name);
  }
  const auto is16 = [&](const std::string& tensor) {
    if (converted.count(tensor)) return true;
    if (sources.count(tensor) || graph_inputs.count(tensor) || fixed32.count(tensor)) return false;
    const auto p = producer.find(tensor);
    return p != producer.end() && computes[static_cast<size_t>(p->second)] &&
           !keep32[static_cast<size_t>(p->second)];
  };
  // A name based on `base` that no tensor or node of the graph has.
  const auto fresh_name = [&](const std::string& base) {
    std::string name = base;
    for (int n = 2; names.count(name); ++n) name = base + "_" + std::to_string(n);
    names.insert(name);
    return name;
  };

  // 4. Graph outputs computed in float16 get an internal name and a Cast back to float32.
  std::map<std::string, std::string> renamed;
  for (const auto& output : graph.output()) {
    if (floats.count(output.name()) && is16(output.name()))
      renamed[output.name()] = fresh_name(output.name() + "/fp16");
  }
  const auto name_of = [&](const std::string& tensor) {
    const auto r = renamed.find(tensor);
    return r == renamed.end() ? tensor : r->second;
  };

  // 5. Rebuild the node list: before each float-computing node, the Casts its inputs need.
  google::protobuf::RepeatedPtrField<onnx::NodeProto> rebuilt;
  std::map<std::pair<std::string, bool>, std::string> casts;  // (tensor, to float16) -> cast
  const auto add_cast = [&](const std::string& from, const std::string& to, bool to16) {
    onnx::NodeProto* cast = rebuilt.Add();
    cast->set_op_type("Cast");
    cast->set_name(fresh_name("cast:" + to));
    cast->add_input(from);
    cast->add_output(to);
    onnx::AttributeProto* attribute = cast->add_attribute();
    attribute->set_name("to");
    attribute->set_type(onnx::AttributeProto::INT);
    attribute->set_i(to16 ? onnx::TensorProto::FLOAT16 : onnx::TensorProto::FLOAT);
  };
  const auto cast_of = [&](const std::string& tensor, bool to16) {
    const auto key = std::make_pair(tensor, to16);
    const auto found = casts.find(key);
    if (found != casts.end()) return found->second;
    const std::string cast = fresh_name(tensor + (to16 ? "/to_fp16" : "/to_fp32"));
    add_cast(name_of(tensor), cast, to16);
    casts[key] = cast;
    return cast;
  };
  for (int i = 0; i < nodes; ++i) {
    onnx::NodeProto node = graph.node(i);
    const bool computing = computes[static_cast<size_t>(i)];
    const bool want16 = computing && !keep32[static_cast<size_t>(i)];
    for (int k = 0; k < node.input_size(); ++k) {
      const std::string& input = node.input(k);
      if (computing && floats.count(input) && is16(input) != want16) {
        node.set_input(k, cast_of(input, want16));
      } else {
        node.set_input(k, name_of(input));
      }
    }
    if (node.op_type() == "Constant" && converted.count(node.output(0))) {
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
