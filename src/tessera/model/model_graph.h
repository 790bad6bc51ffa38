#pragma once
// Internal to src/tessera/model: the ONNX graph-building toolkit behind model_builder.cpp.
// GraphBuilder appends nodes, Constant nodes and parameter initializers to one GraphProto; the
// block functions (backbone, encoder layer, the three poolings, the two fusions) emit one
// architecture block each, reading their parameters by name from a WeightSource.
//
// Invariants: every node is named after its first output; each Constant is emitted once per
// graph (cached by name); the initializers of the main graph are exactly the parameters. A Scan
// body is a graph of its own: it reads the parameters of the main graph by name (outer scope).

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "tessera/model/model_builder.h"

namespace tessera::model_graph {

class GraphBuilder {
 public:
  // `constant_prefix` starts the names of this graph's Constants: a Scan body needs its own, as
  // names must be unique across the main graph and every subgraph.
  GraphBuilder(onnx::GraphProto* graph, WeightSource* weights, std::string constant_prefix = "")
      : graph_(graph), weights_(weights), constant_prefix_(std::move(constant_prefix)) {}

  onnx::GraphProto* graph() { return graph_; }
  WeightSource* weights() { return weights_; }

  onnx::NodeProto* node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs);
  std::string op(const std::string& op, const std::vector<std::string>& inputs,
                 const std::string& output);
  static void set_int(onnx::NodeProto* n, const std::string& name, int64_t value);
  static void set_float(onnx::NodeProto* n, const std::string& name, float value);
  static void set_ints(onnx::NodeProto* n, const std::string& name,
                       const std::vector<int64_t>& values);

  // A 1-D int64 Constant (shapes, axes, slice bounds), shared by every user of the same values.
  std::string const_i64(const std::vector<int64_t>& values);
  // A float Constant of shape `dims` (empty: a scalar), emitted once under `name`.
  std::string const_f32(const std::string& name, const std::vector<float>& values,
                        const std::vector<int64_t>& dims);
  // A parameter initializer `name` of shape `dims`, its values from the WeightSource; `init`
  // is how a random source draws it (center + U[-bound, bound)).
  std::string weight(const std::string& name, const std::vector<int64_t>& dims, double bound,
                     double center = 0.0);
  // y = x @ W + b with W [in, out] named `<prefix>.weight` and b [out] named `<prefix>.bias`.
  std::string linear(const std::string& x, const std::string& prefix, int64_t in, int64_t out,
                     const std::string& output);
  // LayerNormalization over the last axis, weight `<prefix>.weight`, bias `<prefix>.bias`.
  std::string layer_norm(const std::string& x, const std::string& prefix, int64_t width,
                         const std::string& output);
  // LayerNormalization over the last axis without parameters (scale a Constant of ones).
  std::string plain_layer_norm(const std::string& x, int64_t width, const std::string& output);

  int64_t parameters() const { return parameters_; }

 private:
  onnx::TensorProto* constant_tensor(const std::string& name);

  onnx::GraphProto* graph_;
  WeightSource* weights_;
  std::string constant_prefix_;
  std::set<std::string> constants_;
  int64_t parameters_ = 0;
};

// How the day-of-year frequencies are rounded: kDouble (v1.0 as built since the start:
// exp in double, then rounded to float) or kFloat32 (upstream's float32 arithmetic, MODEL_FAMILY
// §0.1), used by the other versions.
enum class DoyFrequencies { kDouble, kFloat32 };

struct BackboneShape {
  int64_t d = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t ffn = 0;
  int64_t bands = 0;
  bool qk_norm = false;
  DoyFrequencies frequencies = DoyFrequencies::kDouble;
};

// input [B, T, bands + 1] -> x [B, T, d]: embedding, day-of-year encoding, encoder layers.
// Parameters under `<b>.embed.*` and `<b>.layers.<l>.*`.
std::string backbone(GraphBuilder& g, const BackboneShape& s, const std::string& b,
                     const std::string& input);

// x [B, T, d] -> x [B, T, d]: one post-norm encoder layer, parameters under `p`.
std::string encoder_layer(GraphBuilder& g, const BackboneShape& s, const std::string& x,
                          const std::string& p);

// x [B, T, d] -> [B, d]. The custom GRU + LayerNorm + attention pooling, unrolled over `steps`
// fixed steps (v1.0) or a Scan over any number of steps (steps = 0, v1.1).
std::string custom_gru_pool(GraphBuilder& g, int64_t d, const std::string& x, int64_t steps,
                            const std::string& p);
// x [B, T, d] -> [B, d]: nn.GRU states + attention pooling (v1.0 early), a Scan.
std::string torch_gru_pool(GraphBuilder& g, int64_t d, const std::string& x, const std::string& p);
// x [B, T, d] -> [B, d]: attention pooling on x itself (v2).
std::string attention_pool(GraphBuilder& g, int64_t d, const std::string& x, const std::string& p);

// f [B, in] -> `output` [B, out]: Linear under `fusion`.
std::string linear_fusion(GraphBuilder& g, const std::string& f, int64_t in, int64_t out,
                          const std::string& output);
// f [B, in] -> [B, width]: Linear, LayerNorm, ReLU, Linear under `fusion.linear1`,
// `fusion.norm`, `fusion.linear2`.
std::string mlp_fusion(GraphBuilder& g, const std::string& f, int64_t in, int64_t hidden,
                       int64_t width, const std::string& output);

}  // namespace tessera::model_graph
