#include "tessera/model/model_graph.h"

#include <cmath>

namespace tessera::model_graph {
namespace {

constexpr float kLayerNormEpsilon = 1e-5f;
constexpr float kRmsNormEpsilon = 1.1920928955078125e-07f;  // float32 machine epsilon, 2^-23

}  // namespace

onnx::NodeProto* GraphBuilder::node(const std::string& op, const std::vector<std::string>& inputs,
                                    const std::vector<std::string>& outputs) {
  onnx::NodeProto* n = graph_->add_node();
  n->set_op_type(op);
  n->set_name(outputs.front());
  for (const auto& in : inputs) n->add_input(in);
  for (const auto& out : outputs) n->add_output(out);
  return n;
}

std::string GraphBuilder::op(const std::string& op, const std::vector<std::string>& inputs,
                             const std::string& output) {
  node(op, inputs, {output});
  return output;
}

void GraphBuilder::set_int(onnx::NodeProto* n, const std::string& name, int64_t value) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}

void GraphBuilder::set_float(onnx::NodeProto* n, const std::string& name, float value) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(value);
}

void GraphBuilder::set_ints(onnx::NodeProto* n, const std::string& name,
                            const std::vector<int64_t>& values) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (const int64_t v : values) a->add_ints(v);
}

std::string GraphBuilder::const_i64(const std::vector<int64_t>& values) {
  std::string name = constant_prefix_ + "const/i64";
  for (const int64_t v : values) {
    name += '_';
    name += std::to_string(v);
  }
  if (constants_.insert(name).second) {
    onnx::TensorProto* t = constant_tensor(name);
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(values.size()));
    for (const int64_t v : values) t->add_int64_data(v);
  }
  return name;
}

std::string GraphBuilder::const_f32(const std::string& base, const std::vector<float>& values,
                                    const std::vector<int64_t>& dims) {
  const std::string name = constant_prefix_ + base;
  if (constants_.insert(name).second) {
    onnx::TensorProto* t = constant_tensor(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (const int64_t d : dims) t->add_dims(d);
    for (const float v : values) t->add_float_data(v);
  }
  return name;
}

std::string GraphBuilder::weight(const std::string& name, const std::vector<int64_t>& dims,
                                 double bound, double center) {
  onnx::TensorProto* t = graph_->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::FLOAT);
  int64_t count = 1;
  for (const int64_t d : dims) {
    t->add_dims(d);
    count *= d;
  }
  std::vector<float> values(static_cast<size_t>(count));
  weights_->fill(name, dims, bound, center, values.data());
  t->mutable_raw_data()->assign(reinterpret_cast<const char*>(values.data()),
                                values.size() * sizeof(float));
  parameters_ += count;
  return name;
}

std::string GraphBuilder::linear(const std::string& x, const std::string& prefix, int64_t in,
                                 int64_t out, const std::string& output) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  const std::string w = weight(prefix + ".weight", {in, out}, bound);
  const std::string b = weight(prefix + ".bias", {out}, bound);
  return op("Add", {op("MatMul", {x, w}, output + "/matmul"), b}, output);
}

std::string GraphBuilder::layer_norm(const std::string& x, const std::string& prefix, int64_t width,
                                     const std::string& output) {
  const std::string gamma = weight(prefix + ".weight", {width}, 0.1, 1.0);
  const std::string beta = weight(prefix + ".bias", {width}, 0.1);
  onnx::NodeProto* n = node("LayerNormalization", {x, gamma, beta}, {output});
  set_int(n, "axis", -1);
  set_float(n, "epsilon", kLayerNormEpsilon);
  return output;
}

std::string GraphBuilder::plain_layer_norm(const std::string& x, int64_t width,
                                           const std::string& output) {
  const std::vector<float> ones(static_cast<size_t>(width), 1.0f);
  const std::string scale = const_f32("const/ones_" + std::to_string(width), ones, {width});
  onnx::NodeProto* n = node("LayerNormalization", {x, scale}, {output});
  set_int(n, "axis", -1);
  set_float(n, "epsilon", kLayerNormEpsilon);
  return output;
}

onnx::TensorProto* GraphBuilder::constant_tensor(const std::string& name) {
  onnx::NodeProto* n = node("Constant", {}, {name});
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name("value");
  a->set_type(onnx::AttributeProto::TENSOR);
  onnx::TensorProto* t = a->mutable_t();
  t->set_name(name);
  return t;
}

namespace {

// u [B, T, H, hd] -> u / sqrt(mean(u^2 over hd) + eps) * gain, gain `<name>.weight` [hd].
std::string rms_norm(GraphBuilder& g, const std::string& u, const std::string& name,
                     int64_t head_dim, const std::string& output) {
  const std::string gain = g.weight(name + ".weight", {head_dim}, 0.1, 1.0);
  const std::string squared = g.op("Mul", {u, u}, output + "/squared");
  onnx::NodeProto* mean = g.node("ReduceMean", {squared}, {output + "/mean"});
  GraphBuilder::set_ints(mean, "axes", {-1});
  GraphBuilder::set_int(mean, "keepdims", 1);
  const std::string eps = g.const_f32("const/rms_eps", {kRmsNormEpsilon}, {});
  const std::string root =
      g.op("Sqrt", {g.op("Add", {output + "/mean", eps}, output + "/mean_eps")}, output + "/rms");
  return g.op("Mul", {g.op("Div", {u, root}, output + "/normed"), gain}, output);
}

}  // namespace

