#include "tessera/model/model_family.h"

#include <onnx/onnx_pb.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <utility>

#include "tessera/common/error.h"

namespace tessera {
namespace {

onnx::ModelProto parse(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw Error(path + ": no such file");
  std::ifstream in(path, std::ios::binary);
  onnx::ModelProto model;
  if (!in || !model.ParseFromIstream(&in))
    throw Error(path + ": not an ONNX model (protobuf parse failed)");
  return model;
}

// The step dimension (index 1) of graph input `name`, or nullptr when the graph has none.
onnx::TensorShapeProto::Dimension* step_dim(onnx::ModelProto& model, const std::string& name) {
  for (auto& input : *model.mutable_graph()->mutable_input()) {
    if (input.name() != name) continue;
    auto* shape = input.mutable_type()->mutable_tensor_type()->mutable_shape();
    return shape->dim_size() == 3 ? shape->mutable_dim(1) : nullptr;
  }
  return nullptr;
}

}  // namespace

std::string describe_weights(const ModelDescription& model) {
  if (!model.weights_seed.empty())
    return "random (seed " + model.weights_seed + "), for benchmarking";
  if (!model.checkpoint.empty()) return "imported from " + model.checkpoint;
  return "not recorded in the model file";
}

void write_with_fixed_steps(const std::string& path, int64_t s2_steps, int64_t s1_steps,
                            const std::string& out) {
  onnx::ModelProto model = parse(path);
  for (const auto& [name, steps] : {std::pair<std::string, int64_t>{"s2_input", s2_steps},
                                    std::pair<std::string, int64_t>{"s1_input", s1_steps}}) {
    auto* dim = step_dim(model, name);
    if (dim == nullptr) throw Error(path + ": " + name + " is not [batch, steps, features]");
    if (dim->has_dim_value() && dim->dim_value() != steps) {
      throw Error(path + ": " + name + " takes exactly " + std::to_string(dim->dim_value()) +
                  " steps, not " + std::to_string(steps));
    }
    dim->set_dim_value(steps);
  }
  const std::string tmp = out + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream file(tmp, std::ios::binary | std::ios::trunc);
    if (!file || !model.SerializeToOstream(&file) || (file.close(), file.fail())) {
      std::remove(tmp.c_str());
      throw Error("cannot write " + out);
    }
  }
  if (std::rename(tmp.c_str(), out.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error("cannot write " + out);
  }
}

}  // namespace tessera
