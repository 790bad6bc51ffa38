// tessera import's checkpoint side on in-memory tensors: architecture detection from keys and
// shapes, the transposed placement of PyTorch Linear weights, one-line errors naming the key.

#include "tessera/model/checkpoint_import.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tessera/common/error.h"
#include "tessera/model/model_builder.h"

namespace tessera {
namespace {

ArchConfig small_v1_0() {
  ArchConfig a = default_arch_config(ModelVersion::kV1_0);
  a.shape.d_model = 16;
  a.shape.layers = 2;
  a.shape.heads = 4;
  a.shape.ffn = 32;
  a.shape.latent = 4;
  return a;
}

// A v1.0 checkpoint with every tensor filled by its index: the import places each key.
Checkpoint tiny_v1_checkpoint(const ArchConfig& a) {
  Checkpoint c;
  c.path = "tiny.pt";
  c.layout = "model_state";
  const int64_t d = a.shape.d_model;
  auto add = [&](const std::string& key, std::vector<int64_t> shape) {
    CheckpointTensor t;
    t.shape = shape;
    int64_t n = 1;
    for (const int64_t s : shape) n *= s;
    for (int64_t i = 0; i < n; ++i) t.values.push_back(static_cast<float>(i));
    c.tensors[key] = t;
  };
  for (const std::string b : {"s2", "s1"}) {
    const std::string k = b + "_backbone.";
    add(k + "embedding.0.weight", {d, b == "s2" ? 10 : 2});
    add(k + "embedding.0.bias", {d});
    add(k + "embedding.2.weight", {d, d});
    add(k + "embedding.2.bias", {d});
    for (int l = 0; l < a.shape.layers; ++l) {
      const std::string kl = k + "transformer_encoder.layers." + std::to_string(l) + ".";
      add(kl + "self_attn.in_proj_weight", {3 * d, d});
      add(kl + "self_attn.in_proj_bias", {3 * d});
      add(kl + "self_attn.out_proj.weight", {d, d});
      add(kl + "self_attn.out_proj.bias", {d});
      add(kl + "linear1.weight", {a.shape.ffn, d});
      add(kl + "linear1.bias", {a.shape.ffn});
      add(kl + "linear2.weight", {d, a.shape.ffn});
      add(kl + "linear2.bias", {d});
      for (const char* n : {"norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"})
        add(kl + n, {d});
    }
    const std::string p = k + "attn_pool.";
    for (const char* w : {"W_ir", "W_iz", "W_ih", "W_hr", "W_hz", "W_hh"})
      add(p + "temporal_context.gru_cell." + w + ".weight", {d, d});
    for (const char* v : {"b_r", "b_z", "b_h"}) add(p + "temporal_context.gru_cell." + v, {d});
    add(p + "layer_norm.weight", {d});
    add(p + "layer_norm.bias", {d});
    add(p + "query.weight", {1, d});
    add(p + "query.bias", {1});
  }
  add("dim_reducer.0.weight", {a.shape.latent, 2 * d});
  add("dim_reducer.0.bias", {a.shape.latent});
  add("projector.net.0.weight", {3, 3});
  return c;
}

TEST(CheckpointImport, DetectsV1AndTransposesLinearWeights) {
  const ArchConfig want = small_v1_0();
  const Checkpoint c = tiny_v1_checkpoint(want);
  const ArchConfig a = detect_architecture(c, "", 0);
  EXPECT_EQ(a.version, ModelVersion::kV1_0);
  EXPECT_EQ(a.shape.d_model, 16);
  EXPECT_EQ(a.shape.layers, 2);
  EXPECT_EQ(a.shape.ffn, 32);
  EXPECT_EQ(a.shape.latent, 4);
  CheckpointWeights weights(c, a);
  EXPECT_EQ(weights.parameters(), count_model(a).parameters);
  std::vector<float> w(32 * 4);
  weights.fill("fusion.weight", {32, 4}, 0, 0, w.data());  // [2d, latent] from [latent, 2d]
  EXPECT_EQ(w[0 * 4 + 1], 32.0f);                          // row 0, column 1 = key (1, 0)
  EXPECT_EQ(w[1 * 4 + 0], 1.0f);                           // row 1, column 0 = key (0, 1)
}

TEST(CheckpointImport, NamesTheFirstBadKey) {
  const ArchConfig a = small_v1_0();
  Checkpoint c = tiny_v1_checkpoint(a);
  c.tensors["s1_backbone.embedding.2.bias"].shape = {17};
  try {
    detect_architecture(c, "", 0);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "tiny.pt: key s1_backbone.embedding.2.bias has shape [17], expected [16]");
  }
  c = tiny_v1_checkpoint(a);
  try {
    detect_architecture(c, "mpc", 0);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "tiny.pt: --stats applies to v1.1 checkpoints only (this one is v1.0)");
  }
}

std::string error_of(const Checkpoint& c) {
  try {
    detect_architecture(c, "", 0);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(CheckpointImport, BlamesATransposedWeightItselfNotItsBias) {
  Checkpoint c = tiny_v1_checkpoint(small_v1_0());
  c.tensors["dim_reducer.0.weight"].shape = {32, 4};  // [2d, latent] instead of [latent, 2d]
  EXPECT_EQ(error_of(c), "tiny.pt: key dim_reducer.0.weight has shape [32, 4], expected [4, 32]");
  c = tiny_v1_checkpoint(small_v1_0());
  c.tensors["s2_backbone.transformer_encoder.layers.1.linear1.weight"].shape = {16, 32};
  EXPECT_EQ(error_of(c),
            "tiny.pt: key s2_backbone.transformer_encoder.layers.1.linear1.weight has shape "
            "[16, 32], expected [32, 16]");
  c = tiny_v1_checkpoint(small_v1_0());
  c.tensors["s1_backbone.embedding.0.weight"].shape = {2, 16};
  EXPECT_EQ(error_of(c),
            "tiny.pt: key s1_backbone.embedding.0.weight has shape [2, 16], expected [16, 2]");
}

TEST(CheckpointImport, UnknownLayoutAndUnexpectedKeysNameRealKeysWithShapes) {
  Checkpoint c = tiny_v1_checkpoint(small_v1_0());
  for (const char* w : {"W_ir", "W_iz", "W_ih", "W_hr", "W_hz", "W_hh"})
    c.tensors.erase(std::string("s2_backbone.attn_pool.temporal_context.gru_cell.") + w +
                    ".weight");
  EXPECT_EQ(error_of(c),
            "tiny.pt: unknown checkpoint layout: no "
            "s2_backbone.attn_pool.temporal_context.weight_ih_l0 [48, 16] (v1.0 early) and no "
            "s2_backbone.attn_pool.temporal_context.gru_cell.W_ir.weight [16, 16] (v1.0, v1.1); "
            "not a Tessera v1.x state dict");
  c = tiny_v1_checkpoint(small_v1_0());
  c.tensors["dim_reducer.9.weight"].shape = {2, 3};
  EXPECT_EQ(error_of(c),
            "tiny.pt: unexpected key dim_reducer.9.weight [2, 3] (not in the v1.0 "
            "layout)");
  c = tiny_v1_checkpoint(small_v1_0());
  c.tensors.erase("s2_backbone.transformer_encoder.layers.1.linear1.weight");
  EXPECT_EQ(error_of(c),
            "tiny.pt: missing key s2_backbone.transformer_encoder.layers.1.linear1.weight "
            "(expected shape [32, 16])");
}

}  // namespace
}  // namespace tessera
