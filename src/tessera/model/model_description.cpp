#include "tessera/model/model_description.h"

#include <onnx/onnx_pb.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <vector>

#include "tessera/common/error.h"
#include "tessera/model/model_info.h"
#include "tessera/model/model_metadata.h"

namespace tessera {
namespace {

constexpr ModelVersion kVersions[] = {ModelVersion::kV1_0Early, ModelVersion::kV1_0,
                                      ModelVersion::kV1_1, ModelVersion::kV2};

onnx::ModelProto parse_model(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw Error(path + ": no such file");
  if (std::filesystem::is_directory(path, ec))
    throw Error(path + ": is a directory, not an ONNX model");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot be read");
  onnx::ModelProto model;
  if (!model.ParseFromIstream(&in))
    throw Error(path + ": not an ONNX model (protobuf parse failed)");
  return model;
}

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return out.empty() ? "(none)" : out;
}

// A dimension as the file states it: its value, its symbolic name, or "?".
std::string dim_text(const onnx::TensorShapeProto::Dimension& dim) {
  if (dim.has_dim_value()) return std::to_string(dim.dim_value());
  return dim.has_dim_param() && !dim.dim_param().empty() ? dim.dim_param() : "?";
}

// The dims of a [B, ...] float32 tensor of rank `rank` whose dims after B are all fixed but
// the step axis (dim 1) of an input, which may be symbolic (B and a symbolic step axis are -1).
// Throws Error naming the file and the tensor otherwise.
std::vector<int64_t> batched_dims(const std::string& path, const onnx::ValueInfoProto& value,
                                  int rank) {
  const auto& type = value.type().tensor_type();
  if (!value.type().has_tensor_type() || type.elem_type() != onnx::TensorProto::FLOAT)
    throw Error(path + ": " + value.name() + " must be a float32 tensor");
  std::vector<int64_t> dims;
  std::string text;
  bool fixed = type.has_shape() && type.shape().dim_size() == rank;
  for (int d = 0; type.has_shape() && d < type.shape().dim_size(); ++d) {
    const auto& dim = type.shape().dim(d);
    text += (d ? ", " : "") + dim_text(dim);
    dims.push_back(dim.has_dim_value() ? dim.dim_value() : -1);
    const bool symbolic_steps = rank == 3 && d == 1 && !dim.has_dim_value();
    if (d > 0 && !symbolic_steps && !(dim.has_dim_value() && dim.dim_value() > 0)) fixed = false;
  }
  if (!fixed) {
    throw Error(path + ": " + value.name() + " has shape [" + text + "], expected " +
                (rank == 3 ? "[batch, steps, features]" : "[batch, dim]") +
                " with fixed features and dim");
  }
  return dims;
}

// The graph's inputs and output: exactly `s2_input` [B, T2, F2] and `s1_input` [B, T1, F1]
// (either order) and one `output` [B, D], float32, every dimension but B (and both step axes
// together) fixed. Throws Error naming the file and the first tensor that differs.
ModelShape shape_of_file(const onnx::ModelProto& model, const std::string& path) {
  const auto& graph = model.graph();
  // Initializers may be listed as inputs too (older exporters): they are not the model's inputs.
  std::vector<const onnx::ValueInfoProto*> inputs;
  std::vector<std::string> input_names, output_names;
  std::set<std::string> initializers;
  for (const auto& tensor : graph.initializer()) initializers.insert(tensor.name());
  for (const auto& input : graph.input()) {
    if (initializers.count(input.name())) continue;
    inputs.push_back(&input);
    input_names.push_back(input.name());
  }
  for (const auto& output : graph.output()) output_names.push_back(output.name());
  const bool inputs_ok =
      inputs.size() == 2 && ((input_names[0] == "s2_input" && input_names[1] == "s1_input") ||
                             (input_names[0] == "s1_input" && input_names[1] == "s2_input"));
  if (!inputs_ok)
    throw Error(path + ": expected inputs s2_input and s1_input, found " + join_names(input_names));
  if (output_names.size() != 1 || output_names[0] != "output")
    throw Error(path + ": expected one output named output, found " + join_names(output_names));
  ModelShape shape;
  for (const auto* input : inputs) {
    const auto dims = batched_dims(path, *input, 3);
    (input->name() == "s2_input" ? shape.s2_steps : shape.s1_steps) = dims[1];
    (input->name() == "s2_input" ? shape.s2_features : shape.s1_features) = dims[2];
    shape.batch = dims[0];
  }
  if ((shape.s2_steps < 0) != (shape.s1_steps < 0)) {
    throw Error(path + ": one input has a symbolic step axis and the other a fixed one; a model " +
                "takes both fixed or both symbolic");
  }
  if (shape.s2_steps < 0) {
    shape.symbolic_steps = true;
    shape.s2_steps = shape.s1_steps = kMaxModelSteps;
  }
  const auto out = batched_dims(path, graph.output(0), 2);
  shape.output_dim = out[1];
  return shape;
}

ModelFileInfo graph_of(const onnx::ModelProto& model) {
  ModelFileInfo info;
  for (const auto& tensor : model.graph().initializer()) {
    int64_t elements = 1;
    for (int64_t d : tensor.dims()) elements *= d;
    info.parameters += elements;
    if (tensor.data_type() == onnx::TensorProto::FLOAT16) info.has_float16 = true;
  }
  info.nodes = model.graph().node_size();
  for (const auto& node : model.graph().node()) {
    if (node.op_type() == "ScatterND") info.has_scatter_nd = true;
    if (node.op_type() != "Cast") continue;
    for (const auto& attribute : node.attribute()) {
      if (attribute.name() == "to" && attribute.i() == onnx::TensorProto::FLOAT16)
        info.has_float16 = true;
    }
  }
  for (const auto& opset : model.opset_import()) {
    if (opset.domain().empty() || opset.domain() == "ai.onnx") info.opset = opset.version();
  }
  return info;
}

using Metadata = std::map<std::string, std::string>;

// The index into `allowed` of metadata `key`'s value (0 when the file does not state it).
// Throws Error naming the file, the key and the values allowed for any other value.
size_t choice(const Metadata& metadata, const std::string& path, const char* key,
              const std::vector<std::string>& allowed) {
  const auto it = metadata.find(key);
  if (it == metadata.end()) return 0;
  for (size_t i = 0; i < allowed.size(); ++i)
    if (allowed[i] == it->second) return i;
  throw Error(path + ": metadata " + key + " = '" + it->second + "' is not one of " +
              join_names(allowed));
}

// The tessera.* metadata of `model` (model_metadata.h) in `d`.
void read_metadata(const onnx::ModelProto& model, ModelDescription& d) {
  Metadata metadata;
  for (const auto& entry : model.metadata_props()) metadata[entry.key()] = entry.value();
  namespace key = metadata_key;
  const auto text = [&](const char* k) {
    const auto it = metadata.find(k);
    return it == metadata.end() ? std::string() : it->second;
  };
  std::vector<std::string> names;
  for (const ModelVersion v : kVersions) names.push_back(version_name(v));
  d.version = metadata.count(key::kVersion)
                  ? kVersions[choice(metadata, d.path, key::kVersion, names)]
                  : ModelVersion::kV1_0;
  d.stats = text(key::kStats);
  d.weights_seed = text(key::kSeed);
  d.checkpoint = text(key::kCheckpoint);
  if (const std::string heads = text(key::kHeads); !heads.empty()) {
    if (heads.find_first_not_of("0123456789") != std::string::npos || heads.size() > 9 ||
        std::stoll(heads) == 0)
      throw Error(d.path + ": metadata " + key::kHeads + " = '" + heads +
                  "' is not a positive whole number");
    d.heads = std::stoll(heads);
  }
  if (d.version == ModelVersion::kV1_0) return;  // v1.0's architecture whatever else is stated
  constexpr Pooling kPoolings[] = {Pooling::kCustomGru, Pooling::kTorchGru, Pooling::kAttention};
  d.pooling =
      kPoolings[choice(metadata, d.path, key::kPooling, {"custom_gru", "gru", "attention"})];
  d.mlp_fusion = choice(metadata, d.path, key::kFusion, {"linear", "mlp"}) == 1;
  d.final_norm = choice(metadata, d.path, key::kFinalNorm, {"0", "1"}) == 1;
  d.qk_norm = choice(metadata, d.path, key::kQkNorm, {"0", "1"}) == 1;
}

ModelDescription describe_file(const std::string& path) {
  const onnx::ModelProto model = parse_model(path);
  ModelDescription d;
  d.path = path;
  read_metadata(model, d);
  d.graph = graph_of(model);
  try {
    d.shape = shape_of_file(model, path);
  } catch (const Error& e) {
    d.shape_error = e.what();
  }
  try {
    check_finite_weights(model, path);
  } catch (const Error& e) {
    d.weight_error = e.what();
  }
  return d;
}

}  // namespace

