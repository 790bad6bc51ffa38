// read_model, the one reader of a model file's metadata: every version's description against
// the config it was built from and against python3's onnx reading the same file, metadata
// outside the format refused with one line, shape and weight errors kept for the callers that
// need them, and a file read again once it changed.

#include "tessera/model/model_description.h"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>

#include "tessera/model/model_builder.h"
#include "tessera/model/model_family.h"
#include "tessera/model/model_metadata.h"
#include "test_support.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using testing::error_of;

std::string test_dir(const std::string& name) {
  return testing::fresh_test_dir("model_description_" + name);
}

// A small model of `version` (2 layers, d_model 16 or v2's 16, 4 heads).
ArchConfig small(ModelVersion version) {
  if (version == ModelVersion::kV2) return v2_arch_config(4, 2, 4, 32, true);
  ArchConfig a = default_arch_config(version);
  a.shape.d_model = 16;
  a.shape.layers = 2;
  a.shape.heads = 4;
  a.shape.ffn = 32;
  a.shape.s2_steps = 5;
  a.shape.s1_steps = 3;
  a.shape.latent = 4;
  if (version == ModelVersion::kV1_1) {
    a.fusion_hidden = 24;
    a.fusion_width = 6;
    a.stats = "aws";
  }
  return a;
}

// A copy of `model` at `out` with `edit` applied to its protobuf.
std::string edited(const std::string& model, const std::string& out,
                   const std::function<void(onnx::ModelProto&)>& edit) {
  onnx::ModelProto proto;
  std::ifstream in(model, std::ios::binary);
  EXPECT_TRUE(proto.ParseFromIstream(&in));
  edit(proto);
  std::ofstream file(out, std::ios::binary);
  EXPECT_TRUE(proto.SerializeToOstream(&file));
  return out;
}

void set_metadata(onnx::ModelProto& model, const std::string& key, const std::string& value) {
  for (auto& entry : *model.mutable_metadata_props()) {
    if (entry.key() == key) return entry.set_value(value);
  }
  auto* entry = model.add_metadata_props();
  entry->set_key(key);
  entry->set_value(value);
}

TEST(ReadModel, DescribesEveryVersionAsItWasBuilt) {
  const std::string dir = test_dir("versions");
  struct Expected {
    ModelVersion version;
    Pooling pooling;
    bool mlp_fusion, final_norm, qk_norm;
    const char* stats;
  };
  const Expected cases[] = {
      {ModelVersion::kV1_0Early, Pooling::kTorchGru, false, false, false, "v1.0"},
      {ModelVersion::kV1_0, Pooling::kCustomGru, false, false, false, ""},
      {ModelVersion::kV1_1, Pooling::kCustomGru, true, false, false, "aws"},
      {ModelVersion::kV2, Pooling::kAttention, true, true, true, "v2"}};
  for (const Expected& e : cases) {
    const std::string name = version_name(e.version);
    const std::string path = dir + "/" + name + ".onnx";
    const ArchConfig config = small(e.version);
    write_model(config, path);
    const ModelDescription model = read_model(path);
    EXPECT_EQ(model.path, path);
    EXPECT_EQ(model.version, e.version) << name;
    EXPECT_EQ(model.pooling, e.pooling) << name;
    EXPECT_EQ(model.mlp_fusion, e.mlp_fusion) << name;
    EXPECT_EQ(model.final_norm, e.final_norm) << name;
    EXPECT_EQ(model.qk_norm, e.qk_norm) << name;
    EXPECT_EQ(model.stats, e.stats) << name;
    EXPECT_EQ(model.heads, config.shape.heads) << name;
    EXPECT_EQ(model.weights_seed, "42") << name;
    EXPECT_EQ(model.checkpoint, "") << name;
    EXPECT_EQ(model.float32_frequencies(), e.version != ModelVersion::kV1_0) << name;
    EXPECT_EQ(model.graph.parameters, count_model(config).parameters) << name;
    EXPECT_EQ(model.io().output_dim, config.shape.latent) << name;
    EXPECT_EQ(model.io().symbolic_steps, e.version != ModelVersion::kV1_0) << name;
    EXPECT_EQ(model.io().s2_features, config.shape.s2_bands + 1) << name;
    EXPECT_NO_THROW(model.check_finite_weights());
    EXPECT_EQ(describe_weights(model), "random (seed 42), for benchmarking");
  }
  // The same keys as python3's onnx reads them from the v2 file.
  const std::string listed = dir + "/v2.txt";
  const std::string script =
      "import onnx, sys; m = onnx.load(sys.argv[1]); "
      "open(sys.argv[2], 'w').write(''.join(f'{p.key}={p.value}\\n' for p in m.metadata_props))";
  const std::string command =
      std::string(TESSERA_PYTHON3) + " -c \"" + script + "\" " + dir + "/v2.onnx " + listed;
  ASSERT_EQ(std::system(command.c_str()), 0);
  const std::string text = testing::slurp(listed);
  for (const char* line :
       {"tessera.version=v2\n", "tessera.stats=v2\n", "tessera.pooling=attention\n",
        "tessera.fusion=mlp\n", "tessera.final_norm=1\n", "tessera.qk_norm=1\n",
        "tessera.heads=4\n", "tessera.seed=42\n"})
    EXPECT_NE(text.find(line), std::string::npos) << line << " not in\n" << text;
  fs::remove_all(dir);
}

