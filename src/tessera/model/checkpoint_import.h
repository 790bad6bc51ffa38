#pragma once
// Turns the tensors of an upstream Tessera PyTorch checkpoint into a tessera model
// (`tessera import`). This file owns the checkpoint side of MODEL_FAMILY.md: how each version's
// state-dict keys are named and shaped, how the architecture is detected from them, and how each
// key maps onto the initializer names of model_builder.h (PyTorch Linear weights [out, in] are
// transposed to [in, out]; v2's q_proj/k_proj/v_proj become the thirds of attn.in_proj).
//
// Invariants: the checkpoint must hold exactly the expected keys (after the loaders' own
// normalisation: `_orig_mod.` removed, projector keys dropped for v1.x) with exactly the expected
// shapes; the first missing, unexpected or mis-shaped key is a one-line Error naming the file,
// the key and its shapes, and nothing is written then. Sizes (d_model, ffn, fusion widths) are
// decided by a vote of every key that has them, counting only keys whose other axes fit, so a
// transposed or mis-shaped key is blamed itself. detect_architecture needs shapes only: the CLI
// calls it before any value is read. Reading the .pt file itself is
// tools/read_checkpoint.py's job (the CLI runs it); this code sees plain float32 tensors.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tessera/model/model_builder.h"

namespace tessera {

struct CheckpointTensor {
  std::vector<int64_t> shape;
  std::vector<float> values;  // row-major, float32; empty until read (detect_architecture)
};

// What the reader found in the file.
struct Checkpoint {
  std::string path;    // the .pt file, for messages
  std::string layout;  // "model_state", "model_state_dict" (v1.x) or "model" (v2: model + args)
  std::map<std::string, CheckpointTensor> tensors;  // keys as stored
  std::map<std::string, std::string> args;          // v2 args, values as the reader wrote them
};

// Key prefixes a v1.x loader drops (the projection heads, training only), after `_orig_mod.`
// is removed. The reader skips them without reading their (large) tensors.
const std::vector<std::string>& dropped_key_prefixes();

// The architecture the keys and shapes describe. `stats` is "" or "mpc"/"aws" (required for
// v1.1, refused for the others); `heads` overrides the version's head count when > 0 (v1.x
// checkpoints do not record it: 8 for v1.0 early, 4 for v1.0 and v1.1). Throws Error
// "<path>: ..." for an unknown layout, a missing/unexpected/mis-shaped key or a bad --stats.
ArchConfig detect_architecture(const Checkpoint& checkpoint, const std::string& stats, int heads);

// The checkpoint's tensors under tessera's initializer names, checked key by key against
// `config`. Throws Error as detect_architecture.
class CheckpointWeights : public WeightSource {
 public:
  CheckpointWeights(const Checkpoint& checkpoint, const ArchConfig& config);
  void fill(const std::string& name, const std::vector<int64_t>& dims, double bound, double center,
            float* out) override;
  int64_t parameters() const { return parameters_; }

 private:
  std::map<std::string, CheckpointTensor> tensors_;  // tessera name -> [in, out] values
  int64_t parameters_ = 0;
};

// detect_architecture + CheckpointWeights + write_model: writes `output` atomically.
ModelStats import_checkpoint(const Checkpoint& checkpoint, const std::string& stats, int heads,
                             const std::string& output);

}  // namespace tessera
