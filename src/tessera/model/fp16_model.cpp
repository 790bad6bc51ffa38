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

// One conversion, phase by phase (run). Phases 1-4 only read the graph; phase 5 rewrites it.
// Refusals come in phase 1, so a refused model is left as it was.
class Fp16Converter {
 public:
  Fp16Converter(onnx::ModelProto& model, const std::string& what)
      : graph_(*model.mutable_graph()), what_(what), nodes_(graph_.node_size()) {}

  void run() {
    find_float_tensors();
    keep_float32_upstream_of_sin_cos();
    choose_float16_sources();
    rename_float16_outputs();
    rebuild_nodes();
  }

 private:
  [[noreturn]] void refuse(const std::string& why) const { throw Error(what_ + ": fp16: " + why); }
  bool computes(int i) const { return computes_[static_cast<size_t>(i)]; }
  bool keep32(int i) const { return keep32_[static_cast<size_t>(i)]; }

  // 1. Which tensors are float, who produces them, which nodes compute on floats. "" names an
  // absent optional input or output and is never a tensor.
  void find_float_tensors() {
    for (const auto& input : graph_.input()) {
      graph_inputs_.insert(input.name());
      names_.insert(input.name());
      if (input.type().tensor_type().elem_type() == onnx::TensorProto::FLOAT)
        floats_.insert(input.name());
    }
    for (auto& tensor : *graph_.mutable_initializer()) {
      names_.insert(tensor.name());
      // An initializer that is also a graph input (older IR) can be fed: it stays float32.
      if (graph_inputs_.count(tensor.name())) continue;
      initializers_[tensor.name()] = &tensor;
      if (tensor.data_type() == onnx::TensorProto::FLOAT) {
        floats_.insert(tensor.name());
        sources_.insert(tensor.name());
      }
    }
    computes_.assign(static_cast<size_t>(nodes_), false);
    for (int i = 0; i < nodes_; ++i) classify_node(i);
  }

  // Phase 1 for node i: its names, whether it is refused, makes floats from nothing, or
  // computes on floats (and then which of its outputs are float).
  void classify_node(int i) {
    onnx::NodeProto& node = *graph_.mutable_node(i);
    const std::string& op = node.op_type();
    names_.insert(node.name());
    for (const auto& output : node.output()) {
      if (output.empty()) continue;
      producer_[output] = i;
      names_.insert(output);
    }
    for (const auto& attribute : node.attribute()) {
      if (attribute.has_g() || attribute.graphs_size() > 0) {
        refuse("cannot convert operator " + op + " with a subgraph (If, Loop, Scan)");
      }
    }
    if (kMakesFloat.count(op)) {
      refuse("cannot convert operator " + op + " (it makes float tensors from no float input)");
    }
    if (classify_float_maker(node)) return;
    bool any_float = false;
    for (const auto& input : node.input()) any_float = any_float || floats_.count(input) > 0;
    if (!any_float) return;  // shape and index arithmetic: left as it is
    if (!kFloatOps.count(op) || !node.domain().empty()) {
      refuse("cannot convert operator " + op + " (the converter knows " +
             std::to_string(kFloatOps.size()) +
             " operators whose float inputs and outputs share one type)");
    }
    computes_[static_cast<size_t>(i)] = true;
    const bool float_out = op == "Concat"  ? true
                           : op == "Where" ? floats_.count(node.input(1)) > 0
                                           : floats_.count(node.input(0)) > 0;
    if (!float_out) return;
    for (int k = 0; k < node.output_size(); ++k) {
      if (node.output(k).empty()) continue;
      floats_.insert(node.output(k));
      // Mean and InvStdDev are of type U (stash_type, float32), not T.
      if (op == "LayerNormalization" && k > 0) fixed32_.insert(node.output(k));
    }
  }

  // Constant, Cast and ConstantOfShape: true, with their float outputs noted. Nodes that make
  // float32 tensors from anything are left as they are, their outputs read like graph inputs
  // (float32, cast for float16 readers). Cast reads any type, float16 included.
  bool classify_float_maker(onnx::NodeProto& node) {
    const std::string& op = node.op_type();
    if (op == "Constant") {
      const onnx::TensorProto* value = constant_value(node);
      if (value && value->data_type() == onnx::TensorProto::FLOAT) {
        floats_.insert(node.output(0));
        sources_.insert(node.output(0));
      }
      for (const auto& attribute : node.attribute()) {
        if (attribute.name() == "value_float" || attribute.name() == "value_floats") {
          refuse("cannot convert a Constant given as " + attribute.name());
        }
      }
      return true;
    }
    if (op == "Cast") {
      for (const auto& attribute : node.attribute()) {
        if (attribute.name() == "to" && attribute.i() == onnx::TensorProto::FLOAT)
          floats_.insert(node.output(0));
      }
      return true;
    }
    if (op == "ConstantOfShape") {
      const onnx::TensorProto* value = constant_value(node);
      if (!value || value->data_type() == onnx::TensorProto::FLOAT) floats_.insert(node.output(0));
      return true;
    }
    return false;
  }

  // 2. Nodes that stay float32: Sin, Cos and every float-computing node upstream of them.
  void keep_float32_upstream_of_sin_cos() {
    keep32_.assign(static_cast<size_t>(nodes_), false);
    std::vector<int> pending;
    for (int i = 0; i < nodes_; ++i) {
      if (computes(i) && kKeepFloat32.count(graph_.node(i).op_type())) pending.push_back(i);
    }
    while (!pending.empty()) {
      const int i = pending.back();
      pending.pop_back();
      if (keep32(i)) continue;
      keep32_[static_cast<size_t>(i)] = true;
      for (const auto& input : graph_.node(i).input()) {
        const auto p = producer_.find(input);
        if (floats_.count(input) && p != producer_.end() && computes(p->second))
          pending.push_back(p->second);
      }
    }
  }

