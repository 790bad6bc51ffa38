// The v1.1 and v2 pipeline pieces: resampling (worked examples of MODEL_FAMILY.md and numpy's
// own array_split/linspace), bucket lengths and plans, v2 quantisation, the pipeline a model's
// version asks for, and the sequences BucketPreparer builds from a tile.

#include "tessera/pipeline/tile_pipeline.h"

#include <gtest/gtest.h>

#include <cmath>

#include "io/test_tiles.h"
#include "tessera/common/error.h"
#include "tessera/io/npy.h"
#include "tessera/pipeline/bucket_preparer.h"
#include "tessera/pipeline/quantiser.h"
#include "tessera/pipeline/tile_plan.h"
#include "test_support.h"

namespace tessera {
namespace {

using V = std::vector<int64_t>;

// The description of a file "m.onnx" of `version` with statistics set `stats`, symbolic step
// axes and 128 outputs, as read_model gives it.
ModelDescription model_of(ModelVersion version, const std::string& stats) {
  ModelDescription model;
  model.path = "m.onnx";
  model.version = version;
  model.stats = stats;
  model.shape.symbolic_steps = version != ModelVersion::kV1_0;
  return model;
}

V resampled(Resampling r, int64_t n, int64_t b) {
  V out(static_cast<std::size_t>(b));
  resample_indices(r, n, b, out.data());
  return out;
}

TEST(Resample, V11WorkedExamples) {
  EXPECT_EQ(resampled(Resampling::kSpread, 5, 8), (V{0, 1, 2, 3, 4, 1, 2, 3}));
  EXPECT_EQ(resampled(Resampling::kSpread, 13, 8), (V{1, 3, 5, 7, 9, 10, 11, 12}));
  EXPECT_EQ(resampled(Resampling::kSpread, 13, 16),
            (V{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 3, 6, 9}));
  EXPECT_EQ(resampled(Resampling::kSpread, 3, 8), (V{0, 1, 2, 0, 1, 1, 1, 2}));
  EXPECT_EQ(resampled(Resampling::kSpread, 2, 8), (V{0, 1, 0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(resampled(Resampling::kSpread, 8, 8), (V{0, 1, 2, 3, 4, 5, 6, 7}));
}

TEST(Resample, V2WorkedExamples) {
  EXPECT_EQ(resampled(Resampling::kPad, 5, 8), (V{0, 1, 2, 3, 4, 1, 3, 4}));
  EXPECT_EQ(resampled(Resampling::kPad, 13, 8), (V{0, 1, 3, 5, 6, 8, 10, 12}));
  EXPECT_EQ(resampled(Resampling::kPad, 3, 8), (V{0, 1, 2, 0, 1, 2, 0, 1}));
  EXPECT_EQ(resampled(Resampling::kPad, 4, 8), (V{0, 1, 2, 3, 0, 1, 2, 3}));
  EXPECT_EQ(resampled(Resampling::kPad, 13, 16),
            (V{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 2, 7, 11}));
  EXPECT_EQ(resampled(Resampling::kPad, 6, 8), (V{0, 1, 2, 3, 4, 5, 1, 4}));
}

// Every (n, bucket) the pipelines produce, and then some, against numpy's array_split and
// linspace (tests/reference/resample_oracle.py).
TEST(Resample, MatchesNumpyForEveryBucket) {
  const std::string dir = testing::test_dir("resample_oracle");
  V cases, outs;
  for (int64_t kind : {0, 1}) {
    for (int64_t n = 1; n <= 700; n += (n < 300 ? 1 : 37)) {
      for (int64_t b : {bucket_length(n), int64_t{8}, int64_t{256}}) {
        V out = resampled(kind == 0 ? Resampling::kSpread : Resampling::kPad, n, b);
        out.resize(kMaxBucket, -1);
        cases.insert(cases.end(), {kind, n, b});
        outs.insert(outs.end(), out.begin(), out.end());
      }
    }
  }
  const auto k = static_cast<int64_t>(cases.size() / 3);
  write_npy(dir + "/cases.npy", DType::kInt64, {k, 3}, cases.data());
  write_npy(dir + "/out.npy", DType::kInt64, {k, kMaxBucket}, outs.data());
  EXPECT_EQ(testing::run_python(std::string(TESSERA_SOURCE_DIR) +
                                "/tests/reference/resample_oracle.py --cases " + dir +
                                "/cases.npy --out " + dir + "/out.npy"),
            0);
}

TEST(Buckets, LengthsAndEmptyModalities) {
  EXPECT_EQ(bucket_length(0), 0);
  EXPECT_EQ(bucket_length(1), 8);
  EXPECT_EQ(bucket_length(8), 8);
  EXPECT_EQ(bucket_length(9), 16);
  EXPECT_EQ(bucket_length(255), 256);
  EXPECT_EQ(bucket_length(300), 256);
  const TilePipeline v11 = tile_pipeline(model_of(ModelVersion::kV1_1, "mpc"), 0);
  const TilePipeline v2 = tile_pipeline(model_of(ModelVersion::kV2, "v2"), 0);
  EXPECT_EQ(bucket_steps(v11, 0, 0), (StepCounts{8, 8}));  // every v1.1 pixel runs
  EXPECT_EQ(bucket_steps(v11, 9, 0), (StepCounts{16, 8}));
  EXPECT_EQ(bucket_steps(v2, 0, 0), (StepCounts{0, 0}));  // skipped
  EXPECT_EQ(bucket_steps(v2, 0, 300), (StepCounts{1, 256}));
  EXPECT_EQ(bucket_steps(v2, 7, 0), (StepCounts{8, 1}));
}

// Groups of one shape, longest first, each in pixel order and cut at the batch size.
TEST(Buckets, PlanGroupsPixelsByShape) {
  const TilePipeline v2 = tile_pipeline(model_of(ModelVersion::kV2, "v2"), 0);
  ObservationCounts counts;
  counts.s2 = {9, 1, 12, 0, 3, 16, 0};
  counts.s1 = {1, 1, 1, 1, 2, 8, 0};
  const TilePlan plan = bucket_batches(counts, v2, 2);
  // (16,8): p0 p2 p5 in batches of 2, then (8,8): p1 p4, then (1,8): p3; p6 is empty.
  EXPECT_EQ(plan.pixels, (V{0, 2, 5, 1, 4, 3}));
  EXPECT_EQ(plan.starts, (V{0, 2, 3, 5, 6}));
  ASSERT_EQ(plan.batches(), 4);
  EXPECT_EQ(plan.steps[0], (StepCounts{16, 8}));
  EXPECT_EQ(plan.steps[1], (StepCounts{16, 8}));
  EXPECT_EQ(plan.steps[2], (StepCounts{8, 8}));
  EXPECT_EQ(plan.steps[3], (StepCounts{1, 8}));
  EXPECT_EQ(plan.pixels_where([](int64_t b) { return b != 1; }), 5);
}

TEST(QuantiserV2, CodesWithin127AndTheAbsmaxFloor) {
  const float x[4] = {1.0f, -2.54f, 0.01f, 2.54f};
  int8_t q[4];
  float scale = 0;
  quantize_embedding_v2(x, 4, q, &scale);
  EXPECT_FLOAT_EQ(scale, 2.54f / 127.0f);
  EXPECT_EQ(q[0], 50);
  EXPECT_EQ(q[1], -127);  // never -128
  EXPECT_EQ(q[2], 0);
  EXPECT_EQ(q[3], 127);
  const float tiny[2] = {1e-14f, 0.0f};
  quantize_embedding_v2(tiny, 2, q, &scale);
  EXPECT_FLOAT_EQ(scale, 1e-12f / 127.0f);  // max(absmax, 1e-12) / 127
  EXPECT_EQ(q[0], 1);                       // rint(1e-14 / scale) = rint(1.27)
  EXPECT_EQ(q[1], 0);
  const float bad[2] = {1.0f, NAN};
  EXPECT_THROW(quantize_embedding_v2(bad, 2, q, &scale), NonFiniteOutput);
}

TEST(TilePipelines, ChosenByVersionWithExactErrors) {
  const TilePipeline v10 = tile_pipeline(model_of(ModelVersion::kV1_0, ""), 0);
  EXPECT_FALSE(v10.bucketed);
  const TilePipeline v2 = tile_pipeline(model_of(ModelVersion::kV2, "v2"), 32);
  EXPECT_EQ(v2.output_dim, 32);
  EXPECT_EQ(v2.quant, QuantRule::kV2);
  EXPECT_EQ(testing::error_of([] { tile_pipeline(model_of(ModelVersion::kV1_1, "mpc"), 64); }),
            "--dim applies to v2 models (Matryoshka prefixes); m.onnx is a v1.1 model");
  EXPECT_EQ(testing::error_of([] { tile_pipeline(model_of(ModelVersion::kV2, "v2"), 48); }),
            "--dim must be 16, 32, 64 or 128 (at most the model's 128), not 48");
  EXPECT_EQ(testing::error_of([] { tile_pipeline(model_of(ModelVersion::kV1_1, ""), 0); }),
            "m.onnx: a v1.1 model needs its statistics set (tessera.stats mpc or aws; import or "
            "make it with --stats mpc|aws), this one has ''");
  ModelDescription fixed = model_of(ModelVersion::kV2, "v2");
  fixed.shape.symbolic_steps = false;
  EXPECT_EQ(testing::error_of([&] { tile_pipeline(fixed, 0); }),
            "m.onnx: a v2 model needs symbolic step axes (length buckets of 1 to 256 steps), this "
            "file takes exactly 40 + 40 steps (a fixed-step copy from run-model?)");
  ModelDescription unreadable = model_of(ModelVersion::kV1_0, "");
  unreadable.shape_error = "m.onnx: expected one output named output, found (none)";
  EXPECT_EQ(testing::error_of([&] { tile_pipeline(unreadable, 0); }), unreadable.shape_error);
  ModelDescription v10_fixed = model_of(ModelVersion::kV1_0, "");
  v10_fixed.shape.s2_steps = 24;
  EXPECT_EQ(tile_pipeline(v10_fixed, 0).sampled_steps, (StepCounts{24, 40}));
}

// A pixel's sequences from a real tile file, checked value by value.
TEST(BucketPreparer, BuildsTheSequencesOfMODEL_FAMILY) {
  const std::string dir = testing::test_dir("bucket_preparer") + "/grid_0_0";
  testing::TestTileSpec spec;
  spec.t2 = 6;
  spec.ta = 3;
  spec.td = 2;
  testing::write_test_tile(dir, spec);
  const Tile tile = open_tile(dir);
  for (const ModelVersion version : {ModelVersion::kV1_1, ModelVersion::kV2}) {
    const TilePipeline pipeline =
        tile_pipeline(model_of(version, version == ModelVersion::kV2 ? "v2" : "aws"), 0);
    const InputStats& stats = input_stats(pipeline.stats);
    const ObservationCounts counts = count_observations(tile);
    BucketPreparer preparer(tile, pipeline);
    for (int64_t p = 0; p < tile.pixels(); ++p) {
      const StepCounts steps = bucket_steps(pipeline, counts.s2[p], counts.s1[p]);
      if (steps.s2 == 0) continue;
      std::vector<float> s2(steps.s2 * 11), s1(steps.s1 * 3);
      preparer.prepare(p, steps, s2.data(), s1.data());
      // S2: the valid frames in order, resampled; band 3 and the day checked.
      V valid;
      for (int64_t t = 0; t < tile.t2; ++t)
        if (tile.s2_masks.value(t * tile.pixels() + p) != 0) valid.push_back(t);
      if (valid.empty()) {
        for (float v : s2) EXPECT_EQ(v, 0.0f);
      } else {
        const V idx = resampled(pipeline.resampling, static_cast<int64_t>(valid.size()), steps.s2);
        for (int64_t k = 0; k < steps.s2; ++k) {
          const int64_t t = valid[idx[k]];
          const float raw =
              static_cast<float>(tile.s2_bands.value((t * tile.pixels() + p) * 10 + 3));
          EXPECT_EQ(s2[k * 11 + 3], (raw - stats.s2_mean[3]) / (stats.s2_std[3] + 1e-9f));
          EXPECT_EQ(s2[k * 11 + 10], static_cast<float>(tile.s2_doys.value(t)));
        }
      }
      // S1: valid ascending rows (ascending statistics), then descending ones.
      std::vector<std::pair<float, float>> rows;  // (VV standardised, day)
      for (int orbit = 0; orbit < 2; ++orbit) {
        const NpyArray& sar = orbit == 0 ? tile.s1_asc : tile.s1_desc;
        const NpyArray& doys = orbit == 0 ? tile.s1_asc_doys : tile.s1_desc_doys;
        const float mean = orbit == 0 ? stats.asc_mean[0] : stats.desc_mean[0];
        const float sd = orbit == 0 ? stats.asc_std[0] : stats.desc_std[0];
        for (int64_t t = 0; t < sar.dim(0); ++t) {
          const double vv = sar.value((t * tile.pixels() + p) * 2);
          const double vh = sar.value((t * tile.pixels() + p) * 2 + 1);
          if (vv == 0 && vh == 0) continue;
          rows.push_back(
              {(static_cast<float>(vv) - mean) / (sd + 1e-9f), static_cast<float>(doys.value(t))});
        }
      }
      if (rows.empty()) {
        EXPECT_EQ(steps.s1, pipeline.empty_modality_is_one_step ? 1 : 8);
        for (float v : s1) EXPECT_EQ(v, 0.0f);
        continue;
      }
      const V idx = resampled(pipeline.resampling, static_cast<int64_t>(rows.size()), steps.s1);
      for (int64_t k = 0; k < steps.s1; ++k) {
        EXPECT_EQ(s1[k * 3], rows[idx[k]].first)
            << version_name(version) << " pixel " << p << " step " << k;
        EXPECT_EQ(s1[k * 3 + 2], rows[idx[k]].second);
      }
    }
  }
}

}  // namespace
}  // namespace tessera
