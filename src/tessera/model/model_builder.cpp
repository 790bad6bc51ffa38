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
#include "tessera/common/fnv1a.h"
#include "tessera/common/version.h"
#include "tessera/model/model_graph.h"
#include "tessera/model/model_metadata.h"

namespace tessera {
namespace {

using model_graph::BackboneShape;
using model_graph::DoyFrequencies;
using model_graph::GraphBuilder;

static_assert(std::endian::native == std::endian::little, "raw_data is written little-endian");

constexpr int64_t kOpset = 17;
constexpr int64_t kIrVersion = 8;
constexpr double kMaxParameters = 500'000'000.0;  // 2 GB protobuf limit, with room to spare

uint64_t splitmix64(uint64_t& state) {
  state += 0x9E3779B97F4A7C15ULL;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Parameter and FLOP counts in double, so that absurd configs cannot overflow before the
// size check. Mirrors exactly what the graph functions below emit.
struct Counts {
  double parameters = 0.0;
  double flops = 0.0;
};

Counts count_branch(const ArchConfig& a, double steps, double bands) {
  const ModelConfig& c = a.shape;
  const double d = c.d_model;
  const double ffn = c.ffn;
  const double t = steps;
  Counts n;
  // embedding: Linear(bands -> d), Linear(d -> d)
  n.parameters += bands * d + d + d * d + d;
  n.flops += 2.0 * t * (bands * d + d * d);
  // encoder layers: in-proj, out-proj, FFN, two LayerNorms (QK-norm: two gains of d / heads);
  // attention QK^T and AV
  n.parameters +=
      c.layers * (3.0 * d * d + 3.0 * d + d * d + d + 2.0 * d * ffn + ffn + d + 4.0 * d);
  if (a.qk_norm) n.parameters += c.layers * 2.0 * d / c.heads;
  n.flops += c.layers * (2.0 * t * (3.0 * d * d + d * d + 2.0 * d * ffn) + 2.0 * 2.0 * t * t * d);
  switch (a.version) {
    case ModelVersion::kV1_0:
    case ModelVersion::kV1_1:  // six GRU matrices + three biases, LayerNorm, Linear(d -> 1)
      n.parameters += 6.0 * d * d + 3.0 * d + 2.0 * d + d + 1.0;
      n.flops += 2.0 * t * 6.0 * d * d + 2.0 * t * d + 2.0 * t * d;
      break;
    case ModelVersion::kV1_0Early:  // nn.GRU: two [3d, d] matrices, two [3d] biases; Linear(d -> 1)
      n.parameters += 6.0 * d * d + 6.0 * d + d + 1.0;
      n.flops += 2.0 * t * 6.0 * d * d + 2.0 * t * d + 2.0 * t * d;
      break;
    case ModelVersion::kV2:  // Linear(d -> 1) on the encoder outputs
      n.parameters += d + 1.0;
      n.flops += 2.0 * t * d + 2.0 * t * d;
      break;
  }
  return n;
}

Counts count_all(const ArchConfig& a) {
  const ModelConfig& c = a.shape;
  const Counts s2 = count_branch(a, c.s2_steps, c.s2_bands);
  const Counts s1 = count_branch(a, c.s1_steps, c.s1_bands);
  const double in = 2.0 * c.d_model;
  Counts n;
  n.parameters = s2.parameters + s1.parameters;
  n.flops = s2.flops + s1.flops;
  if (a.fusion_hidden == 0) {
    n.parameters += in * c.latent + c.latent;
    n.flops += 2.0 * in * c.latent;
  } else {
    const double h = a.fusion_hidden;
    const double w = a.fusion_width;
    n.parameters += in * h + h + 2.0 * h + h * w + w;
    n.flops += 2.0 * (in * h + h * w);
  }
  return n;
}

BackboneShape backbone_shape(const ArchConfig& a, int bands) {
  BackboneShape s;
  s.d = a.shape.d_model;
  s.layers = a.shape.layers;
  s.heads = a.shape.heads;
  s.ffn = a.shape.ffn;
  s.bands = bands;
  s.qk_norm = a.qk_norm;
  s.frequencies =
      a.version == ModelVersion::kV1_0 ? DoyFrequencies::kDouble : DoyFrequencies::kFloat32;
  return s;
}

// pooled s2, s1 [B, d] -> `fusion/input` [B, 2d] (s2 first).
std::string concat_branches(GraphBuilder& g, const std::string& s2, const std::string& s1) {
  onnx::NodeProto* fuse = g.node("Concat", {s2, s1}, {"fusion/input"});
  GraphBuilder::set_int(fuse, "axis", 1);
  return "fusion/input";
}

// v1.0 (MODEL.md): custom GRU pooling unrolled over the fixed steps, Linear fusion.
void build_v1_0(GraphBuilder& g, const ArchConfig& a) {
  const ModelConfig& c = a.shape;
  const std::string s2 = model_graph::custom_gru_pool(
      g, c.d_model, model_graph::backbone(g, backbone_shape(a, c.s2_bands), "s2", "s2_input"),
      c.s2_steps, "s2.pool");
  const std::string s1 = model_graph::custom_gru_pool(
      g, c.d_model, model_graph::backbone(g, backbone_shape(a, c.s1_bands), "s1", "s1_input"),
      c.s1_steps, "s1.pool");
  model_graph::linear_fusion(g, concat_branches(g, s2, s1), 2 * int64_t{c.d_model}, c.latent,
                             "output");
}

// v1.0 early: nn.GRU pooling (a Scan), Linear fusion.
void build_v1_0_early(GraphBuilder& g, const ArchConfig& a) {
  const ModelConfig& c = a.shape;
  const std::string s2 = model_graph::torch_gru_pool(
      g, c.d_model, model_graph::backbone(g, backbone_shape(a, c.s2_bands), "s2", "s2_input"),
      "s2.pool");
  const std::string s1 = model_graph::torch_gru_pool(
      g, c.d_model, model_graph::backbone(g, backbone_shape(a, c.s1_bands), "s1", "s1_input"),
      "s1.pool");
  model_graph::linear_fusion(g, concat_branches(g, s2, s1), 2 * int64_t{c.d_model}, c.latent,
                             "output");
}

// v1.1: custom GRU pooling (a Scan), MLP fusion, the first `latent` outputs kept.
void build_v1_1(GraphBuilder& g, const ArchConfig& a) {
  const ModelConfig& c = a.shape;
  const std::string s2 = model_graph::custom_gru_pool(
      g, c.d_model, model_graph::backbone(g, backbone_shape(a, c.s2_bands), "s2", "s2_input"), 0,
      "s2.pool");
  const std::string s1 = model_graph::custom_gru_pool(
      g, c.d_model, model_graph::backbone(g, backbone_shape(a, c.s1_bands), "s1", "s1_input"), 0,
      "s1.pool");
  const std::string fused =
      model_graph::mlp_fusion(g, concat_branches(g, s2, s1), 2 * int64_t{c.d_model},
                              a.fusion_hidden, a.fusion_width, "fusion/output");
  g.op("Slice", {fused, g.const_i64({0}), g.const_i64({c.latent}), g.const_i64({1})}, "output");
}

// v2 student: attention-only pooling, MLP fusion, a LayerNorm without parameters.
void build_v2(GraphBuilder& g, const ArchConfig& a) {
  const ModelConfig& c = a.shape;
  const std::string s2 = model_graph::attention_pool(
      g, c.d_model, model_graph::backbone(g, backbone_shape(a, c.s2_bands), "s2", "s2_input"),
      "s2.pool");
  const std::string s1 = model_graph::attention_pool(
      g, c.d_model, model_graph::backbone(g, backbone_shape(a, c.s1_bands), "s1", "s1_input"),
      "s1.pool");
  const std::string fused =
      model_graph::mlp_fusion(g, concat_branches(g, s2, s1), 2 * int64_t{c.d_model},
                              a.fusion_hidden, a.fusion_width, "fusion/output");
  g.plain_layer_norm(fused, a.fusion_width, "output");
}

// steps > 0: a fixed dimension; 0: the symbolic dimension `symbol`.
void add_io(onnx::ValueInfoProto* info, const std::string& name, int64_t steps,
            const std::string& symbol, int64_t width) {
  info->set_name(name);
  onnx::TypeProto_Tensor* tensor = info->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(onnx::TensorProto::FLOAT);
  onnx::TensorShapeProto* shape = tensor->mutable_shape();
  shape->add_dim()->set_dim_param("batch");
  if (steps > 0) {
    shape->add_dim()->set_dim_value(steps);
  } else if (!symbol.empty()) {
    shape->add_dim()->set_dim_param(symbol);
  }
  shape->add_dim()->set_dim_value(width);
}

void add_metadata(onnx::ModelProto& model, const std::string& key, const std::string& value) {
  onnx::StringStringEntryProto* entry = model.add_metadata_props();
  entry->set_key(key);
  entry->set_value(value);
}

void add_family_metadata(onnx::ModelProto& model, const ArchConfig& a) {
  namespace key = metadata_key;
  add_metadata(model, key::kVersion, version_name(a.version));
  add_metadata(model, key::kStats, a.stats);
  add_metadata(model, key::kOutputDim, std::to_string(a.shape.latent));
  const char* pooling = a.version == ModelVersion::kV1_0Early ? "gru"
                        : a.version == ModelVersion::kV2      ? "attention"
                                                              : "custom_gru";
  add_metadata(model, key::kPooling, pooling);
  add_metadata(model, key::kFusion, a.fusion_hidden > 0 ? "mlp" : "linear");
  add_metadata(model, key::kFusionHidden, std::to_string(a.fusion_hidden));
  add_metadata(model, key::kFusionWidth, std::to_string(a.fusion_width));
  add_metadata(model, key::kFinalNorm, a.version == ModelVersion::kV2 ? "1" : "0");
  add_metadata(model, key::kQkNorm, a.qk_norm ? "1" : "0");
}

void build_model(const ArchConfig& a, WeightSource& weights,
                 const std::pair<std::string, std::string>& provenance, onnx::ModelProto& model) {
  const ModelConfig& c = a.shape;
  const bool fixed = a.version == ModelVersion::kV1_0;
  model.set_ir_version(kIrVersion);
  model.set_producer_name("tessera");
  model.set_producer_version(kVersion);
  const std::string what =
      fixed ? "Tessera-architecture model" : "Tessera " + version_name(a.version);
  model.set_doc_string(provenance.first == metadata_key::kSeed
                           ? what + " with seeded random weights (tessera make-model)"
                           : what + " imported from " + provenance.second + " (tessera import)");
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpset);
  namespace key = metadata_key;
  const std::pair<const char*, int> shape[] = {{key::kDModel, c.d_model},
                                               {key::kLayers, c.layers},
                                               {key::kHeads, c.heads},
                                               {key::kFfn, c.ffn},
                                               {key::kS2Steps, fixed ? c.s2_steps : 0},
                                               {key::kS1Steps, fixed ? c.s1_steps : 0},
                                               {key::kS2Bands, c.s2_bands},
                                               {key::kS1Bands, c.s1_bands},
                                               {key::kLatent, c.latent}};
  for (const auto& [name, value] : shape) add_metadata(model, name, std::to_string(value));
  add_metadata(model, provenance.first, provenance.second);
  if (!fixed) add_family_metadata(model, a);

  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("tessera");
  add_io(graph->add_input(), "s2_input", fixed ? c.s2_steps : 0, "s2_steps", c.s2_bands + 1);
  add_io(graph->add_input(), "s1_input", fixed ? c.s1_steps : 0, "s1_steps", c.s1_bands + 1);
  add_io(graph->add_output(), "output", 0, "", c.latent);

  GraphBuilder g(graph, &weights);
  switch (a.version) {
    case ModelVersion::kV1_0Early:
      return build_v1_0_early(g, a);
    case ModelVersion::kV1_0:
      return build_v1_0(g, a);
    case ModelVersion::kV1_1:
      return build_v1_1(g, a);
    case ModelVersion::kV2:
      return build_v2(g, a);
  }
}

void validate_fields(const ModelConfig& c) {
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
}

ArchConfig as_v1_0(const ModelConfig& config) {
  ArchConfig a;
  a.shape = config;
  return a;
}

}  // namespace

ArchConfig default_arch_config(ModelVersion arch) {
  ArchConfig a;
  a.version = arch;
  switch (arch) {
    case ModelVersion::kV1_0:
      break;
    case ModelVersion::kV1_0Early:
      a.shape.heads = 8;
      a.shape.layers = 8;
      a.stats = "v1.0";
      break;
    case ModelVersion::kV1_1:
      a.shape.d_model = 768;
      a.shape.ffn = 2048;
      a.fusion_hidden = 3072;
      a.fusion_width = 192;
      break;
    case ModelVersion::kV2:
      return v2_arch_config(64, 4, 4, 1024, false);
  }
  return a;
}

ArchConfig v2_arch_config(int latent_dim, int layers, int heads, int ffn, bool qk_norm) {
  ArchConfig a;
  a.version = ModelVersion::kV2;
  a.shape.d_model = 4 * latent_dim;
  a.shape.layers = layers;
  a.shape.heads = heads;
  a.shape.ffn = ffn;
  a.fusion_hidden = 4 * a.shape.d_model;
  a.fusion_width = 128;
  a.qk_norm = qk_norm;
  a.stats = "v2";
  return a;
}

void RandomWeights::fill(const std::string& name, const std::vector<int64_t>& dims, double bound,
                         double center, float* out) {
  int64_t count = 1;
  for (const int64_t d : dims) count *= d;
  uint64_t state = seed_ ^ fnv1a(name);
  splitmix64(state);
  for (int64_t i = 0; i < count; ++i) {
    const double unit = static_cast<double>(splitmix64(state) >> 40) * 0x1.0p-24;  // [0, 1)
    out[i] = static_cast<float>(center + bound * (2.0 * unit - 1.0));
  }
}

void validate_arch_config(const ArchConfig& a) {
  validate_fields(a.shape);
  if (a.fusion_hidden < 0 || a.fusion_width < 0 ||
      (a.version != ModelVersion::kV1_0 && a.version != ModelVersion::kV1_0Early &&
       (a.fusion_hidden == 0 || a.fusion_width == 0))) {
    throw UsageError("model config: " + version_name(a.version) +
                     " needs positive fusion_hidden and fusion_width");
  }
  if (a.fusion_width > 0 && a.shape.latent > a.fusion_width) {
    throw UsageError("model config: latent (" + std::to_string(a.shape.latent) +
                     ") exceeds the fusion width (" + std::to_string(a.fusion_width) + ")");
  }
  if (a.version == ModelVersion::kV2 && a.shape.latent != a.fusion_width) {
    throw UsageError("model config: v2's output is the whole fusion width (" +
                     std::to_string(a.fusion_width) + "), not " + std::to_string(a.shape.latent));
  }
  const double parameters = count_all(a).parameters;
  if (parameters > kMaxParameters) {
    throw UsageError("model config: " + std::to_string(static_cast<long long>(parameters)) +
                     " parameters do not fit one ONNX file (at most 500,000,000)");
  }
}

void validate_model_config(const ModelConfig& c) {
  validate_arch_config(as_v1_0(c));
}

ModelStats count_model(const ArchConfig& config) {
  validate_arch_config(config);
  const Counts counts = count_all(config);
  ModelStats stats;
  stats.parameters = static_cast<int64_t>(counts.parameters);
  stats.gflop_per_pixel = counts.flops / 1e9;
  stats.nodes = 0;
  stats.bytes = 4 * stats.parameters;
  return stats;
}

ModelStats count_model(const ModelConfig& config) {
  return count_model(as_v1_0(config));
}

ModelStats write_model(const ArchConfig& config, WeightSource& weights,
                       const std::pair<std::string, std::string>& provenance,
                       const std::string& path) {
  ModelStats stats = count_model(config);
  onnx::ModelProto model;
  build_model(config, weights, provenance, model);
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

ModelStats write_model(const ArchConfig& config, const std::string& path) {
  RandomWeights weights(config.shape.seed);
  return write_model(config, weights, {metadata_key::kSeed, std::to_string(config.shape.seed)},
                     path);
}

ModelStats write_model(const ModelConfig& config, const std::string& path) {
  return write_model(as_v1_0(config), path);
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
