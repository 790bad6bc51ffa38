#pragma once
// Builds the Tessera-architecture ONNX model (docs/MODEL.md) from a ModelConfig, with
// seeded random weights. `tessera make-model`, the default model cache and the tests use it.
//
// Graph: opset 17, ir_version 8. Inputs `s2_input` float [batch, s2_steps, s2_bands + 1] and
// `s1_input` float [batch, s1_steps, s1_bands + 1] (bands, then the raw day of year); output
// `output` float [batch, latent]; "batch" is symbolic. The day-of-year encoding is built with
// Sin/Cos + Unsqueeze/Concat/Reshape (never ScatterND). Constants that are not parameters
// (shapes, axes, the encoding frequencies) are Constant nodes, so the graph initializers are
// exactly the parameters.
//
// Initializer names and layouts. Every Linear weight is stored [in, out] (y = x @ W + b), so
// a PyTorch weight is its transpose. <b> is "s2" or "s1", <l> is 0 .. layers-1:
//   <b>.embed.0.weight [bands, d]      <b>.embed.0.bias [d]       (then ReLU)
//   <b>.embed.2.weight [d, d]          <b>.embed.2.bias [d]
//   <b>.layers.<l>.attn.in_proj.weight [d, 3d]  columns q | k | v, head h owns columns
//                                      h*d/heads .. (h+1)*d/heads - 1 of each third
//   <b>.layers.<l>.attn.in_proj.bias [3d]
//   <b>.layers.<l>.attn.out_proj.weight [d, d]  <b>.layers.<l>.attn.out_proj.bias [d]
//   <b>.layers.<l>.norm1.weight [d]    <b>.layers.<l>.norm1.bias [d]
//   <b>.layers.<l>.ffn.linear1.weight [d, ffn]  <b>.layers.<l>.ffn.linear1.bias [ffn]
//   <b>.layers.<l>.ffn.linear2.weight [ffn, d]  <b>.layers.<l>.ffn.linear2.bias [d]
//   <b>.layers.<l>.norm2.weight [d]    <b>.layers.<l>.norm2.bias [d]
//   <b>.pool.gru.W_ir, W_iz, W_ih, W_hr, W_hz, W_hh [d, d]  (x_t @ W_ir is MODEL.md's W_ir x_t)
//   <b>.pool.gru.b_r, b_z, b_h [d]
//   <b>.pool.norm.weight [d]           <b>.pool.norm.bias [d]
//   <b>.pool.score.weight [d, 1]       <b>.pool.score.bias [1]
//   fusion.weight [2d, latent] (rows: pooled s2, then pooled s1)   fusion.bias [latent]
//
// Weights: every tensor is drawn from its own stream, seeded by splitmix64 of (seed xor FNV-1a
// of the tensor name), uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases
// (fan_in: the input width of the layer; d for the GRU), LayerNorm weight 1 + U[-0.1, 0.1),
// LayerNorm bias U[-0.1, 0.1). Activations stay O(1) through every layer. The same config
// gives a byte-identical file.

#include <cstdint>
#include <string>

#include "tessera/model/model_config.h"

namespace tessera {

struct ModelStats {
  int64_t parameters = 0;        // number of floats in the initializers
  double gflop_per_pixel = 0.0;  // 2*M*N*K per matmul (attention included), per pixel
  int64_t nodes = 0;             // graph nodes (0 from count_model: no graph is built)
  int64_t bytes = 0;             // file size (count_model: the weight payload, 4 * parameters)
};

// Throws UsageError with a one-line message if the config cannot make a model: a field
// that is not positive, d_model not divisible by heads, d_model odd, or too many parameters
// for one ONNX file (at most 500,000,000).
void validate_model_config(const ModelConfig& config);

// Parameters and FLOPs, computed analytically (no graph is built). Validates the config.
ModelStats count_model(const ModelConfig& config);

// Builds the graph and writes it to `path` atomically: the bytes go to
// "<path>.tmp.<pid>", which is renamed onto `path` only when complete. On failure the
// temporary file is removed and an Error naming `path` is thrown. Validates the config.
ModelStats write_model(const ModelConfig& config, const std::string& path);

// "45,828,226 parameters, 3.676 GFLOP/pixel, 2,225 nodes, 183.3 MB" (nodes left out when 0).
std::string format_model_stats(const ModelStats& stats);

// 45828226 -> "45,828,226".
std::string format_thousands(int64_t value);

}  // namespace tessera
