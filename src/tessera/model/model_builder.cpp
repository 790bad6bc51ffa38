#include "tessera/model/model_builder.h"

#include <onnx/onnx_pb.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

#include "tessera/common/error.h"
#include "tessera/common/version.h"

namespace tessera {
namespace {

static_assert(std::endian::native == std::endian::little, "raw_data is written little-endian");

constexpr int64_t kOpset = 17;
constexpr int64_t kIrVersion = 8;
constexpr float kLayerNormEpsilon = 1e-5f;
constexpr double kMaxParameters = 500'000'000.0;  // 2 GB protobuf limit, with room to spare

uint64_t splitmix64(uint64_t& state) {
  state += 0x9E3779B97F4A7C15ULL;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t fnv1a(const std::string& text) {
  uint64_t hash = 0xCBF29CE484222325ULL;
  for (const unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001B3ULL;
  }
  return hash;
}

// Parameter and FLOP counts in double, so that absurd configs cannot overflow before the
// size check. Mirrors exactly what build_branch()/build_graph() emit.
struct Counts {
  double parameters = 0.0;
  double flops = 0.0;
};

Counts count_branch(const ModelConfig& c, double steps, double bands) {
  const double d = c.d_model;
  const double ffn = c.ffn;
  const double t = steps;
  Counts n;
  // embedding: Linear(bands -> d), Linear(d -> d)
  n.parameters += bands * d + d + d * d + d;
  n.flops += 2.0 * t * (bands * d + d * d);
  // encoder layers: in-proj, out-proj, FFN, two LayerNorms; attention QK^T and AV
  n.parameters +=
      c.layers * (3.0 * d * d + 3.0 * d + d * d + d + 2.0 * d * ffn + ffn + d + 4.0 * d);
  n.flops += c.layers * (2.0 * t * (3.0 * d * d + d * d + 2.0 * d * ffn) + 2.0 * 2.0 * t * t * d);
  // pooling: six GRU matrices + three biases, LayerNorm, Linear(d -> 1); the weighted sum
  n.parameters += 6.0 * d * d + 3.0 * d + 2.0 * d + d + 1.0;
  n.flops += 2.0 * t * 6.0 * d * d + 2.0 * t * d + 2.0 * t * d;
  return n;
}

Counts count_all(const ModelConfig& c) {
  const Counts s2 = count_branch(c, c.s2_steps, c.s2_bands);
  const Counts s1 = count_branch(c, c.s1_steps, c.s1_bands);
  Counts n;
  n.parameters = s2.parameters + s1.parameters + 2.0 * c.d_model * c.latent + c.latent;
  n.flops = s2.flops + s1.flops + 2.0 * 2.0 * c.d_model * c.latent;
  return n;
}

// Owns nothing: appends nodes, Constant nodes and initializers to `graph`. Invariants: every
// node is named after its first output; each Constant is emitted once (cached by name); the
// initializers are exactly the parameters, counted in `parameters_`.
class GraphBuilder {
 public:
  GraphBuilder(onnx::GraphProto* graph, uint64_t seed) : graph_(graph), seed_(seed) {}

  onnx::NodeProto* node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs) {
    onnx::NodeProto* n = graph_->add_node();
    n->set_op_type(op);
    n->set_name(outputs.front());
    for (const auto& in : inputs) n->add_input(in);
    for (const auto& out : outputs) n->add_output(out);
    return n;
  }

  std::string op(const std::string& op, const std::vector<std::string>& inputs,
                 const std::string& output) {
    node(op, inputs, {output});
    return output;
  }

  static void set_int(onnx::NodeProto* n, const std::string& name, int64_t value) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(value);
  }

  static void set_float(onnx::NodeProto* n, const std::string& name, float value) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(value);
  }

