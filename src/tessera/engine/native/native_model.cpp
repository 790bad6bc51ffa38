#include "tessera/engine/native/native_model.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <utility>

#include "tessera/common/error.h"
#include "tessera/model/model_info.h"

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
                                     const std::string& version, const std::string& name) {
  const auto it = index.find(name);
  if (it == index.end()) {
    throw Error(path + ": initializer '" + name + "' is missing (not a Tessera " + version +
                " model?)");
  }
  return *it->second;
}

// The first dimension of `name`, a tensor the other shapes are derived from.
int64_t leading_dim(const TensorIndex& index, const std::string& path, const std::string& version,
                    const std::string& name) {
  const onnx::TensorProto& tensor = find_tensor(index, path, version, name);
  if (tensor.dims_size() != 1) {
    throw Error(path + ": initializer '" + name + "' has shape " + dims_string(dims_of(tensor)) +
                ", expected one dimension");
  }
  return tensor.dims(0);
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

// Attention heads, from the graph itself: every Reshape to [0, 0, heads, d / heads] (the heads
// split of q, k and v) must agree. Metadata `tessera.heads` (`stated`; 0 when absent) must say
// the same: a file whose metadata disagrees with the graph ONNX Runtime runs is refused.
int64_t attention_heads(const onnx::ModelProto& model, int64_t stated, const std::string& path,
                        int64_t d) {
  int64_t heads = 0;
  for (const auto& node : model.graph().node()) {
    if (node.op_type() != "Reshape" || node.input_size() != 2) continue;
    const std::vector<int64_t> shape = constant_values(model.graph(), node.input(1));
    if (shape.size() != 4 || shape[2] <= 0 || shape[2] * shape[3] != d) continue;
    if (heads != 0 && shape[2] != heads) {
      throw Error(path + ": the attention Reshapes split d_model " + std::to_string(d) + " into " +
                  std::to_string(heads) + " and " + std::to_string(shape[2]) + " heads");
    }
    heads = shape[2];
  }
  if (heads == 0) {
    throw Error(path + ": cannot find the number of attention heads (no Reshape to [0, 0, heads, " +
                "d_model / heads])");
  }
  if (stated != 0 && stated != heads) {
    throw Error(path + ": metadata tessera.heads = " + std::to_string(stated) +
                " disagrees with the graph, whose attention has " + std::to_string(heads) +
                " heads");
  }
  return heads;
}

void append_pooling_shapes(ExpectedShapes& out, const std::string& b, Pooling pooling, int64_t d) {
  if (pooling == Pooling::kTorchGru) {
    out.push_back({b + ".pool.rnn.weight_ih", {d, 3 * d}});
    out.push_back({b + ".pool.rnn.weight_hh", {d, 3 * d}});
    out.push_back({b + ".pool.rnn.bias_ih", {3 * d}});
    out.push_back({b + ".pool.rnn.bias_hh", {3 * d}});
  } else if (pooling == Pooling::kCustomGru) {
    for (const char* w : {"W_ir", "W_iz", "W_ih", "W_hr", "W_hz", "W_hh"})
      out.push_back({b + ".pool.gru." + w, {d, d}});
    for (const char* bias : {"b_r", "b_z", "b_h"}) out.push_back({b + ".pool.gru." + bias, {d}});
    out.push_back({b + ".pool.norm.weight", {d}});
    out.push_back({b + ".pool.norm.bias", {d}});
  }
  out.push_back({b + ".pool.score.weight", {d, 1}});
  out.push_back({b + ".pool.score.bias", {1}});
}

void append_branch_shapes(ExpectedShapes& out, const std::string& b, const ModelDescription& model,
                          const NativeModelDims& m, const NativeBranchDims& branch) {
  const int64_t d = m.d_model;
  out.push_back({b + ".embed.0.weight", {branch.bands, d}});
  out.push_back({b + ".embed.0.bias", {d}});
  out.push_back({b + ".embed.2.weight", {d, d}});
  out.push_back({b + ".embed.2.bias", {d}});
  for (int64_t l = 0; l < m.layers; ++l) {
    const std::string p = b + ".layers." + std::to_string(l);
    out.push_back({p + ".attn.in_proj.weight", {d, 3 * d}});
    out.push_back({p + ".attn.in_proj.bias", {3 * d}});
    if (model.qk_norm) {
      out.push_back({p + ".attn.q_norm.weight", {d / m.heads}});
      out.push_back({p + ".attn.k_norm.weight", {d / m.heads}});
    }
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
  append_pooling_shapes(out, b, model.pooling, d);
}

void append_fusion_shapes(ExpectedShapes& out, const NativeModelDims& m) {
  const int64_t in = 2 * m.d_model;
  if (m.fusion_hidden == 0) {
    out.push_back({"fusion.weight", {in, m.latent}});
    out.push_back({"fusion.bias", {m.latent}});
    return;
  }
  out.push_back({"fusion.linear1.weight", {in, m.fusion_hidden}});
  out.push_back({"fusion.linear1.bias", {m.fusion_hidden}});
  out.push_back({"fusion.norm.weight", {m.fusion_hidden}});
  out.push_back({"fusion.norm.bias", {m.fusion_hidden}});
  out.push_back({"fusion.linear2.weight", {m.fusion_hidden, m.fusion_width}});
  out.push_back({"fusion.linear2.bias", {m.fusion_width}});
}

// The elements of a float32 tensor, after checking that it holds them (as float_data or as raw
// bytes); throws Error naming the file and the initializer.
int64_t checked_float_count(const onnx::TensorProto& tensor, const std::string& path) {
  int64_t count = 1;
  for (const int64_t d : tensor.dims()) count *= d;
  const bool holds = tensor.float_data_size() == count ||
                     tensor.raw_data().size() == static_cast<size_t>(count) * sizeof(float);
  if (!holds) {
    throw Error(path + ": initializer '" + tensor.name() + "' holds " +
                std::to_string(tensor.float_data_size()) + " floats and " +
                std::to_string(tensor.raw_data().size()) + " raw bytes, expected " +
                std::to_string(count) + " floats");
  }
  return count;
}

std::vector<float> float_data(const onnx::TensorProto& tensor, const std::string& path) {
  std::vector<float> values(static_cast<size_t>(checked_float_count(tensor, path)));
  if (tensor.float_data_size() == static_cast<int64_t>(values.size())) {
    std::copy(tensor.float_data().begin(), tensor.float_data().end(), values.begin());
  } else {
    std::memcpy(values.data(), tensor.raw_data().data(), tensor.raw_data().size());
  }
  return values;
}

// The widths: steps and bands from the inputs, the output width from the output, the rest from
// the initializers' shapes and the attention Reshapes.
NativeModelDims read_widths(const onnx::ModelProto& proto, const TensorIndex& index,
                            const ModelDescription& model, const ModelShape& shape) {
  const std::string& path = model.path;
  const std::string version = version_name(model.version);
  NativeModelDims dims;
  dims.s2 = {shape.s2_steps, shape.s2_features - 1};
  dims.s1 = {shape.s1_steps, shape.s1_features - 1};
  dims.latent = shape.output_dim;
  dims.d_model = leading_dim(index, path, version, "s2.embed.0.bias");
  dims.ffn = leading_dim(index, path, version, "s2.layers.0.ffn.linear1.bias");
  if (model.mlp_fusion) {
    dims.fusion_hidden = leading_dim(index, path, version, "fusion.linear1.bias");
    dims.fusion_width = leading_dim(index, path, version, "fusion.linear2.bias");
  }
  if (dims.fusion_hidden > 0 &&
      (dims.latent > dims.fusion_width || (model.final_norm && dims.latent != dims.fusion_width)))
    throw Error(path + ": output width " + std::to_string(dims.latent) +
                " does not fit the fusion width " + std::to_string(dims.fusion_width));
  while (index.count("s2.layers." + std::to_string(dims.layers) + ".norm1.weight")) ++dims.layers;
  dims.heads = attention_heads(proto, model.heads, path, dims.d_model);
  return dims;
}

}  // namespace

NativeModel::NativeModel(const ModelDescription& model, Weights weights)
    : path_(model.path), description_(model) {
  const std::string& path = path_;
  const ModelShape& shape = model.io();
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot be read");
  onnx::ModelProto proto;
  if (!proto.ParseFromIstream(&in))
    throw Error(path + ": not an ONNX model (protobuf parse failed)");
  check_finite_weights(proto, path);
  TensorIndex index;
  for (const auto& tensor : proto.graph().initializer()) index[tensor.name()] = &tensor;
  dims_ = read_widths(proto, index, model, shape);
  ExpectedShapes expected;
  append_branch_shapes(expected, "s2", model, dims_, dims_.s2);
  append_branch_shapes(expected, "s1", model, dims_, dims_.s1);
  append_fusion_shapes(expected, dims_);
  const std::string version = version_name(model.version);
  for (const auto& [name, wanted] : expected) {
    const onnx::TensorProto& tensor = find_tensor(index, path, version, name);
    if (dims_of(tensor) != wanted) {
      throw Error(path + ": initializer '" + name + "' has shape " + dims_string(dims_of(tensor)) +
                  ", expected " + dims_string(wanted));
    }
    if (tensor.data_type() != onnx::TensorProto::FLOAT) {
      throw Error(path + ": initializer '" + name + "' has ONNX data type " +
                  std::to_string(tensor.data_type()) + ", expected float32 (1)");
    }
    if (weights == Weights::kKeep) {
      tensors_[name] = float_data(tensor, path);
    } else {
      checked_float_count(tensor, path);
    }
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
