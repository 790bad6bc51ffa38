#include "tessera/model/model_info.h"

#include <onnx/onnx_pb.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <vector>

#include "tessera/common/error.h"

namespace tessera {
namespace {

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

// The graph's inputs and output as read_model_shape describes them, from the file itself.
ModelShape shape_of_file(const std::string& path) {
  const onnx::ModelProto model = parse_model(path);
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

}  // namespace

// The shape shape_of_file reads, kept per (path, size, modification time): every
// engine a run builds asks for it, and parsing the full model once per worker would hold one
// copy of the weights per worker at a time. Thread-safe.
ModelShape read_model_shape(const std::string& path) {
  static std::mutex mutex;
  static std::map<std::string, ModelShape> known;
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  const auto time = std::filesystem::last_write_time(path, ec).time_since_epoch().count();
  const std::string key = path + "\n" + std::to_string(size) + "\n" + std::to_string(time);
  std::lock_guard lock(mutex);
  if (ec) return shape_of_file(path);  // missing or unreadable: its own error, never cached
  if (const auto found = known.find(key); found != known.end()) return found->second;
  const ModelShape shape = shape_of_file(path);
  known.emplace(key, shape);
  return shape;
}

ModelFileInfo read_model_info(const std::string& path) {
  const onnx::ModelProto model = parse_model(path);
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

}  // namespace tessera
