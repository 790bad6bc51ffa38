#include "tessera/pipeline/tile_pipeline.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "tessera/common/error.h"

namespace tessera {
namespace {

// MODEL_FAMILY.md §A (pooled S1: one set for both orbits), §C (v1.1 MPC and AWS), §D (v2).
const InputStats kV10Stats = {{1711.0938f, 1308.8511f, 1546.4543f, 3010.1293f, 3106.5083f,
                               2068.3044f, 2685.0845f, 2931.5889f, 2514.6928f, 1899.4922f},
                              {1926.1026f, 1862.9751f, 1803.1792f, 1741.7837f, 1677.4543f,
                               1888.7862f, 1736.3090f, 1715.8104f, 1514.5199f, 1398.4779f},
                              {5484.0407f, 3003.7812f},
                              {1871.2334f, 1726.0670f},
                              {5484.0407f, 3003.7812f},
                              {1871.2334f, 1726.0670f}};
const InputStats kMpcStats = {{2683.4553f, 2223.3630f, 2432.0950f, 3633.1970f, 3602.1755f,
                               3006.4324f, 3400.2710f, 3515.6392f, 2456.9163f, 1983.8783f},
                              {2739.5217f, 2846.2993f, 2690.8250f, 2290.0439f, 2088.8970f,
                               2673.1106f, 2381.4521f, 2229.5225f, 1601.0942f, 1495.3545f},
                              {5588.3291f, 3025.6270f},
                              {1713.4646f, 1693.0471f},
                              {5552.9683f, 2955.0520f},
                              {1685.5857f, 1677.6414f}};
const InputStats kAwsStats = {{2793.6589f, 2356.7776f, 2551.0496f, 3741.9229f, 3713.7844f,
                               3120.1997f, 3516.3342f, 3637.0342f, 2501.0283f, 2038.1504f},
                              {2810.0093f, 2933.8835f, 2755.6360f, 2344.5027f, 2145.7986f,
                               2743.9019f, 2438.8601f, 2286.5977f, 1680.7367f, 1585.5529f},
                              {5697.0859f, 2838.6687f},
                              {1671.3737f, 1789.4116f},
                              {5759.1367f, 2873.2854f},
                              {1583.2858f, 1747.8390f}};
const InputStats kV2Stats = {{1633.0042f, 1341.1090f, 1539.5536f, 3054.8269f, 3117.4658f,
                              2004.1648f, 2694.7275f, 2945.1504f, 2266.6079f, 1657.3094f},
                             {1999.4603f, 2014.7549f, 1929.2201f, 1754.2493f, 1649.9807f,
                              1936.8988f, 1748.6041f, 1708.6991f, 1207.5250f, 1108.6046f},
                             {5909.3921f, 3405.0322f},
                             {1507.1750f, 1531.2615f},
                             {5816.1382f, 3277.7576f},
                             {1554.6475f, 1546.4733f}};

// The upper-middle element of each of the m near-equal chunks numpy's array_split(0..n-1, m)
// makes (the first n mod m chunks one longer), written to out[0..m).
void chunk_middles(int64_t n, int64_t m, int64_t* out) {
  const int64_t base = n / m, longer = n % m;
  int64_t start = 0;
  for (int64_t c = 0; c < m; ++c) {
    const int64_t length = base + (c < longer ? 1 : 0);
    out[c] = start + length / 2;
    start += length;
  }
}

// v1.1's build_resample_indices(n, B).
void spread_indices(int64_t n, int64_t b, int64_t* out) {
  if (b <= n) {
    chunk_middles(n, b, out);  // n == b: every chunk is one element, the identity
    return;
  }
  for (int64_t i = 0; i < n; ++i) out[i] = i;
  // The interior points of float64 linspace(0, n - 1, e + 2), rounded half to even.
  const int64_t extra = b - n;
  const double step = static_cast<double>(n - 1) / static_cast<double>(extra + 1);
  for (int64_t k = 1; k <= extra; ++k) {
    const double at = std::nearbyint(static_cast<double>(k) * step);
    out[n + k - 1] = std::clamp(static_cast<int64_t>(at), int64_t{0}, n - 1);
  }
}

// v2's _pad_pattern(n, B).
void pad_indices(int64_t n, int64_t b, int64_t* out) {
  if (n >= b) {
    // float64 linspace(0, n - 1, B) truncated; its last element is exactly n - 1.
    const double step = b > 1 ? static_cast<double>(n - 1) / static_cast<double>(b - 1) : 0.0;
    for (int64_t i = 0; i < b; ++i) out[i] = static_cast<int64_t>(static_cast<double>(i) * step);
    if (b > 1) out[b - 1] = n - 1;
    return;
  }
  for (int64_t i = 0; i < n; ++i) out[i] = i;
  const int64_t extra = b - n;
  if (extra <= n) {
    chunk_middles(n, extra, out + n);
  } else {
    for (int64_t k = 0; k < extra; ++k) out[n + k] = k % n;
  }
}

}  // namespace

const InputStats& input_stats(const std::string& name) {
  if (name == "v1.0") return kV10Stats;
  if (name == "mpc") return kMpcStats;
  if (name == "aws") return kAwsStats;
  if (name == "v2") return kV2Stats;
  throw Error("unknown statistics set '" + name + "' (v1.0, mpc, aws or v2)");
}

TilePipeline tile_pipeline(const ModelDescription& model, int dim) {
  const ModelShape& shape = model.io();
  TilePipeline p;
  p.version = model.version;
  p.output_dim = shape.output_dim;
  const std::string version = version_name(model.version);
  const bool v2 = model.version == ModelVersion::kV2;
  if (dim != 0 && !v2) {
    throw UsageError(fmt::format(
        "--dim applies to v2 models (Matryoshka prefixes); {} is a {} model", model.path, version));
  }
  if (dim != 0 && ((dim != 16 && dim != 32 && dim != 64 && dim != 128) || dim > shape.output_dim)) {
    throw UsageError(fmt::format("--dim must be 16, 32, 64 or 128 (at most the model's {}), not {}",
                                 shape.output_dim, dim));
  }
  if (!shape.symbolic_steps) p.sampled_steps = {shape.s2_steps, shape.s1_steps};
  if (model.version == ModelVersion::kV1_0 || model.version == ModelVersion::kV1_0Early) return p;
  if (!shape.symbolic_steps) {
    throw Error(fmt::format(
        "{}: a {} model needs symbolic step axes (length buckets of 1 to 256 steps), this file "
        "takes exactly {} + {} steps (a fixed-step copy from run-model?)",
        model.path, version, shape.s2_steps, shape.s1_steps));
  }
  p.bucketed = true;
  if (!v2) {  // v1.1
    if (model.stats != "mpc" && model.stats != "aws") {
      throw Error(model.path +
                  ": a v1.1 model needs its statistics set (tessera.stats mpc or aws; "
                  "import or make it with --stats mpc|aws), this one has '" +
                  model.stats + "'");
    }
    p.stats = model.stats;
    return p;
  }
  p.resampling = Resampling::kPad;
  p.stats = "v2";
  p.empty_modality_is_one_step = true;
  p.skips_empty_pixels = true;
  p.quant = QuantRule::kV2;
  if (dim != 0) p.output_dim = dim;
  return p;
}

int64_t bucket_length(int64_t n) {
  if (n <= 0) return 0;
  return std::min(kMaxBucket, (n + kMinBucket - 1) / kMinBucket * kMinBucket);
}

void resample_indices(Resampling resampling, int64_t n, int64_t n_out, int64_t* out) {
  if (resampling == Resampling::kSpread) {
    spread_indices(n, n_out, out);
  } else {
    pad_indices(n, n_out, out);
  }
}

}  // namespace tessera