  static void set_ints(onnx::NodeProto* n, const std::string& name,
                       const std::vector<int64_t>& values) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (const int64_t v : values) a->add_ints(v);
  }

  // A 1-D int64 Constant (shapes, axes, slice bounds), shared by every user of the same values.
  std::string const_i64(const std::vector<int64_t>& values) {
    std::string name = "const/i64";
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

  // A float Constant of shape `dims` (empty: a scalar), emitted once under `name`.
  std::string const_f32(const std::string& name, const std::vector<float>& values,
                        const std::vector<int64_t>& dims) {
    if (constants_.insert(name).second) {
      onnx::TensorProto* t = constant_tensor(name);
      t->set_data_type(onnx::TensorProto::FLOAT);
      for (const int64_t d : dims) t->add_dims(d);
      for (const float v : values) t->add_float_data(v);
    }
    return name;
  }

  // A parameter: `center` + U[-bound, bound), drawn from the stream of (seed, name).
  std::string weight(const std::string& name, const std::vector<int64_t>& dims, double bound,
                     double center = 0.0) {
    onnx::TensorProto* t = graph_->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    int64_t count = 1;
    for (const int64_t d : dims) {
      t->add_dims(d);
      count *= d;
    }
    std::vector<float> values(static_cast<size_t>(count));
    uint64_t state = seed_ ^ fnv1a(name);
    splitmix64(state);
    for (float& v : values) {
      const double unit = static_cast<double>(splitmix64(state) >> 40) * 0x1.0p-24;  // [0, 1)
      v = static_cast<float>(center + bound * (2.0 * unit - 1.0));
    }
    t->mutable_raw_data()->assign(reinterpret_cast<const char*>(values.data()),
                                  values.size() * sizeof(float));
    parameters_ += count;
    return name;
  }

  // y = x @ W + b with W [in, out] named `<prefix>.weight` and b [out] named `<prefix>.bias`.
  std::string linear(const std::string& x, const std::string& prefix, int64_t in, int64_t out,
                     const std::string& output) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    const std::string w = weight(prefix + ".weight", {in, out}, bound);
    const std::string b = weight(prefix + ".bias", {out}, bound);
    return op("Add", {op("MatMul", {x, w}, output + "/matmul"), b}, output);
  }

  // LayerNormalization over the last axis, weight `<prefix>.weight`, bias `<prefix>.bias`.
  std::string layer_norm(const std::string& x, const std::string& prefix, int64_t width,
                         const std::string& output) {
    const std::string gamma = weight(prefix + ".weight", {width}, 0.1, 1.0);
    const std::string beta = weight(prefix + ".bias", {width}, 0.1);
    onnx::NodeProto* n = node("LayerNormalization", {x, gamma, beta}, {output});
    set_int(n, "axis", -1);
    set_float(n, "epsilon", kLayerNormEpsilon);
    return output;
  }

  int64_t parameters() const { return parameters_; }

 private:
  onnx::TensorProto* constant_tensor(const std::string& name) {
    onnx::NodeProto* n = node("Constant", {}, {name});
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name("value");
    a->set_type(onnx::AttributeProto::TENSOR);
    onnx::TensorProto* t = a->mutable_t();
    t->set_name(name);
    return t;
  }

  onnx::GraphProto* graph_;
  uint64_t seed_;
  std::set<std::string> constants_;
  int64_t parameters_ = 0;
};

// x [B, T, d] -> x [B, T, d]: one post-norm transformer encoder layer.
std::string encoder_layer(GraphBuilder& g, const ModelConfig& c, const std::string& x,
                          const std::string& p) {
  const int64_t d = c.d_model;
  const int64_t heads = c.heads;
  const int64_t head_dim = d / heads;
  const std::string t = p + "/";

  // Multi-head self-attention with a packed in-projection.
  const std::string qkv = g.linear(x, p + ".attn.in_proj", d, 3 * d, t + "qkv");
  onnx::NodeProto* split =
      g.node("Split", {qkv, g.const_i64({d, d, d})}, {t + "q", t + "k", t + "v"});
  GraphBuilder::set_int(split, "axis", 2);
  const std::string split_heads = g.const_i64({0, 0, heads, head_dim});
  auto heads_of = [&](const std::string& name, const std::vector<int64_t>& perm) {
    const std::string r = g.op("Reshape", {t + name, split_heads}, t + name + "_heads");
    onnx::NodeProto* n = g.node("Transpose", {r}, {t + name + "_t"});
    GraphBuilder::set_ints(n, "perm", perm);
    return t + name + "_t";
  };
  const std::string q = heads_of("q", {0, 2, 1, 3});  // [B, H, T, hd]
  const std::string k = heads_of("k", {0, 2, 3, 1});  // [B, H, hd, T]
  const std::string v = heads_of("v", {0, 2, 1, 3});  // [B, H, T, hd]
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
      g.op("Relu", {g.linear(x1, p + ".ffn.linear1", d, c.ffn, t + "ffn1")}, t + "ffn1_relu");
  const std::string ffn = g.linear(hidden, p + ".ffn.linear2", c.ffn, d, t + "ffn2");
  return g.layer_norm(g.op("Add", {x1, ffn}, t + "residual2"), p + ".norm2", d, t + "norm2");
}

