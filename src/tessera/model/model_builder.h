#pragma once
// Builds the ONNX graph of every Tessera version (docs/MODEL.md, docs/MODEL_FAMILY.md in
// shared docs): v1.0 early, v1.0 (the built-in model), v1.1 and the v2 students. One
// graph-building function per architecture reads its parameters by name from a WeightSource:
// seeded random weights (`tessera make-model`, the default model cache, the tests) or the
// tensors of an upstream checkpoint (`tessera import`, checkpoint_import.h).
//
// Graph: opset 17, ir_version 8. Inputs `s2_input` float [batch, s2_steps, s2_bands + 1] and
// `s1_input` float [batch, s1_steps, s1_bands + 1] (bands, then the raw day of year); output
// `output` float [batch, output_dim]; "batch" is symbolic. v1.0 has 40 fixed steps (its file is
// byte-identical to the one tessera always built); the other versions have symbolic step axes
// named "s2_steps" and "s1_steps" and run their recurrences in a Scan. The day-of-year encoding
// is built with Sin/Cos + Unsqueeze/Concat/Reshape (never ScatterND). Constants that are not
// parameters (shapes, axes, the encoding frequencies, the ones of a non-affine LayerNorm) are
// Constant nodes, so the graph initializers are exactly the parameters.
//
// Metadata (metadata_props; keys in model_metadata.h, read by read_model): every file has
// tessera.d_model, layers, heads, ffn, s2_steps, s1_steps, s2_bands, s1_bands, latent (the output
// width) and tessera.seed (random weights) or tessera.checkpoint (imported: the checkpoint's file
// name). Every version but v1.0 also has tessera.version ("v1.0-early", "v1.1", "v2"; a file
// without it is v1.0), tessera.stats (the input statistics set: "v1.0", "mpc", "aws", "v2", or ""
// when none was named), tessera.output_dim, tessera.pooling ("gru" nn.GRU, "custom_gru",
// "attention"), tessera.fusion ("linear", "mlp"), tessera.fusion_hidden and tessera.fusion_width
// (the MLP's widths; the output keeps the first output_dim of fusion_width), tessera.final_norm (1:
// non-affine LayerNorm on the output) and tessera.qk_norm (0/1). s2_steps/s1_steps are 0 when
// symbolic.
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
// The other versions share the backbone names above and add:
//   v2 with QK-norm: <b>.layers.<l>.attn.q_norm.weight [d/heads], .k_norm.weight [d/heads]: the
//     RMSNorm gains applied per head to q and k after the in-projection (eps 2^-23); q, k, v
//     stay packed in attn.in_proj (upstream's separate q_proj/k_proj/v_proj are its thirds).
//   v1.0 early (nn.GRU): <b>.pool.rnn.weight_ih [d, 3d], <b>.pool.rnn.weight_hh [d, 3d], columns
//     r | z | n (x_t @ weight_ih is PyTorch's W_ih x_t); <b>.pool.rnn.bias_ih [3d],
//     <b>.pool.rnn.bias_hh [3d] (b_hn inside the reset product); <b>.pool.score.* as above,
//     scored on the GRU states without a LayerNorm.
//   v1.1: <b>.pool.gru.*, <b>.pool.norm.*, <b>.pool.score.* as v1.0 (d 768).
//   v2: <b>.pool.score.* only (scores on the encoder outputs).
//   MLP fusion (v1.1, v2): fusion.linear1.weight [2d, hidden] fusion.linear1.bias [hidden]
//     fusion.norm.weight [hidden] fusion.norm.bias [hidden] (LayerNorm, then ReLU)
//     fusion.linear2.weight [hidden, width] fusion.linear2.bias [width]
//     v1.1: hidden 3072, width 192, output = the first 128 columns. v2: hidden 4d, width 128,
//     output = a LayerNorm without parameters (eps 1e-5) of all 128.
//
// Random weights: every tensor is drawn from its own stream, seeded by splitmix64 of (seed xor
// FNV-1a of the tensor name), uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases
// (fan_in: the input width of the layer; d for the GRU), LayerNorm weight 1 + U[-0.1, 0.1),
// LayerNorm bias U[-0.1, 0.1). Activations stay O(1) through every layer. The same config
// gives a byte-identical file.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tessera/model/model_config.h"
#include "tessera/model/model_description.h"

namespace tessera {

// One model of the family. `shape` holds the widths (d_model, layers, heads, ffn, bands), the
// output width (latent), the seed of random weights and, for v1.0 only, the fixed step counts
// (the other versions take any count; their FLOPs are counted at shape.s2_steps/s1_steps).
struct ArchConfig {
  ModelVersion version = ModelVersion::kV1_0;
  ModelConfig shape;
  int fusion_hidden = 0;  // MLP fusion hidden width (v1.1, v2); 0 for a Linear fusion
  int fusion_width = 0;   // MLP fusion output width (v1.1: 192, v2: 128); output keeps `latent`
  bool qk_norm = false;   // v2: RMSNorm on q and k per head
  std::string stats;      // input statistics set recorded in the metadata ("" when none)
};

// The released shape of each architecture (MODEL_FAMILY.md's table; v2: Small).
ArchConfig default_arch_config(ModelVersion arch);
// A v2 student: d_model = 4 * latent_dim, fusion hidden 4d, output 128.
ArchConfig v2_arch_config(int latent_dim, int layers, int heads, int ffn, bool qk_norm);

// Where a graph's parameters come from. fill() writes the values of parameter `name` of shape
// `dims` to `out` (row-major); `bound` and `center` describe the random draw of make-model
// (center + U[-bound, bound)), which a source of real weights ignores.
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual void fill(const std::string& name, const std::vector<int64_t>& dims, double bound,
                    double center, float* out) = 0;
};

// make-model's weights: each tensor from its own stream, seeded by (seed, name) (see above).
class RandomWeights : public WeightSource {
 public:
  explicit RandomWeights(uint64_t seed) : seed_(seed) {}
  void fill(const std::string& name, const std::vector<int64_t>& dims, double bound, double center,
            float* out) override;

 private:
  uint64_t seed_;
};

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

// The same for any architecture. The ArchConfig overloads of write_model take the parameters
// from `weights` and record `provenance` as metadata {key, value}: {metadata_key::kSeed, seed}
// (random) or {metadata_key::kCheckpoint, file name}; validate_arch_config adds to
// validate_model_config: fusion widths positive for MLP fusions and latent <= fusion_width.
void validate_arch_config(const ArchConfig& config);
ModelStats count_model(const ArchConfig& config);
ModelStats write_model(const ArchConfig& config, const std::string& path);
ModelStats write_model(const ArchConfig& config, WeightSource& weights,
                       const std::pair<std::string, std::string>& provenance,
                       const std::string& path);

// "45,828,226 parameters, 3.676 GFLOP/pixel, 2,225 nodes, 183.3 MB" (nodes left out when 0).
std::string format_model_stats(const ModelStats& stats);

// 45828226 -> "45,828,226".
std::string format_thousands(int64_t value);

}  // namespace tessera
