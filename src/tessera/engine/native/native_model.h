#pragma once
// NativeModel: the parameters of a Tessera model file of any version (v1.0 early, v1.0, v1.1,
// v2; docs/MODEL_FAMILY.md), read with protobuf by the initializer names and [in, out] layouts
// of model/model_builder.h, checked, and held as float32 while an engine builds its own working
// copies from them.
//
// The architecture (version, pooling, fusion, norms) and the inputs and output come from the
// file's description (read_model, model/model_description.h); the widths from the initializer
// shapes.
//
// Invariants after construction: every tensor an engine asks for by name exists with the shape
// the dimensions imply; dims() agrees with the graph's inputs (steps, bands), its output width
// and its attention heads (read from the graph's Reshapes that split q, k and v into heads;
// metadata `tessera.heads`, when present, must agree). A
// file that breaks them throws tessera::Error with one line naming the file and the problem.

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "tessera/model/model_description.h"

namespace tessera {

struct NativeBranchDims {
  int64_t steps = 0;  // time steps of the branch input: fixed, or the capacity when symbolic
  int64_t bands = 0;  // input bands (the input has one more column: the day of year)
};

// The widths of a model, read from its initializers and inputs.
struct NativeModelDims {
  int64_t d_model = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t ffn = 0;
  int64_t latent = 0;  // output width
  NativeBranchDims s2, s1;
  int64_t fusion_hidden = 0;  // 0: Linear fusion [2d, latent]; else the MLP's hidden width
  int64_t fusion_width = 0;   // the MLP's output width; the output keeps its first `latent`
};

class NativeModel {
 public:
  // kCheckOnly: every check of kKeep, no copy of the weights kept (tensor() then throws); for
  // a look at whether the file can run before an engine is chosen.
  enum class Weights { kKeep, kCheckOnly };
  // Reads and checks the weights of the file `model` describes. Throws Error.
  explicit NativeModel(const ModelDescription& model, Weights weights = Weights::kKeep);

  const ModelDescription& description() const { return description_; }
  const NativeModelDims& dims() const { return dims_; }
  // The float32 data of initializer `name` (checked at construction; throws Error if absent).
  const float* tensor(const std::string& name) const;
  // Frees the data of `name` once its working copy exists (keeps the peak memory low).
  void release(const std::string& name);

 private:
  std::string path_;
  ModelDescription description_;
  NativeModelDims dims_;
  std::unordered_map<std::string, std::vector<float>> tensors_;
};

}  // namespace tessera