  // 3. Weights and constants become float16 when only float16 nodes read them. Graph outputs and
  // the readers that are left as they are (a Cast to int reads the values) count as float32.
  void choose_float16_sources() {
    std::set<std::string> read32, read16;
    for (int i = 0; i < nodes_; ++i) {
      const bool as16 = computes(i) && !keep32(i);
      for (const auto& input : graph_.node(i).input()) {
        if (floats_.count(input)) (as16 ? read16 : read32).insert(input);
      }
    }
    for (const auto& output : graph_.output()) read32.insert(output.name());
    for (const auto& name : sources_) {
      if (read16.count(name) && !read32.count(name)) converted_.insert(name);
    }
  }

  bool is16(const std::string& tensor) const {
    if (converted_.count(tensor)) return true;
    if (sources_.count(tensor) || graph_inputs_.count(tensor) || fixed32_.count(tensor))
      return false;
    const auto p = producer_.find(tensor);
    return p != producer_.end() && computes(p->second) && !keep32(p->second);
  }

  // A name based on `base` that no tensor or node of the graph has.
  std::string fresh_name(const std::string& base) {
    std::string name = base;
    for (int n = 2; names_.count(name); ++n) name = base + "_" + std::to_string(n);
    names_.insert(name);
    return name;
  }

  // 4. Graph outputs computed in float16 get an internal name and a Cast back to float32.
  void rename_float16_outputs() {
    for (const auto& output : graph_.output()) {
      if (floats_.count(output.name()) && is16(output.name()))
        renamed_[output.name()] = fresh_name(output.name() + "/fp16");
    }
  }

  std::string name_of(const std::string& tensor) const {
    const auto r = renamed_.find(tensor);
    return r == renamed_.end() ? tensor : r->second;
  }

  void add_cast(const std::string& from, const std::string& to, bool to16) {
    onnx::NodeProto* cast = rebuilt_.Add();
    cast->set_op_type("Cast");
    cast->set_name(fresh_name("cast:" + to));
    cast->add_input(from);
    cast->add_output(to);
    onnx::AttributeProto* attribute = cast->add_attribute();
    attribute->set_name("to");
    attribute->set_type(onnx::AttributeProto::INT);
    attribute->set_i(to16 ? onnx::TensorProto::FLOAT16 : onnx::TensorProto::FLOAT);
  }

  // The tensor `tensor` cast to float16 (`to16`) or float32, the Cast made on first use.
  std::string cast_of(const std::string& tensor, bool to16) {
    const auto key = std::make_pair(tensor, to16);
    const auto found = casts_.find(key);
    if (found != casts_.end()) return found->second;
    const std::string cast = fresh_name(tensor + (to16 ? "/to_fp16" : "/to_fp32"));
    add_cast(name_of(tensor), cast, to16);
    casts_[key] = cast;
    return cast;
  }

  // 5. Rebuild the node list: before each float-computing node, the Casts its inputs need.
  void rebuild_nodes() {
    for (int i = 0; i < nodes_; ++i) {
      onnx::NodeProto node = graph_.node(i);
      const bool computing = computes(i);
      const bool want16 = computing && !keep32(i);
      for (int k = 0; k < node.input_size(); ++k) {
        const std::string& input = node.input(k);
        if (computing && floats_.count(input) && is16(input) != want16) {
          node.set_input(k, cast_of(input, want16));
        } else {
          node.set_input(k, name_of(input));
        }
      }
      if (node.op_type() == "Constant" && converted_.count(node.output(0))) {
        to_float16(*constant_value(node), what_);
      }
      for (int k = 0; k < node.output_size(); ++k) node.set_output(k, name_of(node.output(k)));
      *rebuilt_.Add() = std::move(node);
    }
    for (const auto& [output, internal] : renamed_) add_cast(internal, output, false);
    graph_.mutable_node()->Swap(&rebuilt_);
    for (const auto& name : converted_) {
      const auto tensor = initializers_.find(name);
      if (tensor != initializers_.end()) to_float16(*tensor->second, what_);
    }
    graph_.clear_value_info();
  }

  onnx::GraphProto& graph_;
  const std::string& what_;
  const int nodes_;
  std::set<std::string> floats_, graph_inputs_, sources_;  // sources: initializers and Constants
  std::set<std::string> fixed32_;  // float32 whoever makes them (LayerNormalization's statistics)
  std::set<std::string> names_;  // every tensor and node name, for new names that collide with none
  std::map<std::string, onnx::TensorProto*> initializers_;
  std::map<std::string, int> producer_;
  std::vector<bool> computes_, keep32_;         // by node index
  std::set<std::string> converted_;             // sources that become float16
  std::map<std::string, std::string> renamed_;  // graph output -> its float16 internal name
  google::protobuf::RepeatedPtrField<onnx::NodeProto> rebuilt_;
  std::map<std::pair<std::string, bool>, std::string> casts_;  // (tensor, to float16) -> cast
};

}  // namespace

void convert_to_fp16(onnx::ModelProto& model, const std::string& what) {
  Fp16Converter(model, what).run();
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
