#pragma once
// What a file of the Tessera model family (model_builder.h, "Metadata") says of itself, and a
// copy of a symbolic-step file with its step counts fixed, for engines that take fixed shapes.

#include <cstdint>
#include <string>

namespace tessera {

// version: "v1.0-early", "v1.0", "v1.1", "v2" ("v1.0" when the file has no tessera.version);
// stats: the input statistics set ("" when none); symbolic_steps: whether both inputs' step
// axes are symbolic.
// weights_seed / checkpoint: where the weights came from (tessera.seed: `tessera make-model`'s
// seeded random numbers; tessera.checkpoint: the file `tessera import` read); both empty for a
// file tessera did not make.
struct ModelFamilyInfo {
  std::string version = "v1.0";
  std::string stats;
  bool symbolic_steps = false;
  std::string weights_seed;
  std::string checkpoint;
};

// "random (seed 42), for benchmarking", "imported from <checkpoint>", or "not recorded in the
// model file": what the summary and the outputs' records say of a model's weights.
std::string describe_weights(const ModelFamilyInfo& info);

// Throws Error naming the file if it cannot be read or parsed as an ONNX model.
ModelFamilyInfo read_model_family(const std::string& path);

// Writes a copy of `path` to `out` (atomically, tmp + rename) whose step axes are fixed to
// `s2_steps` and `s1_steps` (`tessera run-model` on a v1.0 early, v1.1 or v2 model). Throws Error
// naming the file on any failure (a fixed axis of another length included); nothing is left at
// `out` then.
void write_with_fixed_steps(const std::string& path, int64_t s2_steps, int64_t s1_steps,
                            const std::string& out);

}  // namespace tessera