// x [B, T, d] -> pooled [B, d]: GRU-context attention pooling over time (MODEL.md step 4).
std::string attention_pool(GraphBuilder& g, const ModelConfig& c, const std::string& x,
                           int64_t steps, const std::string& p) {
  const int64_t d = c.d_model;
  const double bound = 1.0 / std::sqrt(static_cast<double>(d));
  const std::string t = p + "/";
  const std::string gru = p + ".gru.";
  const std::string w_ir = g.weight(gru + "W_ir", {d, d}, bound);
  const std::string w_iz = g.weight(gru + "W_iz", {d, d}, bound);
  const std::string w_ih = g.weight(gru + "W_ih", {d, d}, bound);
  const std::string w_hr = g.weight(gru + "W_hr", {d, d}, bound);
  const std::string w_hz = g.weight(gru + "W_hz", {d, d}, bound);
  const std::string w_hh = g.weight(gru + "W_hh", {d, d}, bound);
  const std::string b_r = g.weight(gru + "b_r", {d}, bound);
  const std::string b_z = g.weight(gru + "b_z", {d}, bound);
  const std::string b_h = g.weight(gru + "b_h", {d}, bound);

  // The input projections of all steps at once ([B, T, d] each, bias included), then one
  // [B, 1, d] slice per step. The hidden state stays [B, 1, d] throughout.
  auto per_step = [&](const std::string& w, const std::string& b, const std::string& name) {
    const std::string projected =
        g.op("Add", {g.op("MatMul", {x, w}, t + name + "_matmul"), b}, t + name);
    std::vector<std::string> outputs;
    for (int64_t s = 0; s < steps; ++s) outputs.push_back(t + name + "_" + std::to_string(s));
    onnx::NodeProto* split = g.node("Split", {projected}, outputs);
    GraphBuilder::set_int(split, "axis", 1);
    return outputs;
  };
  const std::vector<std::string> xr = per_step(w_ir, b_r, "xr");
  const std::vector<std::string> xz = per_step(w_iz, b_z, "xz");
  const std::vector<std::string> xh = per_step(w_ih, b_h, "xh");

  std::vector<std::string> states;
  std::string h;
  for (int64_t s = 0; s < steps; ++s) {
    const std::string ts = t + "step" + std::to_string(s) + "/";
    if (s == 0) {
      // h0 = 0: every hidden-state product is exactly zero, so h1 = z * tanh(x_h).
      const std::string z = g.op("Sigmoid", {xz[0]}, ts + "z");
      const std::string n = g.op("Tanh", {xh[0]}, ts + "n");
      h = g.op("Mul", {z, n}, ts + "h");
    } else {
      const std::string r =
          g.op("Sigmoid", {g.op("Add", {xr[s], g.op("MatMul", {h, w_hr}, ts + "hr")}, ts + "r_in")},
               ts + "r");
      const std::string z =
          g.op("Sigmoid", {g.op("Add", {xz[s], g.op("MatMul", {h, w_hz}, ts + "hz")}, ts + "z_in")},
               ts + "z");
      const std::string rh = g.op("Mul", {r, h}, ts + "rh");
      const std::string n =
          g.op("Tanh", {g.op("Add", {xh[s], g.op("MatMul", {rh, w_hh}, ts + "hn")}, ts + "n_in")},
               ts + "n");
      // (1 - z) * h + z * n, written as h + z * (n - h)
      const std::string delta = g.op("Mul", {z, g.op("Sub", {n, h}, ts + "n_minus_h")}, ts + "dh");
      h = g.op("Add", {h, delta}, ts + "h");
    }
    states.push_back(h);
  }

  onnx::NodeProto* concat = g.node("Concat", states, {t + "states"});  // [B, T, d]
  GraphBuilder::set_int(concat, "axis", 1);
  const std::string context = g.layer_norm(t + "states", p + ".norm", d, t + "context");
  const std::string score = g.linear(context, p + ".score", d, 1, t + "score");  // [B, T, 1]
  onnx::NodeProto* softmax = g.node("Softmax", {score}, {t + "weights"});
  GraphBuilder::set_int(softmax, "axis", 1);
  const std::string weighted = g.op("Mul", {t + "weights", x}, t + "weighted");
  onnx::NodeProto* sum = g.node("ReduceSum", {weighted, g.const_i64({1})}, {t + "pooled"});
  GraphBuilder::set_int(sum, "keepdims", 0);
  return t + "pooled";
}