TEST(ReadModel, RefusesMetadataOutsideTheFormatWithOneLine) {
  const std::string dir = test_dir("refuses");
  const std::string model = dir + "/v1.1.onnx";
  write_model(small(ModelVersion::kV1_1), model);
  const auto error_with = [&](const std::string& key, const std::string& value) {
    const std::string path = dir + "/" + key + ".onnx";
    edited(model, path, [&](onnx::ModelProto& m) { set_metadata(m, key, value); });
    return error_of([&] { read_model(path); });
  };
  EXPECT_EQ(error_with(metadata_key::kVersion, "v3"),
            dir +
                "/tessera.version.onnx: metadata tessera.version = 'v3' is not one of "
                "v1.0-early, v1.0, v1.1, v2");
  EXPECT_EQ(error_with(metadata_key::kPooling, "lstm"),
            dir +
                "/tessera.pooling.onnx: metadata tessera.pooling = 'lstm' is not one of "
                "custom_gru, gru, attention");
  EXPECT_EQ(error_with(metadata_key::kQkNorm, "yes"),
            dir + "/tessera.qk_norm.onnx: metadata tessera.qk_norm = 'yes' is not one of 0, 1");
  EXPECT_EQ(error_with(metadata_key::kFusion, "conv"),
            dir +
                "/tessera.fusion.onnx: metadata tessera.fusion = 'conv' is not one of "
                "linear, mlp");
  EXPECT_EQ(error_with(metadata_key::kHeads, "two"),
            dir +
                "/tessera.heads.onnx: metadata tessera.heads = 'two' is not a positive whole "
                "number");
  EXPECT_EQ(error_with(metadata_key::kHeads, "0"),
            dir +
                "/tessera.heads.onnx: metadata tessera.heads = '0' is not a positive whole "
                "number");
  EXPECT_EQ(error_of([&] { read_model(dir + "/absent.onnx"); }),
            dir + "/absent.onnx: no such file");
  fs::remove_all(dir);
}

// A file without tessera.version is v1.0, whose architecture is fixed: the other family keys
// are not read for it.
TEST(ReadModel, AFileWithoutAVersionIsV1_0) {
  const std::string dir = test_dir("v10");
  write_model(small(ModelVersion::kV1_1), dir + "/v1.1.onnx");
  const std::string path = edited(dir + "/v1.1.onnx", dir + "/bare.onnx", [](onnx::ModelProto& m) {
    auto* props = m.mutable_metadata_props();
    for (int i = props->size() - 1; i >= 0; --i)
      if (props->Get(i).key() == metadata_key::kVersion) props->DeleteSubrange(i, 1);
  });
  const ModelDescription model = read_model(path);
  EXPECT_EQ(model.version, ModelVersion::kV1_0);
  EXPECT_EQ(model.pooling, Pooling::kCustomGru);
  EXPECT_FALSE(model.mlp_fusion);
  EXPECT_EQ(model.stats, "aws");
  fs::remove_all(dir);
}

// The version and provenance of a file no engine runs are still read; its shape error and its
// weight error come to the callers that ask (engines, the pipeline).
TEST(ReadModel, KeepsShapeAndWeightErrorsForTheirCallers) {
  const std::string dir = test_dir("kept");
  write_model(small(ModelVersion::kV2), dir + "/v2.onnx");
  std::string first;  // the initializer whose first value becomes NaN
  const std::string path = edited(dir + "/v2.onnx", dir + "/odd.onnx", [&](onnx::ModelProto& m) {
    m.mutable_graph()->mutable_output(0)->set_name("embedding");
    auto* tensor = m.mutable_graph()->mutable_initializer(0);
    first = tensor->name();
    const float nan = std::numeric_limits<float>::quiet_NaN();
    tensor->mutable_raw_data()->replace(0, sizeof(float), reinterpret_cast<const char*>(&nan),
                                        sizeof(float));
  });
  const ModelDescription model = read_model(path);
  EXPECT_EQ(model.version, ModelVersion::kV2);
  EXPECT_EQ(model.weights_seed, "42");
  EXPECT_EQ(error_of([&] { model.io(); }),
            path + ": expected one output named output, found embedding");
  EXPECT_EQ(error_of([&] { model.check_finite_weights(); }),
            path + ": weight " + first + " holds NaN (element 0)");
  fs::remove_all(dir);
}

// Read once per file version: a file replaced under the same name is read again.
TEST(ReadModel, ReadsAReplacedFileAgain) {
  const std::string dir = test_dir("replaced");
  const std::string path = dir + "/m.onnx";
  write_model(small(ModelVersion::kV1_1), path);
  EXPECT_EQ(read_model(path).version, ModelVersion::kV1_1);
  EXPECT_EQ(read_model(path).stats, "aws");
  write_model(small(ModelVersion::kV2), path);
  EXPECT_EQ(read_model(path).version, ModelVersion::kV2);
  EXPECT_EQ(read_model(path).stats, "v2");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace tessera
