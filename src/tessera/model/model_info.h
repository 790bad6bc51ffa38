#pragma once
// Facts read from an ONNX file without running it.

#include <cstdint>
#include <string>

namespace tessera {

struct ModelFileInfo {
  int64_t parameters = 0;  // elements of all initializers
  int64_t nodes = 0;       // nodes of the main graph
  int64_t opset = 0;       // default-domain opset
  bool has_scatter_nd = false;
};

// Throws tessera::Error naming the file if it cannot be read or parsed as an ONNX model.
ModelFileInfo read_model_info(const std::string& path);

}  // namespace tessera
