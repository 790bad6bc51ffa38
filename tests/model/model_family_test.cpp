// The model family in the builder: released parameter counts, architecture names, each
// architecture's written initializers against its analytic count, metadata and symbolic step
// axes, fixing the step axes for an engine.

#include "tessera/model/model_family.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "tessera/common/error.h"
#include "tessera/model/model_builder.h"
#include "tessera/model/model_info.h"
#include "test_support.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

std::string test_dir(const std::string& name) {
  return testing::fresh_test_dir("model_family_" + name);
}

ArchConfig small(ModelVersion arch) {
  if (arch == ModelVersion::kV2) return v2_arch_config(4, 2, 2, 32, true);
  ArchConfig a = default_arch_config(arch);
  a.shape.d_model = 16;
  a.shape.layers = 2;
  a.shape.heads = 4;
  a.shape.ffn = 32;
  a.shape.s2_steps = 5;
  a.shape.s1_steps = 3;
  a.shape.latent = 4;
  if (arch == ModelVersion::kV1_1) {
    a.fusion_hidden = 64;
    a.fusion_width = 8;
  }
  return a;
}

TEST(ModelFamily, ReleasedParameterCounts) {
  EXPECT_EQ(count_model(default_arch_config(ModelVersion::kV1_0Early)).parameters, 87'841'922);
  EXPECT_EQ(count_model(default_arch_config(ModelVersion::kV1_0)).parameters, 45'828'226);
  EXPECT_EQ(count_model(default_arch_config(ModelVersion::kV1_1)).parameters, 57'708'738);
  EXPECT_EQ(count_model(default_arch_config(ModelVersion::kV2)).parameters, 7'112'322);
  EXPECT_EQ(count_model(v2_arch_config(160, 4, 4, 2560, false)).parameters, 43'831'170);
}

TEST(ModelFamily, ArchNamesRoundTrip) {
  for (const ModelVersion arch :
       {ModelVersion::kV1_0Early, ModelVersion::kV1_0, ModelVersion::kV1_1, ModelVersion::kV2}) {
    EXPECT_EQ(parse_version(version_name(arch)), arch);
  }
  try {
    parse_version("v3");
    FAIL() << "expected an error";
  } catch (const UsageError& e) {
    EXPECT_STREQ(e.what(), "unknown architecture 'v3' (v1.0-early, v1.0, v1.1, v2)");
  }
}

TEST(ModelFamily, EachArchitectureWritesItsCountedParametersAndMetadata) {
  const std::string dir = test_dir("write");
  for (const ModelVersion arch :
       {ModelVersion::kV1_0Early, ModelVersion::kV1_0, ModelVersion::kV1_1, ModelVersion::kV2}) {
    const std::string path = dir + "/" + version_name(arch) + ".onnx";
    const ModelStats stats = write_model(small(arch), path);
    EXPECT_EQ(stats.parameters, count_model(small(arch)).parameters) << version_name(arch);
    EXPECT_EQ(read_model_info(path).parameters, stats.parameters) << version_name(arch);
    EXPECT_FALSE(read_model_info(path).has_scatter_nd);
    const ModelDescription model = read_model(path);
    EXPECT_EQ(model.version, arch);
    EXPECT_EQ(model.io().symbolic_steps, arch != ModelVersion::kV1_0) << version_name(arch);
  }
  EXPECT_EQ(read_model(dir + "/v1.0-early.onnx").stats, "v1.0");
  EXPECT_EQ(read_model(dir + "/v2.onnx").stats, "v2");
  fs::remove_all(dir);
}

TEST(ModelFamily, FixedStepsCopyHasTheEngineShape) {
  const std::string dir = test_dir("fixed");
  write_model(small(ModelVersion::kV1_1), dir + "/m.onnx");
  const ModelShape symbolic = read_model_shape(dir + "/m.onnx");
  EXPECT_TRUE(symbolic.symbolic_steps);
  EXPECT_EQ(symbolic.s2_steps, kMaxModelSteps);  // the input buffers' capacity
  EXPECT_EQ(symbolic.s1_steps, kMaxModelSteps);
  write_with_fixed_steps(dir + "/m.onnx", 13, 8, dir + "/fixed.onnx");
  const ModelShape shape = read_model_shape(dir + "/fixed.onnx");
  EXPECT_EQ(shape.s2_steps, 13);
  EXPECT_EQ(shape.s1_steps, 8);
  EXPECT_FALSE(shape.symbolic_steps);
  EXPECT_EQ(shape.output_dim, 4);
  fs::remove_all(dir);
}

TEST(ModelFamily, V2ArgsMustMatchTheOutputWidth) {
  ArchConfig a = v2_arch_config(4, 1, 2, 8, false);
  a.shape.latent = 64;
  EXPECT_THROW(count_model(a), UsageError);
}

}  // namespace
}  // namespace tessera
