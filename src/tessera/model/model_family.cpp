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

ModelFamilyInfo read_model_family(const std::string& path) {
  onnx::ModelProto model = parse(path);
  ModelFamilyInfo info;
  for (const auto& entry : model.metadata_props()) {
    if (entry.key() == "tessera.version") info.version = entry.value();
    if (entry.key() == "tessera.stats") info.stats = entry.value();
    if (entry.key() == "tessera.seed") info.weights_seed = entry.value();
    if (entry.key() == "tessera.checkpoint") info.checkpoint = entry.value();
  }
  const auto* s2 = step_dim(model, "s2_input");
  const auto* s1 = step_dim(model, "s1_input");
  info.symbolic_steps =
      s2 != nullptr && s1 != nullptr && !s2->has_dim_value() && !s1->has_dim_value();
  return info;
}

std::string describe_weights(const ModelFamilyInfo& info) {
  if (!info.weights_seed.empty())
    return "random (seed " + info.weights_seed + "), for benchmarking";
  if (!info.checkpoint.empty()) return "imported from " + info.checkpoint;
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
