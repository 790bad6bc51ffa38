#pragma once
// What a model's version asks of the tile pipeline (docs/PIPELINE.md, MODEL_FAMILY.md): which
// pixels run, how their sequences are built, with which statistics, and how the outputs are
// quantised. Chosen from the model's description (read_model: its version, statistics set and
// shape).
//
//   v1.0, v1.0 early  40 + 40 steps (a fixed-step v1.0 file: its own) by stratified
//                     deterministic sampling, pooled S1 statistics,
//                     pixels with any non-zero S2 value, v1 quantisation.
//   v1.1              every valid observation in length buckets of 8..256 (n = 0 -> 8, zero
//                     inputs), resampled by build_resample_indices, per-orbit S1 statistics of
//                     the model's set (mpc or aws), every pixel, v1 quantisation.
//   v2                buckets of 8..256 resampled by the pad pattern, a length-1 zero sequence
//                     for an empty modality, pixels empty in both written as zeros with scale 0,
//                     v2 quantisation (+-127) of the first `dim` outputs (Matryoshka prefix).

#include <cstdint>
#include <string>

#include "tessera/io/tile.h"
#include "tessera/model/model_description.h"
#include "tessera/pipeline/input_preparer.h"

namespace tessera {

// Standardisation constants (float32): x' = (x - mean) / (std + 1e-9).
struct InputStats {
  float s2_mean[kS2Bands], s2_std[kS2Bands];
  float asc_mean[kS1Bands], asc_std[kS1Bands];    // S1 ascending rows (VV, VH)
  float desc_mean[kS1Bands], desc_std[kS1Bands];  // S1 descending rows
};

// Standardisation in float32, as numpy computes it for float32 arrays: std + 1e-9 == std for
// every std here (the smallest ulp is ~1e-4); the addition is kept to state the formula.
constexpr float kStdEpsilon = 1e-9f;
inline float standardise(float x, float mean, float stddev) {
  return (x - mean) / (stddev + kStdEpsilon);
}

// The statistics set `name`: "v1.0" (pooled S1: asc and desc alike), "mpc", "aws" (v1.1) or
// "v2". Throws Error for any other name.
const InputStats& input_stats(const std::string& name);

// How a bucketed pipeline stretches or thins n valid observations to its bucket length B.
enum class Resampling {
  kSpread,  // v1.1 build_resample_indices: duplicates spread over linspace, appended
  kPad,     // v2 _pad_pattern: upper-middles of chunks, or cyclic, appended; linspace when n > B
};

enum class QuantRule {
  kV1,  // scale = max(max|x| / 127, 1e-8), codes in [-128, 127]
  kV2,  // scale = max(max|x|, 1e-12) / 127, codes in [-127, 127]
};

constexpr int64_t kSampledSteps = 40;  // v1.0 and v1.0 early
constexpr int64_t kMinBucket = 8;      // bucket lengths: 8, 16, ..., 256
constexpr int64_t kMaxBucket = 256;

struct TilePipeline {
  ModelVersion version = ModelVersion::kV1_0;
  bool bucketed = false;  // v1.1, v2
  Resampling resampling = Resampling::kSpread;
  std::string stats = "v1.0";
  // v2: a modality without valid observations is one zero step (v1.1: kMinBucket zero steps),
  // and a pixel without any is not run (its outputs stay zeros with scale 0).
  bool empty_modality_is_one_step = false;
  bool skips_empty_pixels = false;
  QuantRule quant = QuantRule::kV1;
  int64_t output_dim = 128;  // values written per pixel (the first of the model's outputs)
  // Sampled pipelines: the steps per branch (40, or a fixed-step v1.0 file's own).
  StepCounts sampled_steps{kSampledSteps, kSampledSteps};
};

// The pipeline of `model` (its version, statistics set, output width and step axes); `dim` is
// infer's --dim (0: the model's width). Throws UsageError for --dim on a v1.x model or outside
// 16/32/64/128 (or above the model's width), and Error naming the model's file for a v1.1 model
// without mpc/aws statistics, a v1.1 or v2 file with fixed step axes, or inputs and output that
// are not a Tessera model's (ModelDescription::io).
TilePipeline tile_pipeline(const ModelDescription& model, int dim);

// The bucket length of n valid observations: the smallest multiple of 8 >= n, at most 256; 0
// for n = 0 (callers apply their version's rule for empty modalities).
int64_t bucket_length(int64_t n);

// The n_out indices into 0..n-1 that `resampling` picks for n valid observations (n >= 1,
// n_out >= 1), written to out[0..n_out). Pure; no allocation.
void resample_indices(Resampling resampling, int64_t n, int64_t n_out, int64_t* out);

}  // namespace tessera
