#include "tessera/engine/native/native_model.h"

#include <onnx/onnx_pb.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <utility>

#include "tessera/common/error.h"

namespace tessera {
namespace {

using TensorIndex = std::unordered_map<std::string, const onnx::TensorProto*>;
using ExpectedShapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

std::string dims_string(const std::vector<int64_t>& dims) {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i) out += (i ? ", " : "") + std::to_string(dims[i]);
  return out + "]";
}

std::vector<int64_t> dims_of(const onnx::TensorProto& tensor) {
  return {tensor.dims().begin(), tensor.dims().end()};
}

const onnx::TensorProto& find_tensor(const TensorIndex& index, const std::string& path,
                                     const std::string& name) {
  const auto it = index.find(name);
  if (it == index.end()) {
    throw Error(path + ": initializer '" + name + "' is missing (not a Tessera v1.0 model?)");
  }
  return *it->second;
}

// The first dimension of `name`, a tensor the other shapes are derived from.
int64_t leading_dim(const TensorIndex& index, const std::string& path, const std::string& name) {
  const onnx::TensorProto& tensor = find_tensor(index, path, name);
  if (tensor.dims_size() != 1) {
    throw Error(path + ": initializer '" + name + "' has shape " + dims_string(dims_of(tensor)) +
                ", expected one dimension");
  }
  return tensor.dims(0);
}

// [batch, steps, bands + 1] of graph input `name`.
NativeBranchDims input_dims(const onnx::GraphProto& graph, const std::string& path,
                            const std::string& name) {
  for (const auto& input : graph.input()) {
    if (input.name() != name) continue;
    const auto& shape = input.type().tensor_type().shape();
    if (shape.dim_size() != 3 || shape.dim(1).dim_value() <= 0 || shape.dim(2).dim_value() < 2) {
      throw Error(path + ": input '" + name + "' is not [batch, steps, bands + 1]");
    }
    return {shape.dim(1).dim_value(), shape.dim(2).dim_value() - 1};
  }
  throw Error(path + ": input '" + name + "' is missing (not a Tessera v1.0 model?)");
}

// The int64 values of the Constant node that produces `name` (empty when there is none).
std::vector<int64_t> constant_values(const onnx::GraphProto& graph, const std::string& name) {
  for (const auto& node : graph.node()) {
    if (node.op_type() != "Constant" || node.output_size() != 1 || node.output(0) != name) continue;
    for (const auto& attribute : node.attribute()) {
      if (attribute.name() != "value" || attribute.t().data_type() != onnx::TensorProto::INT64)
        continue;
      const auto& t = attribute.t();
      if (t.int64_data_size() > 0) return {t.int64_data().begin(), t.int64_data().end()};
      std::vector<int64_t> values(t.raw_data().size() / sizeof(int64_t));
      std::memcpy(values.data(), t.raw_data().data(), values.size() * sizeof(int64_t));
      return values;
    }
  }
  return {};
}

// Attention heads: metadata `tessera.heads`, else the Reshape to [0, 0, heads, d / heads].
int64_t attention_heads(const onnx::ModelProto& model, const std::string& path, int64_t d) {
  for (const auto& entry : model.metadata_props()) {
    if (entry.key() == "tessera.heads") {
      char* end = nullptr;
      const int64_t heads = std::strtoll(entry.value().c_str(), &end, 10);
      if (*end != '\0' || heads <= 0 || d % heads != 0) {
        throw Error(path + ": metadata tessera.heads = " + entry.value() +
                    " does not divide d_model " + std::to_string(d));
      }
      return heads;
    }
  }
  for (const auto& node : model.graph().node()) {
    if (node.op_type() != "Reshape" || node.input_size() != 2) continue;
    const std::vector<int64_t> shape = constant_values(model.graph(), node.input(1));
    if (shape.size() == 4 && shape[2] > 0 && shape[2] * shape[3] == d) return shape[2];
  }
  throw Error(path +
              ": cannot find the number of attention heads (no tessera.heads metadata "
              "and no Reshape to [0, 0, heads, d_model / heads])");
}

void append_branch_shapes(ExpectedShapes& out, const std::string& b, const NativeModelDims& m,
                          const NativeBranchDims& branch) {
  const int64_t d = m.d_model;
  out.push_back({b + ".embed.0.weight", {branch.bands, d}});
  out.push_back({b + ".embed.0.bias", {d}});
  out.push_back({b + ".embed.2.weight", {d, d}});
  out.push_back({b + ".embed.2.bias", {d}});
  for (int64_t l = 0; l < m.layers; ++l) {
    const std::string p = b + ".layers." + std::to_string(l);
    out.push_back({p + ".attn.in_proj.weight", {d, 3 * d}});
    out.push_back({p + ".attn.in_proj.bias", {3 * d}});
    out.push_back({p + ".attn.out_proj.weight", {d, d}});
    out.push_back({p + ".attn.out_proj.bias", {d}});
    out.push_back({p + ".norm1.weight", {d}});
    out.push_back({p + ".norm1.bias", {d}});
    out.push_back({p + ".ffn.linear1.weight", {d, m.ffn}});
    out.push_back({p + ".ffn.linear1.bias", {m.ffn}});
    out.push_back({p + ".ffn.linear2.weight", {m.ffn, d}});
    out.push_back({p + ".ffn.linear2.bias", {d}});
    out.push_back({p + ".norm2.weight", {d}});
    out.push_back({p + ".norm2.bias", {d}});
  }
  for (const char* w : {"W_ir", "W_iz", "W_ih", "W_hr", "W_hz", "W_hh"})
    out.push_back({b + ".pool.gru." + w, {d, d}});
  for (const char* bias : {"b_r", "b_z", "b_h"}) out.push_back({b + ".pool.gru." + bias, {d}});
  out.push_back({b + ".pool.norm.weight", {d}});
  out.push_back({b + ".pool.norm.bias", {d}});
  out.push_back({b + ".pool.score.weight", {d, 1}});
  out.push_back({b + ".pool.score.bias", {1}});
}

std::vector<float> float_data(const onnx::TensorProto& tensor, const std::string& path) {
  int64_t count = 1;
  for (const int64_t d : tensor.dims()) count *= d;
  std::vector<float> values(static_cast<size_t>(count));
  if (tensor.float_data_size() == count) {
    std::copy(tensor.float_data().begin(), tensor.float_data().end(), values.begin());
  } else if (tensor.raw_data().size() == values.size() * sizeof(float)) {
    std::memcpy(values.data(), tensor.raw_data().data(), tensor.raw_data().size());
  } else {
    throw Error(path + ": initializer '" + tensor.name() + "' holds " +
                std::to_string(tensor.float_data_size()) + " floats and " +
                std::to_string(tensor.raw_data().size()) + " raw bytes, expected " +
                std::to_string(count) + " floats");
  }
  return values;
}

}  // namespace

