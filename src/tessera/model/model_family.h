#pragma once
// What a model's weights are, in words, and a copy of a symbolic-step file with its step counts
// fixed, for engines that take fixed shapes.

#include <cstdint>
#include <string>

#include "tessera/model/model_description.h"

namespace tessera {

// "random (seed 42), for benchmarking", "imported from <checkpoint>", or "not recorded in the
// model file": what the summary and the outputs' records say of a model's weights.
std::string describe_weights(const ModelDescription& model);

// Writes a copy of `path` to `out` (atomically, tmp + rename) whose step axes are fixed to
// `s2_steps` and `s1_steps` (`tessera run-model` on a v1.0 early, v1.1 or v2 model). Throws Error
// naming the file on any failure (a fixed axis of another length included); nothing is left at
// `out` then.
void write_with_fixed_steps(const std::string& path, int64_t s2_steps, int64_t s1_steps,
                            const std::string& out);

}  // namespace tessera
