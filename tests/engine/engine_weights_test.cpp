// Both backends refuse a model whose weights hold NaN or infinity when the engine is built, with
// the same one line (model/model_info.h: check_finite_weights): a ReLU would otherwise hide a
// NaN on one backend while the other produces it.

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "tessera/common/error.h"
#include "tessera/engine/engine_spec.h"
#include "test_models.h"
#include "test_support.h"

namespace tessera {
namespace {

using testing::error_of;

// The tiny model with element `element` of initializer `name` set to `value`.
std::string model_with_value(const std::string& dir, const std::string& name, int64_t element,
                             float value) {
  const std::string clean =
      testing::write_test_model(dir, "clean.onnx", testing::tiny_model_config(12, 9));
  onnx::ModelProto model;
  std::ifstream in(clean, std::ios::binary);
  EXPECT_TRUE(model.ParseFromIstream(&in));
  for (auto& tensor : *model.mutable_graph()->mutable_initializer()) {
    if (tensor.name() != name) continue;
    std::memcpy(tensor.mutable_raw_data()->data() + element * sizeof(float), &value, sizeof(float));
  }
  const std::string path = dir + "/bad.onnx";
  std::ofstream out(path, std::ios::binary);
  model.SerializeToOstream(&out);
  return path;
}

std::string build_error(const std::string& model, const std::string& backend,
                        const std::string& precision = "") {
  EngineSpec spec = parse_engine_spec(backend, "cpu", precision);
  spec.max_batch = 4;
  return error_of([&] { make_engine(model, spec); });
}

TEST(EngineWeights, ANanBiasIsTheSameOneLineOnBothBackends) {
  testing::ProcessTestDir dir("engine_weights_nan");
  const std::string model =
      model_with_value(dir.path(), "s2.embed.0.bias", 3, std::numeric_limits<float>::quiet_NaN());
  const std::string expected = model + ": weight s2.embed.0.bias holds NaN (element 3)";
  EXPECT_EQ(build_error(model, "ort"), expected);
  EXPECT_EQ(build_error(model, "native"), expected);
}

TEST(EngineWeights, AnInfiniteWeightIsTheSameOneLineOnBothBackends) {
  testing::ProcessTestDir dir("engine_weights_inf");
  const std::string model =
      model_with_value(dir.path(), "fusion.weight", 70, -std::numeric_limits<float>::infinity());
  const std::string expected = model + ": weight fusion.weight holds infinity (element 70)";
  EXPECT_EQ(build_error(model, "ort"), expected);
  EXPECT_EQ(build_error(model, "native"), expected);
}

}  // namespace
}  // namespace tessera