NativeModel::NativeModel(const std::string& path) : path_(path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot be read");
  onnx::ModelProto model;
  if (!model.ParseFromIstream(&in))
    throw Error(path + ": not an ONNX model (protobuf parse failed)");
  TensorIndex index;
  for (const auto& tensor : model.graph().initializer()) index[tensor.name()] = &tensor;

  dims_.s2 = input_dims(model.graph(), path, "s2_input");
  dims_.s1 = input_dims(model.graph(), path, "s1_input");
  dims_.d_model = leading_dim(index, path, "s2.embed.0.bias");
  dims_.ffn = leading_dim(index, path, "s2.layers.0.ffn.linear1.bias");
  dims_.latent = leading_dim(index, path, "fusion.bias");
  while (index.count("s2.layers." + std::to_string(dims_.layers) + ".norm1.weight")) ++dims_.layers;
  dims_.heads = attention_heads(model, path, dims_.d_model);

  ExpectedShapes expected;
  append_branch_shapes(expected, "s2", dims_, dims_.s2);
  append_branch_shapes(expected, "s1", dims_, dims_.s1);
  expected.push_back({"fusion.weight", {2 * dims_.d_model, dims_.latent}});
  expected.push_back({"fusion.bias", {dims_.latent}});
  for (const auto& [name, shape] : expected) {
    const onnx::TensorProto& tensor = find_tensor(index, path, name);
    if (dims_of(tensor) != shape) {
      throw Error(path + ": initializer '" + name + "' has shape " + dims_string(dims_of(tensor)) +
                  ", expected " + dims_string(shape));
    }
    if (tensor.data_type() != onnx::TensorProto::FLOAT) {
      throw Error(path + ": initializer '" + name + "' has ONNX data type " +
                  std::to_string(tensor.data_type()) + ", expected float32 (1)");
    }
    tensors_[name] = float_data(tensor, path);
  }
}

const float* NativeModel::tensor(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end() || it->second.empty()) {
    throw Error(path_ + ": initializer '" + name + "' is not available");
  }
  return it->second.data();
}

void NativeModel::release(const std::string& name) {
  const auto it = tensors_.find(name);
  if (it != tensors_.end()) std::vector<float>().swap(it->second);
}

}  // namespace tessera
