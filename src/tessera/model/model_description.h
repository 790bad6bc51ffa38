#pragma once
// What a Tessera model file is, read once: its version and architecture (the metadata
// model_metadata.h names), its inputs and output, its graph's size and where its weights came
// from. read_model is the only reader of a model file's metadata; the pipeline's choice
// (tile_pipeline), the native engine (NativeModel) and the records of a run take this
// description. How to add a version: docs/MODEL.md, "Adding a Tessera version".

#include <cstdint>
#include <string>

namespace tessera {

// The versions of the family (docs/MODEL_FAMILY.md).
enum class ModelVersion { kV1_0Early, kV1_0, kV1_1, kV2 };

// "v1.0-early", "v1.0", "v1.1", "v2".
std::string version_name(ModelVersion version);
// The inverse of version_name; throws UsageError "unknown architecture 'X' (v1.0-early, v1.0,
// v1.1, v2)".
ModelVersion parse_version(const std::string& name);

// How a branch pools its encoder output x [T, d] over time into one [d] vector.
enum class Pooling {
  kTorchGru,   // v1.0 early ("gru"): nn.GRU states scored without LayerNorm, weights on x
  kCustomGru,  // v1.0, v1.1 ("custom_gru"): custom GRU states, LayerNorm, scored, weights on x
  kAttention,  // v2 ("attention"): x itself scored, weights on x
};

// The most time steps a run of a model with symbolic step axes takes: the largest length
// bucket of v1.1 and v2 (docs/PIPELINE.md).
constexpr int64_t kMaxModelSteps = 256;

// The tensor shapes a Tessera model takes and gives, read from the model file's graph.
// With symbolic step axes (v1.0 early, v1.1 and v2 files) a run takes any step count from 1 to
// kMaxModelSteps (Engine::set_steps); s2_steps and s1_steps then hold kMaxModelSteps, the
// capacity every input buffer is sized for.
struct ModelShape {
  int64_t s2_steps = 40;     // s2_input [B, s2_steps, s2_features]
  int64_t s2_features = 11;  // bands + day of year
  int64_t s1_steps = 40;     // s1_input [B, s1_steps, s1_features]
  int64_t s1_features = 3;
  int64_t output_dim = 128;  // output [B, output_dim]
  int64_t batch = -1;        // B: -1 when dynamic (symbolic), else the only batch it takes
  bool symbolic_steps = false;

  int64_t s2_pixel_floats() const { return s2_steps * s2_features; }
  int64_t s1_pixel_floats() const { return s1_steps * s1_features; }
};

// The size of a file's graph.
struct ModelFileInfo {
  int64_t parameters = 0;  // elements of all initializers
  int64_t nodes = 0;       // nodes of the main graph
  int64_t opset = 0;       // default-domain opset
  bool has_scatter_nd = false;
  // A float16 initializer or a Cast to float16: a model that computes in float16 (as
  // `tessera convert-model` writes them), whatever precision an engine is asked for.
  bool has_float16 = false;
};

// One model file. Metadata a file of tessera's own states is checked when read; a file without
// tessera.version is v1.0 (its pooling, fusion and norms are v1.0's whatever else it states).
// The graph's inputs and output and its weights are read too, but their errors are kept, not
// thrown, until a caller asks for them (io(), check_finite_weights()): the version and
// provenance of a file no engine runs can still be printed.
struct ModelDescription {
  std::string path;
  ModelVersion version = ModelVersion::kV1_0;  // tessera.version
  std::string stats;  // tessera.stats: "v1.0", "mpc", "aws", "v2"; "" when none is named
  Pooling pooling = Pooling::kCustomGru;  // tessera.pooling
  bool mlp_fusion = false;                // tessera.fusion: "mlp" (else "linear")
  bool final_norm = false;                // tessera.final_norm: non-affine LayerNorm on the output
  bool qk_norm = false;                   // tessera.qk_norm: RMSNorm of q and k per head
  int64_t heads = 0;                      // tessera.heads; 0 when the file does not state it
  // Where the weights came from (tessera.seed: `tessera make-model`'s seeded random numbers;
  // tessera.checkpoint: the file `tessera import` read); both empty for a file tessera did not
  // make.
  std::string weights_seed;
  std::string checkpoint;
  ModelFileInfo graph;
  ModelShape shape;          // meaningful only when shape_error is empty
  std::string shape_error;   // why the inputs and output are not a Tessera model's ("" if they are)
  std::string weight_error;  // the first weight that is not finite ("" when every one is)

  // The day-of-year encoding's frequencies are computed in float32 (every version but v1.0).
  bool float32_frequencies() const { return version != ModelVersion::kV1_0; }
  // `shape`, or throws Error(shape_error).
  const ModelShape& io() const;
  // Throws Error(weight_error) when a weight is not finite.
  void check_finite_weights() const;
};

// Reads `path` with protobuf alone (no runtime), once per (path, size, modification time) in a
// process (every engine a run builds asks; the description is kept, not the weights).
// Thread-safe. Throws Error with one line naming the file when it cannot be read or parsed, or
// when a tessera.* value is not one the format allows:
//   "<path>: metadata tessera.pooling = 'lstm' is not one of custom_gru, gru, attention".
ModelDescription read_model(const std::string& path);

}  // namespace tessera