// input [B, T, bands + 1] -> pooled [B, d]: one branch (embedding, encoding, encoder, pooling).
std::string branch(GraphBuilder& g, const ModelConfig& c, const std::string& b,
                   const std::string& input, int64_t steps, int64_t bands) {
  const int64_t d = c.d_model;
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
  for (int64_t i = 0; i < d / 2; ++i) {
    div[static_cast<size_t>(i)] = static_cast<float>(
        std::exp(static_cast<double>(2 * i) * -(std::log(10000.0) / static_cast<double>(d))));
  }
  const std::string freq = g.const_f32("const/pe_div_" + std::to_string(d), div, {d / 2});
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

  for (int l = 0; l < c.layers; ++l) {
    x = encoder_layer(g, c, x, b + ".layers." + std::to_string(l));
  }
  return attention_pool(g, c, x, steps, b + ".pool");
}

void add_io(onnx::ValueInfoProto* info, const std::string& name,
            const std::vector<int64_t>& fixed_dims) {
  info->set_name(name);
  onnx::TypeProto_Tensor* tensor = info->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(onnx::TensorProto::FLOAT);
  onnx::TensorShapeProto* shape = tensor->mutable_shape();
  shape->add_dim()->set_dim_param("batch");
  for (const int64_t d : fixed_dims) shape->add_dim()->set_dim_value(d);
}

void add_metadata(onnx::ModelProto& model, const std::string& key, int64_t value) {
  onnx::StringStringEntryProto* entry = model.add_metadata_props();
  entry->set_key("tessera." + key);
  entry->set_value(std::to_string(value));
}

void build_model(const ModelConfig& c, onnx::ModelProto& model) {
  model.set_ir_version(kIrVersion);
  model.set_producer_name("tessera");
  model.set_producer_version(kVersion);
  model.set_doc_string(
      "Tessera-architecture model with seeded random weights (tessera make-model)");
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpset);
  add_metadata(model, "d_model", c.d_model);
  add_metadata(model, "layers", c.layers);
  add_metadata(model, "heads", c.heads);
  add_metadata(model, "ffn", c.ffn);
  add_metadata(model, "s2_steps", c.s2_steps);
  add_metadata(model, "s1_steps", c.s1_steps);
  add_metadata(model, "s2_bands", c.s2_bands);
  add_metadata(model, "s1_bands", c.s1_bands);
  add_metadata(model, "latent", c.latent);
  onnx::StringStringEntryProto* seed = model.add_metadata_props();
  seed->set_key("tessera.seed");
  seed->set_value(std::to_string(c.seed));

  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("tessera");
  add_io(graph->add_input(), "s2_input", {c.s2_steps, c.s2_bands + 1});
  add_io(graph->add_input(), "s1_input", {c.s1_steps, c.s1_bands + 1});
  add_io(graph->add_output(), "output", {c.latent});

  GraphBuilder g(graph, c.seed);
  const std::string s2 = branch(g, c, "s2", "s2_input", c.s2_steps, c.s2_bands);
  const std::string s1 = branch(g, c, "s1", "s1_input", c.s1_steps, c.s1_bands);
  onnx::NodeProto* fuse = g.node("Concat", {s2, s1}, {"fusion/input"});  // [B, 2d]
  GraphBuilder::set_int(fuse, "axis", 1);
  g.linear("fusion/input", "fusion", 2 * static_cast<int64_t>(c.d_model), c.latent, "output");
}

}  // namespace

