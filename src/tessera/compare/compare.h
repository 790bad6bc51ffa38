#pragma once
// How far two runs' embeddings are apart: what a user reads before choosing bf16 or int8 over
// fp32, or a GPU over a CPU. Inputs are infer outputs: `<grid>.npy` (int8, H x W x D) and
// `<grid>_scales.npy` (float32, H x W) of the same tile from two runs.
//
// Per tile and over all tiles: the share of int8 values equal and within one step, the largest
// difference in steps, the largest relative difference of the scales, and the cosine of each
// pixel's dequantised embeddings (q * scale) — mean, 0.1 % quantile and minimum. A pixel with
// no embedding in either run (scale 0 in both) is left out of the cosines; one with an
// embedding in one run only counts as cosine 0.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tessera/common/table.h"

namespace tessera {

struct EmbeddingAgreement {
  std::string tile;  // grid name, or "all"
  int64_t values = 0;
  int64_t pixels = 0;  // pixels with an embedding in at least one run
  double equal_percent = 0, within_one_percent = 0;
  int max_difference = 0;         // int8 steps
  double max_scale_relative = 0;  // max |sa - sb| / max(sa, sb) over pixels
  double cosine_mean = 1, cosine_q001 = 1, cosine_min = 1;
};

// The tiles of an output: a directory's `<grid>.npy` + `<grid>_scales.npy` pairs by grid name,
// or one `<grid>.npy` file (its scales beside it). Throws Error naming the path when there is
// none or a scales file is missing.
std::map<std::string, std::string> embedding_outputs(const std::string& path);

// Compares tile `grid`'s outputs at prefixes a and b (".npy" and "_scales.npy" appended).
// Throws Error naming the file whose dtype or shape does not fit, or both when they differ.
EmbeddingAgreement compare_tile(const std::string& grid, const std::string& a,
                                const std::string& b);

// Compares every tile of `a` with the same tile of `b`: one row per tile, then "all". Two
// <grid>.npy files are compared whatever their grid names; a directory's tiles are paired by
// grid name. Throws Error naming a tile that only one side has, or, for two directories of one
// tile each, both grids when they differ.
std::vector<EmbeddingAgreement> compare_outputs(const std::string& a, const std::string& b);

// Thresholds from "equal=99.5,within1=100,max-diff=1,cosine-mean=0.9999,cosine-q001=0.999,
// cosine-min=0.99,scale-rel=0.01" (any subset). Throws UsageError naming a bad entry.
std::map<std::string, double> parse_requirements(const std::string& text);
// The requirements `all` misses, one line each ("equal 98.2 % < 99.5 %").
std::vector<std::string> missed_requirements(const EmbeddingAgreement& all,
                                             const std::map<std::string, double>& required);

Table agreement_table(const std::vector<EmbeddingAgreement>& rows);

}  // namespace tessera
