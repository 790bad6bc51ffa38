#include "tessera/model/model_info.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "tessera/common/error.h"

namespace tessera {
namespace {

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

ModelShape read_model_shape(const std::string& path) {
  return read_model(path).io();
}

ModelFileInfo read_model_info(const std::string& path) {
  return read_model(path).graph;
}

void check_finite_weights(const std::string& path) {
  read_model(path).check_finite_weights();
}

}  // namespace tessera
