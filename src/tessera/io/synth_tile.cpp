#include "tessera/io/synth_tile.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <vector>

#include "tessera/common/error.h"
#include "tessera/io/atomic_file.h"

namespace tessera {
namespace {

constexpr int kBands = 10;
constexpr int kClasses = 6;
constexpr int64_t kCloudCell = 24;  // clouds come in square cells of this many pixels

// A land-cover class: reflectance x 10000 when dormant and at the seasonal peak (band order
// B04 B02 B03 B08 B8A B05 B06 B07 B11 B12), the peak's day of year and width (days; 0 = no
// season), and S1 backscatter in dB (VV, VH) when dormant and at the peak.
struct LandCover {
  float dormant[kBands];
  float peak[kBands];
  float peak_doy;
  float width;
  float vv[2];
  float vh[2];
};

constexpr LandCover kCover[kClasses] = {
    // water
    {{300, 500, 550, 200, 180, 320, 250, 220, 100, 80},
     {320, 520, 650, 250, 220, 360, 280, 250, 110, 90},
     200,
     60,
     {-20, -20},
     {-27, -27}},
    // forest
    {{500, 400, 550, 2200, 2300, 900, 1600, 2000, 1800, 1000},
     {250, 250, 450, 3800, 3900, 700, 2500, 3300, 1600, 700},
     190,
     60,
     {-8.5f, -7},
     {-15, -13}},
    // crop
    {{1500, 1000, 1200, 2000, 2200, 1700, 1900, 2000, 2800, 2300},
     {300, 300, 600, 4800, 4900, 900, 3000, 4200, 2200, 1100},
     170,
     35,
     {-14, -9},
     {-22, -15}},
    // grassland
    {{900, 600, 800, 2400, 2500, 1200, 1900, 2200, 2400, 1600},
     {500, 400, 700, 3500, 3600, 1000, 2600, 3100, 2000, 1200},
     150,
     70,
     {-12, -10},
     {-19, -17}},
    // urban
    {{1400, 1100, 1250, 2000, 2100, 1500, 1800, 1950, 2300, 2000},
     {1400, 1100, 1250, 2000, 2100, 1500, 1800, 1950, 2300, 2000},
     0,
     0,
     {-5, -5},
     {-12, -12}},
    // bare
    {{2200, 1500, 1800, 2800, 3000, 2500, 2700, 2800, 3800, 3300},
     {2200, 1500, 1800, 2800, 3000, 2500, 2700, 2800, 3800, 3300},
     0,
     0,
     {-13, -13},
     {-22, -22}},
};

constexpr float kCloud[kBands] = {6500, 6800, 6700, 7000, 7000, 6700, 6800, 6900, 5000, 4000};

uint64_t mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A uniform number in [0, 1) that depends only on (seed, stream, a, b).
double hash01(uint64_t seed, uint64_t stream, uint64_t a, uint64_t b = 0) {
  const uint64_t h = mix(mix(mix(seed ^ mix(stream)) ^ a) ^ b);
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

// Sequential noise source (xorshift64*), seeded per array so arrays are independent.
struct Noise {
  uint64_t s;
  explicit Noise(uint64_t seed) : s(mix(seed) | 1) {}
  // Uniform in [-1, 1).
  float next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    const uint64_t r = s * 0x2545f4914f6cdd1dull;
    return static_cast<float>(static_cast<double>(r >> 40) * 0x1.0p-23 - 1.0);
  }
};

std::vector<int16_t> make_doys(int64_t steps, uint64_t seed, uint64_t stream) {
  std::vector<int16_t> doys(static_cast<std::size_t>(steps));
  for (int64_t t = 0; t < steps; ++t) {
    const double jitter = 0.8 * (hash01(seed, stream, static_cast<uint64_t>(t)) - 0.5);
    const double d = 1.0 + std::floor((static_cast<double>(t) + 0.5 + jitter) * 365.0 /
                                      static_cast<double>(steps));
    doys[static_cast<std::size_t>(t)] = static_cast<int16_t>(std::clamp(d, 1.0, 365.0));
  }
  std::sort(doys.begin(), doys.end());
  return doys;
}

// Seasonal weight in [0, 1] of a class at `doy`, shifted by `shift` days.
float season(const LandCover& c, float doy, float shift) {
  if (c.width <= 0) return 0.0f;
  const float x = (doy - c.peak_doy - shift) / c.width;
  return std::exp(-x * x);
}

// The tile's spatial structure: Voronoi patches, each with a class, a brightness factor and a
// phenology shift; and which pixels have no data at all.
struct Layout {
  std::vector<uint8_t> patch_of;   // per pixel
  std::vector<uint8_t> cls;        // per patch
  std::vector<float> bright;       // per patch
  std::vector<float> shift;        // per patch
  std::vector<uint8_t> nodata;     // per pixel
  std::vector<int32_t> cell_of;    // per pixel: cloud cell index
  std::vector<double> clear_rate;  // per cloud cell (varied_observations)
  int64_t cells = 0;
};

// The clear-sky rate of each cloud cell of a tile of `steps` S2 steps (SynthOptions,
// varied_observations): 5% of cells see about 0-8 clear steps, 3% nearly all, the rest 40-100.
std::vector<double> varied_clear_rates(const SynthOptions& o, int64_t cells) {
  std::vector<double> rates(static_cast<std::size_t>(cells));
  const auto steps = static_cast<double>(o.s2_steps);
  for (int64_t c = 0; c < cells; ++c) {
    const double kind = hash01(o.seed, 9, static_cast<uint64_t>(c));
    const double u = hash01(o.seed, 10, static_cast<uint64_t>(c));
    double clear = 40.0 + 60.0 * u;  // expected clear steps
    if (kind < 0.05) clear = 8.0 * u;
    if (kind >= 0.05 && kind < 0.08) clear = 0.97 * steps;
    rates[static_cast<std::size_t>(c)] = std::min(1.0, clear / steps);
  }
  return rates;
}

Layout make_layout(const SynthOptions& o) {
  Layout l;
  const int64_t plane = o.height * o.width;
  const int64_t patches = std::clamp<int64_t>(plane / (48 * 48), 4, 255);
  std::vector<float> cy(static_cast<std::size_t>(patches)), cx(cy.size());
  for (int64_t k = 0; k < patches; ++k) {
    const auto i = static_cast<std::size_t>(k);
    cy[i] = static_cast<float>(hash01(o.seed, 1, static_cast<uint64_t>(k)) * o.height);
    cx[i] = static_cast<float>(hash01(o.seed, 2, static_cast<uint64_t>(k)) * o.width);
    l.cls.push_back(static_cast<uint8_t>(hash01(o.seed, 3, static_cast<uint64_t>(k)) * kClasses));
    l.bright.push_back(static_cast<float>(0.9 + 0.2 * hash01(o.seed, 4, static_cast<uint64_t>(k))));
    l.shift.push_back(
        static_cast<float>(40.0 * (hash01(o.seed, 5, static_cast<uint64_t>(k)) - 0.5)));
  }
  const int64_t cells_x = (o.width + kCloudCell - 1) / kCloudCell;
  l.cells = cells_x * ((o.height + kCloudCell - 1) / kCloudCell);
  if (o.varied_observations) l.clear_rate = varied_clear_rates(o, l.cells);
  l.patch_of.resize(static_cast<std::size_t>(plane));
  l.nodata.resize(static_cast<std::size_t>(plane));
  l.cell_of.resize(static_cast<std::size_t>(plane));
  for (int64_t y = 0; y < o.height; ++y) {
    for (int64_t x = 0; x < o.width; ++x) {
      const auto p = static_cast<std::size_t>(y * o.width + x);
      float best = 1e30f;
      uint8_t arg = 0;
      for (std::size_t k = 0; k < cy.size(); ++k) {
        const float dy = cy[k] - static_cast<float>(y), dx = cx[k] - static_cast<float>(x);
        const float d = dy * dy + dx * dx;
        if (d < best) {
          best = d;
          arg = static_cast<uint8_t>(k);
        }
      }
      l.patch_of[p] = arg;
      l.nodata[p] = hash01(o.seed, 6, p) < o.nodata ? 1 : 0;
      l.cell_of[p] = static_cast<int32_t>((y / kCloudCell) * cells_x + x / kCloudCell);
    }
  }
  return l;
}

void write_s2(const std::string& dir, const SynthOptions& o, const Layout& l) {
  const int64_t plane = o.height * o.width;
  const int64_t patches = static_cast<int64_t>(l.cls.size());
  const std::vector<int16_t> doys = make_doys(o.s2_steps, o.seed, 7);

  NpyWriter bands(dir + "/bands.npy", o.band_dtype, {o.s2_steps, o.height, o.width, kBands});
  NpyWriter masks(dir + "/masks.npy", DType::kUInt8, {o.s2_steps, o.height, o.width});
  // int16 and uint16 hold the same bytes for 0..10000.
  auto* out = static_cast<uint16_t*>(bands.data());
  auto* mask = static_cast<uint8_t*>(masks.data());
  Noise noise(o.seed ^ 0x5332ull);
  std::vector<float> curve(static_cast<std::size_t>(patches * kBands));
  std::vector<uint8_t> cloudy(static_cast<std::size_t>(l.cells));
  for (int64_t t = 0; t < o.s2_steps; ++t) {
    const float doy = doys[static_cast<std::size_t>(t)];
    for (int64_t k = 0; k < patches; ++k) {
      const auto i = static_cast<std::size_t>(k);
      const LandCover& c = kCover[l.cls[i]];
      const float g = season(c, doy, l.shift[i]);
      for (int b = 0; b < kBands; ++b) {
        curve[i * kBands + static_cast<std::size_t>(b)] =
            l.bright[i] * (c.dormant[b] + g * (c.peak[b] - c.dormant[b]));
      }
    }
    for (int64_t c = 0; c < l.cells; ++c) {
      const double u = hash01(o.seed, 8, static_cast<uint64_t>(t), static_cast<uint64_t>(c));
      cloudy[static_cast<std::size_t>(c)] =
          o.varied_observations ? u >= l.clear_rate[static_cast<std::size_t>(c)] : u < o.cloud;
    }
    for (int64_t p = 0; p < plane; ++p) {
      const auto pi = static_cast<std::size_t>(p);
      uint16_t* v = out + (t * plane + p) * kBands;
      if (l.nodata[pi]) {
        std::memset(v, 0, kBands * sizeof(uint16_t));
        mask[t * plane + p] = 0;
        continue;
      }
      const bool cloud = cloudy[static_cast<std::size_t>(l.cell_of[pi])] != 0;
      const float* base = cloud ? kCloud : curve.data() + std::size_t{l.patch_of[pi]} * kBands;
      for (int b = 0; b < kBands; ++b) {
        const float r = base[b] * (1.0f + 0.03f * noise.next());
        v[b] = static_cast<uint16_t>(std::clamp(std::lround(r), 1L, 10000L));
      }
      mask[t * plane + p] = cloud ? 0 : 1;
    }
  }
  bands.commit();
  masks.commit();
  write_npy(dir + "/doys.npy", DType::kInt16, {o.s2_steps}, doys.data());
}

void write_s1_direction(const std::string& dir, const std::string& name, int64_t steps,
                        uint64_t stream, const SynthOptions& o, const Layout& l) {
  const int64_t plane = o.height * o.width;
  const std::vector<int16_t> doys = make_doys(steps, o.seed, stream);
  NpyWriter sar(dir + "/" + name + ".npy", DType::kInt16, {steps, o.height, o.width, 2});
  auto* out = static_cast<int16_t*>(sar.data());
  Noise noise(o.seed ^ mix(stream));
  for (int64_t t = 0; t < steps; ++t) {
    const float doy = doys[static_cast<std::size_t>(t)];
    for (int64_t p = 0; p < plane; ++p) {
      const auto pi = static_cast<std::size_t>(p);
      int16_t* v = out + (t * plane + p) * 2;
      const float u0 = noise.next(), u1 = noise.next(), gap = noise.next();
      if (l.nodata[pi] || gap > 0.98f) {  // about 1% of observations missing
        v[0] = v[1] = 0;
        continue;
      }
      const std::size_t k = l.patch_of[pi];
      const LandCover& c = kCover[l.cls[k]];
      const float g = season(c, doy, l.shift[k]);
      const float vv = c.vv[0] + g * (c.vv[1] - c.vv[0]) + 1.5f * u0;
      const float vh = c.vh[0] + g * (c.vh[1] - c.vh[0]) + 1.5f * u1;
      v[0] = static_cast<int16_t>(std::clamp(std::lround((vv + 40.0f) * 200.0f), 1L, 32767L));
      v[1] = static_cast<int16_t>(std::clamp(std::lround((vh + 40.0f) * 200.0f), 1L, 32767L));
    }
  }
  sar.commit();
  write_npy(dir + "/" + name + "_doy.npy", DType::kInt16, {steps}, doys.data());
}

std::string number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace

void validate(const SynthOptions& o) {
  if (o.height < 1 || o.width < 1 || o.height > 100000 || o.width > 100000) {
    throw UsageError("--size: need H and W in 1..100000, got " + std::to_string(o.height) + "x" +
                     std::to_string(o.width));
  }
  if (o.s2_steps < 1 || o.s2_steps > 10000) {
    throw UsageError("--s2-steps: need 1..10000, got " + std::to_string(o.s2_steps));
  }
  if (o.s1_asc_steps < 0 || o.s1_desc_steps < 0 || o.s1_asc_steps > 10000 ||
      o.s1_desc_steps > 10000) {
    throw UsageError("--s1-steps: need 0..10000 per direction");
  }
  if (!(o.cloud >= 0.0 && o.cloud <= 1.0)) {
    throw UsageError("--cloud: need a fraction in [0, 1], got " + number(o.cloud));
  }
  if (!(o.nodata >= 0.0 && o.nodata <= 1.0)) {
    throw UsageError("--nodata: need a fraction in [0, 1], got " + number(o.nodata));
  }
  if (o.band_dtype != DType::kInt16 && o.band_dtype != DType::kUInt16) {
    throw UsageError(std::string("--dtype: need int16 or uint16, got ") + dtype_name(o.band_dtype));
  }
}

namespace {

// "" when `dir` holds nothing but a tile's files (nested or flat), else why not, naming the
// first other entry: --force may replace a tile, never a directory holding anything else.
std::string not_only_a_tile(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::vector<std::string> s2 = {"bands.npy", "masks.npy", "doys.npy"};
  const std::vector<std::string> s1 = {"sar_ascending.npy", "sar_ascending_doy.npy",
                                       "sar_descending.npy", "sar_descending_doy.npy"};
  const auto one_of = [](const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  const auto regular = [](const fs::directory_entry& entry) {
    std::error_code ec;
    return entry.is_regular_file(ec);
  };
  try {
    for (const auto& entry : fs::directory_iterator(dir)) {
      const std::string name = entry.path().filename().string();
      std::error_code ec;
      if (entry.is_directory(ec) && (name == "s2" || name == "s1")) {
        for (const auto& inner : fs::directory_iterator(entry.path())) {
          if (!regular(inner) || !one_of(name == "s2" ? s2 : s1, inner.path().filename())) {
            return "holds more than a tile (" + inner.path().string() + ")";
          }
        }
      } else if (!regular(entry) ||
                 (!one_of(s2, name) && !one_of(s1, name) && name != "roi.tiff")) {
        return "holds more than a tile (" + entry.path().string() + ")";
      }
    }
  } catch (const fs::filesystem_error& e) {
    return "cannot be read through (" + e.code().message() + ")";
  }
  return "";
}

}  // namespace

void write_synth_tile(const std::string& dir, const SynthOptions& o, bool force,
                      const std::function<void(const std::string& dir)>& add_files) {
  validate(o);
  std::string final_dir = dir;
  while (final_dir.size() > 1 && final_dir.back() == '/') final_dir.pop_back();
  AtomicDirectory out(final_dir, force, not_only_a_tile);
  const std::string root = out.temp_path();
  std::string s2 = root, s1 = root;
  if (o.nested) {
    s2 += "/s2";
    s1 += "/s1";
    for (const std::string& sub : {s2, s1}) {
      std::error_code ec;
      if (!std::filesystem::create_directory(sub, ec)) {
        throw Error(final_dir + ": cannot create " + sub + ": " + ec.message());
      }
    }
  }
  const Layout layout = make_layout(o);
  write_s2(s2, o, layout);
  write_s1_direction(s1, "sar_ascending", o.s1_asc_steps, 9, o, layout);
  write_s1_direction(s1, "sar_descending", o.s1_desc_steps, 10, o, layout);
  if (add_files) add_files(root);
  out.commit();
}

}  // namespace tessera
