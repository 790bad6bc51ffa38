#include "tessera/model/model_info.h"

#include <onnx/onnx_pb.h>

#include <fstream>

#include "tessera/common/error.h"

namespace tessera {

ModelFileInfo read_model_info(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot be read");
  onnx::ModelProto model;
  if (!model.ParseFromIstream(&in))
    throw Error(path + ": not an ONNX model (protobuf parse failed)");
  ModelFileInfo info;
  for (const auto& tensor : model.graph().initializer()) {
    int64_t elements = 1;
    for (int64_t d : tensor.dims()) elements *= d;
    info.parameters += elements;
  }
  info.nodes = model.graph().node_size();
  for (const auto& node : model.graph().node()) {
    if (node.op_type() == "ScatterND") info.has_scatter_nd = true;
  }
  for (const auto& opset : model.opset_import()) {
    if (opset.domain().empty() || opset.domain() == "ai.onnx") info.opset = opset.version();
  }
  return info;
}

}  // namespace tessera