std::string version_name(ModelVersion version) {
  switch (version) {
    case ModelVersion::kV1_0Early:
      return "v1.0-early";
    case ModelVersion::kV1_0:
      return "v1.0";
    case ModelVersion::kV1_1:
      return "v1.1";
    case ModelVersion::kV2:
      return "v2";
  }
  return "?";
}

ModelVersion parse_version(const std::string& name) {
  for (const ModelVersion version : kVersions) {
    if (version_name(version) == name) return version;
  }
  throw UsageError("unknown architecture '" + name + "' (v1.0-early, v1.0, v1.1, v2)");
}

const ModelShape& ModelDescription::io() const {
  if (!shape_error.empty()) throw Error(shape_error);
  return shape;
}

void ModelDescription::check_finite_weights() const {
  if (!weight_error.empty()) throw Error(weight_error);
}

// Kept per (path, size, modification time): parsing the full model once per engine would hold
// one copy of the weights per worker at a time (and cost a second or so each).
ModelDescription read_model(const std::string& path) {
  static std::mutex mutex;
  static std::map<std::string, ModelDescription> known;
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  const auto time = std::filesystem::last_write_time(path, ec).time_since_epoch().count();
  const std::string key = path + "\n" + std::to_string(size) + "\n" + std::to_string(time);
  std::lock_guard lock(mutex);
  if (ec) return describe_file(path);  // missing or unreadable: its own error, never cached
  if (const auto found = known.find(key); found != known.end()) return found->second;
  ModelDescription description = describe_file(path);
  known.emplace(key, description);
  return description;
}

}  // namespace tessera
