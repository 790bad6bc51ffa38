#pragma once
// NativeModel: the parameters of a Tessera v1.0 ONNX file (docs/MODEL.md), read with protobuf
// by the initializer names and [in, out] layouts of model/model_builder.h, checked, and held as
// float32 while an engine builds its own working copies from them.
//
// Invariants after construction: every tensor an engine asks for by name exists with the shape
// the dimensions imply; dims() agrees with the graph's inputs (steps, bands) and its attention
// heads (metadata `tessera.heads`, or the Reshape that splits the heads). A file that breaks
// them throws tessera::Error with one line naming the file and the first offending tensor.

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace tessera {

struct NativeBranchDims {
  int64_t steps = 0;  // time steps of the branch input
  int64_t bands = 0;  // input bands (the input has one more column: the day of year)
};

struct NativeModelDims {
  int64_t d_model = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t ffn = 0;
  int64_t latent = 0;
  NativeBranchDims s2, s1;
};

class NativeModel {
 public:
  // Reads and checks `path`. Throws Error.
  explicit NativeModel(const std::string& path);

  const NativeModelDims& dims() const { return dims_; }
  // The float32 data of initializer `name` (checked at construction; throws Error if absent).
  const float* tensor(const std::string& name) const;
  // Frees the data of `name` once its working copy exists (keeps the peak memory low).
  void release(const std::string& name);

 private:
  std::string path_;
  NativeModelDims dims_;
  std::unordered_map<std::string, std::vector<float>> tensors_;
};

}  // namespace tessera
