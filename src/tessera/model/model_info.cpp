#include "tessera/model/model_info.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
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

// The index of the first of `count` values (raw IEEE bits of type U, unaligned at `data`) whose
// exponent bits are all set (NaN or infinity), or -1. Blocks of values are or-reduced first, a
// loop the compiler vectorises; only a block with a hit is searched element by element.
template <typename U>
int64_t first_non_finite(const void* data, int64_t count, U exponent) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  const auto at = [&](int64_t i) {
    U v;
    std::memcpy(&v, bytes + i * static_cast<int64_t>(sizeof(U)), sizeof(U));
    return v;
  };
  constexpr int64_t kBlock = 4096;
  for (int64_t start = 0; start < count; start += kBlock) {
    const int64_t end = std::min(count, start + kBlock);
    U hits = 0;  // a count the compiler vectorises (a bool or-reduction it does not)
    for (int64_t i = start; i < end; ++i) hits += (at(i) & exponent) == exponent ? 1 : 0;
    if (hits == 0) continue;
    for (int64_t i = start; i < end; ++i)
      if ((at(i) & exponent) == exponent) return i;
  }
  return -1;
}

// The bit layout of one floating-point ONNX type: exponent and mantissa masks.
template <typename U>
struct FloatBits {
  U exponent, mantissa;
};

// Throws for the first non-finite value of `tensor`, whose values are U-sized IEEE numbers in
// raw_data or, without it, in `typed` (a repeated field holding one value per element).
template <typename U, typename Typed>
void check_finite_values(const onnx::TensorProto& tensor, const Typed& typed, FloatBits<U> bits,
                         const std::string& path) {
  const bool raw = tensor.has_raw_data();
  const int64_t count = raw ? static_cast<int64_t>(tensor.raw_data().size() / sizeof(U))
                            : static_cast<int64_t>(typed.size());
  const void* data = raw ? static_cast<const void*>(tensor.raw_data().data())
                         : static_cast<const void*>(typed.data());
  int64_t i = -1;
  U value = 0;
  if (raw || sizeof(typename Typed::value_type) == sizeof(U)) {
    i = first_non_finite<U>(data, count, bits.exponent);
    if (i >= 0)
      std::memcpy(&value, static_cast<const unsigned char*>(data) + i * sizeof(U), sizeof(U));
  } else {  // float16 and bfloat16 in int32_data: one 16-bit value per int32
    i = first_non_finite<uint32_t>(data, count, bits.exponent);
    if (i >= 0) value = static_cast<U>(typed.Get(static_cast<int>(i)));
  }
  if (i < 0) return;
  throw Error(path + ": weight " + tensor.name() + " holds " +
              ((value & bits.mantissa) != 0 ? "NaN" : "infinity") + " (element " +
              std::to_string(i) + ")");
}

}  // namespace

void check_finite_weights(const onnx::ModelProto& model, const std::string& path) {
  for (const auto& tensor : model.graph().initializer()) {
    switch (tensor.data_type()) {
      case onnx::TensorProto::FLOAT:
        check_finite_values<uint32_t>(tensor, tensor.float_data(), {0x7f800000u, 0x007fffffu},
                                      path);
        break;
      case onnx::TensorProto::DOUBLE:
        check_finite_values<uint64_t>(tensor, tensor.double_data(),
                                      {0x7ff0000000000000u, 0x000fffffffffffffu}, path);
        break;
      case onnx::TensorProto::FLOAT16:
        check_finite_values<uint16_t>(tensor, tensor.int32_data(), {0x7c00, 0x03ff}, path);
        break;
      case onnx::TensorProto::BFLOAT16:
        check_finite_values<uint16_t>(tensor, tensor.int32_data(), {0x7f80, 0x007f}, path);
        break;
      default:
        break;  // integers, strings, booleans: always finite
    }
  }
}

namespace {

// What one parse of a model file tells: its shape, or the error reading it, and the first weight
// that is not finite ("" when every one is).
struct FileFacts {
  ModelShape shape;
  std::string shape_error, weight_error;
};

FileFacts facts_of_file(const std::string& path) {
  const onnx::ModelProto model = parse_model(path);
  FileFacts facts;
  try {
    facts.shape = shape_of_file(model, path);
  } catch (const Error& e) {
    facts.shape_error = e.what();
  }
  try {
    check_finite_weights(model, path);
  } catch (const Error& e) {
    facts.weight_error = e.what();
  }
  return facts;
}

// The facts of `path`, kept per (path, size, modification time): every engine a run builds
// asks for them, and parsing the full model once per worker would hold one copy of the weights
// per worker at a time (and cost a second or so each). Thread-safe.
FileFacts file_facts(const std::string& path) {
  static std::mutex mutex;
  static std::map<std::string, FileFacts> known;
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  const auto time = std::filesystem::last_write_time(path, ec).time_since_epoch().count();
  const std::string key = path + "\n" + std::to_string(size) + "\n" + std::to_string(time);
  std::lock_guard lock(mutex);
  if (ec) return facts_of_file(path);  // missing or unreadable: its own error, never cached
  if (const auto found = known.find(key); found != known.end()) return found->second;
  const FileFacts facts = facts_of_file(path);
  known.emplace(key, facts);
  return facts;
}

}  // namespace

void check_finite_weights(const std::string& path) {
  const FileFacts facts = file_facts(path);
  if (!facts.weight_error.empty()) throw Error(facts.weight_error);
}

ModelShape read_model_shape(const std::string& path) {
  const FileFacts facts = file_facts(path);
  if (!facts.shape_error.empty()) throw Error(facts.shape_error);
  return facts.shape;
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