void validate_model_config(const ModelConfig& c) {
  const std::pair<const char*, int> fields[] = {
      {"d_model", c.d_model},   {"layers", c.layers},     {"heads", c.heads},
      {"ffn", c.ffn},           {"s2_steps", c.s2_steps}, {"s1_steps", c.s1_steps},
      {"s2_bands", c.s2_bands}, {"s1_bands", c.s1_bands}, {"latent", c.latent}};
  for (const auto& [name, value] : fields) {
    if (value <= 0) {
      throw UsageError("model config: " + std::string(name) + " must be positive (got " +
                       std::to_string(value) + ")");
    }
  }
  if (c.d_model % c.heads != 0) {
    throw UsageError("model config: d_model (" + std::to_string(c.d_model) +
                     ") must be divisible by heads (" + std::to_string(c.heads) + ")");
  }
  if (c.d_model % 2 != 0) {
    throw UsageError("model config: d_model (" + std::to_string(c.d_model) +
                     ") must be even (the day-of-year encoding pairs sin and cos)");
  }
  const double parameters = count_all(c).parameters;
  if (parameters > kMaxParameters) {
    throw UsageError("model config: " + std::to_string(static_cast<long long>(parameters)) +
                     " parameters do not fit one ONNX file (at most 500,000,000)");
  }
}

ModelStats count_model(const ModelConfig& config) {
  validate_model_config(config);
  const Counts counts = count_all(config);
  ModelStats stats;
  stats.parameters = static_cast<int64_t>(counts.parameters);
  stats.gflop_per_pixel = counts.flops / 1e9;
  stats.nodes = 0;
  stats.bytes = 4 * stats.parameters;
  return stats;
}

ModelStats write_model(const ModelConfig& config, const std::string& path) {
  ModelStats stats = count_model(config);
  onnx::ModelProto model;
  build_model(config, model);
  stats.nodes = model.graph().node_size();

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  auto fail = [&](const std::string& what) {
    std::remove(tmp.c_str());
    throw Error("cannot write model " + path + ": " + what);
  };
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(std::strerror(errno));
    if (!model.SerializeToOstream(&out)) fail("serialisation failed");
    out.close();
    if (out.fail()) fail(std::strerror(errno));
  }
  std::error_code ec;
  const auto size = std::filesystem::file_size(tmp, ec);
  if (ec) fail(ec.message());
  stats.bytes = static_cast<int64_t>(size);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail(std::strerror(errno));
  return stats;
}

std::string format_thousands(int64_t value) {
  const bool negative = value < 0;
  std::string digits = std::to_string(negative ? -value : value);
  std::string out;
  const size_t n = digits.size();
  for (size_t i = 0; i < n; ++i) {
    if (i > 0 && (n - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return negative ? "-" + out : out;
}

std::string format_model_stats(const ModelStats& stats) {
  char gflop[32];
  std::snprintf(gflop, sizeof gflop, "%.3f", stats.gflop_per_pixel);
  char megabytes[32];
  std::snprintf(megabytes, sizeof megabytes, "%.1f", static_cast<double>(stats.bytes) / 1e6);
  std::string text =
      format_thousands(stats.parameters) + " parameters, " + gflop + " GFLOP/pixel, ";
  if (stats.nodes > 0) text += format_thousands(stats.nodes) + " nodes, ";
  return text + megabytes + " MB";
}

}  // namespace tessera