std::string encoder_layer(GraphBuilder& g, const BackboneShape& s, const std::string& x,
                          const std::string& p) {
  const int64_t d = s.d;
  const int64_t heads = s.heads;
  const int64_t head_dim = d / heads;
  const std::string t = p + "/";

  // Multi-head self-attention with a packed in-projection.
  const std::string qkv = g.linear(x, p + ".attn.in_proj", d, 3 * d, t + "qkv");
  onnx::NodeProto* split =
      g.node("Split", {qkv, g.const_i64({d, d, d})}, {t + "q", t + "k", t + "v"});
  GraphBuilder::set_int(split, "axis", 2);
  const std::string split_heads = g.const_i64({0, 0, heads, head_dim});
  auto heads_of = [&](const std::string& name, const std::vector<int64_t>& perm, bool norm) {
    std::string r = g.op("Reshape", {t + name, split_heads}, t + name + "_heads");
    if (norm) r = rms_norm(g, r, p + ".attn." + name + "_norm", head_dim, t + name + "_normed");
    onnx::NodeProto* n = g.node("Transpose", {r}, {t + name + "_t"});
    GraphBuilder::set_ints(n, "perm", perm);
    return t + name + "_t";
  };
  const std::string q = heads_of("q", {0, 2, 1, 3}, s.qk_norm);  // [B, H, T, hd]
  const std::string k = heads_of("k", {0, 2, 3, 1}, s.qk_norm);  // [B, H, hd, T]
  const std::string v = heads_of("v", {0, 2, 1, 3}, false);      // [B, H, T, hd]
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  const std::string q_scaled =
      g.op("Mul", {q, g.const_f32("const/attn_scale_" + std::to_string(head_dim), {scale}, {})},
           t + "q_scaled");
  const std::string scores = g.op("MatMul", {q_scaled, k}, t + "scores");
  onnx::NodeProto* softmax = g.node("Softmax", {scores}, {t + "attn"});
  GraphBuilder::set_int(softmax, "axis", -1);
  const std::string context = g.op("MatMul", {t + "attn", v}, t + "context");
  onnx::NodeProto* merge = g.node("Transpose", {context}, {t + "context_t"});
  GraphBuilder::set_ints(merge, "perm", {0, 2, 1, 3});
  const std::string merged =
      g.op("Reshape", {t + "context_t", g.const_i64({0, 0, d})}, t + "context_merged");
  const std::string attn = g.linear(merged, p + ".attn.out_proj", d, d, t + "attn_out");
  const std::string x1 =
      g.layer_norm(g.op("Add", {x, attn}, t + "residual1"), p + ".norm1", d, t + "norm1");

  // Feed-forward block.
  const std::string hidden =
      g.op("Relu", {g.linear(x1, p + ".ffn.linear1", d, s.ffn, t + "ffn1")}, t + "ffn1_relu");
  const std::string ffn = g.linear(hidden, p + ".ffn.linear2", s.ffn, d, t + "ffn2");
  return g.layer_norm(g.op("Add", {x1, ffn}, t + "residual2"), p + ".norm2", d, t + "norm2");
}

std::string backbone(GraphBuilder& g, const BackboneShape& s, const std::string& b,
                     const std::string& input) {
  const int64_t d = s.d;
  const int64_t bands = s.bands;
  const std::string t = b + "/";
  const std::string axis2 = g.const_i64({2});
  const std::string x_bands =
      g.op("Slice", {input, g.const_i64({0}), g.const_i64({bands}), axis2}, t + "bands");
  const std::string doy =
      g.op("Slice", {input, g.const_i64({bands}), g.const_i64({bands + 1}), axis2}, t + "doy");

  const std::string e0 =
      g.op("Relu", {g.linear(x_bands, b + ".embed.0", bands, d, t + "embed0")}, t + "embed0_relu");
  const std::string embedded = g.linear(e0, b + ".embed.2", d, d, t + "embed2");

  // pe[..., 2i] = sin(doy * div_i), pe[..., 2i+1] = cos(doy * div_i), interleaved by
  // stacking on a new last axis and flattening it into the channel axis.
  std::vector<float> div(static_cast<size_t>(d / 2));
  const float step32 = static_cast<float>(-(std::log(10000.0) / static_cast<double>(d)));
  for (int64_t i = 0; i < d / 2; ++i) {
    div[static_cast<size_t>(i)] =
        s.frequencies == DoyFrequencies::kDouble
            ? static_cast<float>(std::exp(static_cast<double>(2 * i) *
                                          -(std::log(10000.0) / static_cast<double>(d))))
            : std::exp(static_cast<float>(2 * i) * step32);
  }
  const std::string freq_name = s.frequencies == DoyFrequencies::kDouble
                                    ? "const/pe_div_" + std::to_string(d)
                                    : "const/pe_div32_" + std::to_string(d);
  const std::string freq = g.const_f32(freq_name, div, {d / 2});
  const std::string angle = g.op("Mul", {doy, freq}, t + "pe_angle");  // [B, T, d/2]
  const std::string axis3 = g.const_i64({3});
  const std::string sin_u =
      g.op("Unsqueeze", {g.op("Sin", {angle}, t + "pe_sin"), axis3}, t + "pe_sin_u");
  const std::string cos_u =
      g.op("Unsqueeze", {g.op("Cos", {angle}, t + "pe_cos"), axis3}, t + "pe_cos_u");
  onnx::NodeProto* stack = g.node("Concat", {sin_u, cos_u}, {t + "pe_pairs"});  // [B, T, d/2, 2]
  GraphBuilder::set_int(stack, "axis", 3);
  const std::string pe = g.op("Reshape", {t + "pe_pairs", g.const_i64({0, 0, d})}, t + "pe");
  std::string x = g.op("Add", {embedded, pe}, t + "encoded");

  for (int64_t l = 0; l < s.layers; ++l) {
    x = encoder_layer(g, s, x, b + ".layers." + std::to_string(l));
  }
  return x;
}

}  // namespace tessera::model_graph
