// check_finite_weights: the first NaN or infinity of any float initializer (float32, float64,
// float16, bfloat16; raw or typed data) is one line naming the file, the weight and the element.

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "tessera/common/error.h"
#include "tessera/model/model_info.h"
#include "test_support.h"

namespace tessera {
namespace {

using testing::error_of;

// A model holding one initializer `name` of `type` whose values are `bits` as raw data.
template <typename U>
onnx::ModelProto model_with_raw(const std::string& name, int type, const std::vector<U>& bits) {
  onnx::ModelProto model;
  onnx::TensorProto* t = model.mutable_graph()->add_initializer();
  t->set_name(name);
  t->set_data_type(type);
  t->add_dims(static_cast<int64_t>(bits.size()));
  t->set_raw_data(std::string(reinterpret_cast<const char*>(bits.data()), bits.size() * sizeof(U)));
  return model;
}

std::vector<uint32_t> float_bits(const std::vector<float>& values) {
  std::vector<uint32_t> bits(values.size());
  std::memcpy(bits.data(), values.data(), values.size() * sizeof(float));
  return bits;
}

constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

TEST(FiniteWeights, NamesTheFirstNanOrInfinityOfFloat32RawData) {
  std::vector<float> values(10000, 0.5f);
  values[9000] = kNan;
  EXPECT_EQ(error_of([&] {
              check_finite_weights(
                  model_with_raw("w", onnx::TensorProto::FLOAT, float_bits(values)), "m.onnx");
            }),
            "m.onnx: weight w holds NaN (element 9000)");
  values[9000] = 1.0f;
  values[4097] = -kInf;
  EXPECT_EQ(error_of([&] {
              check_finite_weights(
                  model_with_raw("w", onnx::TensorProto::FLOAT, float_bits(values)), "m.onnx");
            }),
            "m.onnx: weight w holds infinity (element 4097)");
  values[4097] = std::numeric_limits<float>::max();  // finite, however large
  EXPECT_EQ(error_of([&] {
              check_finite_weights(
                  model_with_raw("w", onnx::TensorProto::FLOAT, float_bits(values)), "m.onnx");
            }),
            "(no error)");
}

TEST(FiniteWeights, ReadsTypedFloatDoubleAndHalfData) {
  onnx::ModelProto typed;
  onnx::TensorProto* t = typed.mutable_graph()->add_initializer();
  t->set_name("typed");
  t->set_data_type(onnx::TensorProto::FLOAT);
  for (const float v : {1.0f, 2.0f, kInf}) t->add_float_data(v);
  EXPECT_EQ(error_of([&] { check_finite_weights(typed, "m.onnx"); }),
            "m.onnx: weight typed holds infinity (element 2)");

  const std::vector<double> doubles = {1.0, std::numeric_limits<double>::quiet_NaN()};
  std::vector<uint64_t> double_bits(2);
  std::memcpy(double_bits.data(), doubles.data(), sizeof(double) * 2);
  EXPECT_EQ(error_of([&] {
              check_finite_weights(model_with_raw("d", onnx::TensorProto::DOUBLE, double_bits),
                                   "m.onnx");
            }),
            "m.onnx: weight d holds NaN (element 1)");

  // float16: 0x3c00 is 1.0, 0x7c00 infinity, 0x7e00 NaN; bfloat16: 0x7f80 infinity.
  EXPECT_EQ(error_of([&] {
              check_finite_weights(model_with_raw<uint16_t>("h", onnx::TensorProto::FLOAT16,
                                                            {0x3c00, 0x3c00, 0x7e00}),
                                   "m.onnx");
            }),
            "m.onnx: weight h holds NaN (element 2)");
  onnx::ModelProto half_typed;
  onnx::TensorProto* h = half_typed.mutable_graph()->add_initializer();
  h->set_name("h32");
  h->set_data_type(onnx::TensorProto::FLOAT16);
  for (const int32_t v : {0x3c00, 0x7c00}) h->add_int32_data(v);
  EXPECT_EQ(error_of([&] { check_finite_weights(half_typed, "m.onnx"); }),
            "m.onnx: weight h32 holds infinity (element 1)");
  EXPECT_EQ(error_of([&] {
              check_finite_weights(
                  model_with_raw<uint16_t>("b", onnx::TensorProto::BFLOAT16, {0x3f80, 0x7f80}),
                  "m.onnx");
            }),
            "m.onnx: weight b holds infinity (element 1)");
}

}  // namespace
}  // namespace tessera
