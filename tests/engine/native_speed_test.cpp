// Speed of the native engine against ONNX Runtime on one model, alternating engines within
// each round so that other load on the machine hits them alike. Disabled by default:
//   TESSERA_SPEED_MODEL=/tmp/full.onnx build/tests/test_engine
//     --gtest_also_run_disabled_tests --gtest_filter='*NativeSpeed*'
// Optional: TESSERA_SPEED_BATCHES (default "64,256"), TESSERA_SPEED_ROUNDS (default 5),
// TESSERA_SPEED_PRECISIONS (default "fp32,bf16,int8"), TESSERA_SPEED_THREADS (default 1),
// TESSERA_SPEED_STEPS ("S2,S1": the step counts of a model with symbolic steps; default the
// model's own, kMaxModelSteps for symbolic ones).

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <sstream>
#include <vector>

#include "tessera/engine/dummy_inputs.h"
#include "tessera/engine/native/native_engine.h"
#include "tessera/engine/ort/ort_engine.h"
#include "tessera/pipeline/quantiser.h"

namespace tessera {
namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value && *value ? value : fallback;
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  for (std::string part; std::getline(stream, part, ',');) parts.push_back(part);
  return parts;
}

double thread_cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return double(now.tv_sec) + 1e-9 * double(now.tv_nsec);
}

struct RunTime {
  double wall = 0, cpu = 0;  // seconds; cpu: this thread's CPU time (one-thread runs only)
};

// With one thread both ORT (intra-op 1) and oneDNN (OpenMP 1) compute on the calling thread, so
// its CPU time is the run's compute time even while other processes share the cores.
RunTime time_run(Engine& engine, int64_t batch) {
  const double cpu_start = thread_cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
  engine.run(batch);
  return {std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
          thread_cpu_seconds() - cpu_start};
}

// Sets TESSERA_SPEED_STEPS on `engine` when given.
void set_speed_steps(Engine& engine) {
  const std::vector<std::string> steps = split_commas(env_or("TESSERA_SPEED_STEPS", ""));
  if (steps.size() == 2) engine.set_steps(std::stoll(steps[0]), std::stoll(steps[1]));
}

double median_of(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

TEST(NativeSpeed, DISABLED_AgainstOnnxRuntime) {
  const std::string model = env_or("TESSERA_SPEED_MODEL", "");
  if (model.empty()) GTEST_SKIP() << "set TESSERA_SPEED_MODEL";
  const int rounds = std::stoi(env_or("TESSERA_SPEED_ROUNDS", "5"));
  const int threads = std::stoi(env_or("TESSERA_SPEED_THREADS", "1"));
  std::vector<int64_t> batches;
  for (const auto& b : split_commas(env_or("TESSERA_SPEED_BATCHES", "64,256")))
    batches.push_back(std::stoll(b));
  const int64_t capacity = *std::max_element(batches.begin(), batches.end());

  std::vector<std::unique_ptr<Engine>> engines;
  std::vector<std::string> names;
  OrtEngineOptions ort;
  ort.max_batch = capacity;
  ort.intra_op_threads = threads;
  engines.push_back(std::make_unique<OrtEngine>(model, ort));
  names.push_back("ort fp32");
  for (const auto& precision : split_commas(env_or("TESSERA_SPEED_PRECISIONS", "fp32,bf16,int8"))) {
    NativeEngineOptions options;
    options.precision = parse_precision(precision);
    options.max_batch = capacity;
    options.threads = threads;
    engines.push_back(std::make_unique<NativeEngine>(model, options));
    names.push_back("native " + precision);
  }
  for (auto& engine : engines) {
    set_speed_steps(*engine);
    fill_dummy_inputs(*engine, 17);
  }

  for (const int64_t batch : batches) {
    std::vector<std::vector<double>> wall(engines.size()), cpu(engines.size());
    for (auto& engine : engines) engine->run(batch);  // warm-up: primitives, pages, caches
    for (int round = 0; round < rounds; ++round) {
      for (size_t e = 0; e < engines.size(); ++e) {
        const RunTime t = time_run(*engines[e], batch);
        wall[e].push_back(t.wall * 1e3 / double(batch));
        cpu[e].push_back(t.cpu * 1e3 / double(batch));
      }
    }
    fmt::print("batch {} ({} rounds, {} thread(s)): ms/pixel, medians; speed-up vs ORT\n", batch,
               rounds, threads);
    const double ort_wall = median_of(wall[0]), ort_cpu = median_of(cpu[0]);
    for (size_t e = 0; e < engines.size(); ++e) {
      const double w = median_of(wall[e]), c = median_of(cpu[e]);
      fmt::print("  {:12} wall {:8.3f} (best {:8.3f}) x{:.2f}   thread cpu {:8.3f} x{:.2f}\n",
                 names[e], w, *std::min_element(wall[e].begin(), wall[e].end()), ort_wall / w, c,
                 ort_cpu / c);
    }
  }
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

struct Agreement {
  double mean_cosine = 0, min_cosine = 1, max_abs = 0, max_abs_reference = 0;
  double int8_equal = 0, int8_within_one = 0;  // shares of the quantised outputs (PIPELINE.md)
  int int8_largest = 0;                        // largest difference in quantisation levels
};

void add_int8_agreement(const float* a, const float* b, int64_t pixels, int64_t dim,
                        Agreement& out) {
  std::vector<int8_t> qa(static_cast<size_t>(pixels * dim)), qb(qa.size());
  std::vector<float> scales(static_cast<size_t>(pixels));
  quantize_embeddings(a, pixels, static_cast<int>(dim), qa.data(), scales.data());
  quantize_embeddings(b, pixels, static_cast<int>(dim), qb.data(), scales.data());
  for (size_t i = 0; i < qa.size(); ++i) {
    const int difference = std::abs(int(qa[i]) - int(qb[i]));
    out.int8_equal += difference == 0 ? 1.0 / double(qa.size()) : 0.0;
    out.int8_within_one += difference <= 1 ? 1.0 / double(qa.size()) : 0.0;
    out.int8_largest = std::max(out.int8_largest, difference);
  }
}

Agreement agreement(const float* a, const float* b, int64_t pixels, int64_t dim) {
  Agreement out;
  for (int64_t p = 0; p < pixels; ++p) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < dim; ++i) {
      const double x = a[p * dim + i], y = b[p * dim + i];
      ab += x * y;
      aa += x * x;
      bb += y * y;
      out.max_abs = std::max(out.max_abs, std::fabs(x - y));
      out.max_abs_reference = std::max(out.max_abs_reference, std::fabs(y));
    }
    const double cosine = ab / std::sqrt(aa * bb);
    out.mean_cosine += cosine / double(pixels);
    out.min_cosine = std::min(out.min_cosine, cosine);
  }
  add_int8_agreement(a, b, pixels, dim, out);
  return out;
}

// bf16 and int8 against native fp32, and native fp32 against ORT, on the same inputs.
TEST(NativeSpeed, DISABLED_AccuracyAgainstFp32) {
  const std::string model = env_or("TESSERA_SPEED_MODEL", "");
  if (model.empty()) GTEST_SKIP() << "set TESSERA_SPEED_MODEL";
  const int64_t pixels = std::stoll(env_or("TESSERA_ACCURACY_PIXELS", "256"));
  OrtEngineOptions ort_options;
  ort_options.max_batch = pixels;
  OrtEngine ort(model, ort_options);
  set_speed_steps(ort);
  fill_dummy_inputs(ort, 23);
  ort.run(pixels);
  std::vector<std::vector<float>> outputs;
  for (const std::string precision : {"fp32", "bf16", "int8"}) {
    NativeEngineOptions options;
    options.precision = parse_precision(precision);
    options.max_batch = pixels;
    NativeEngine engine(model, options);
    set_speed_steps(engine);
    fill_dummy_inputs(engine, 23);
    engine.run(pixels);
    outputs.emplace_back(engine.output(), engine.output() + pixels * engine.shape().output_dim);
  }
  const int64_t dim = ort.shape().output_dim;
  const auto show = [&](const char* what, const float* a, const float* b) {
    const Agreement g = agreement(a, b, pixels, dim);
    fmt::print(
        "{:22} cosine mean {:.7f} min {:.7f}, max |diff| {:.3g} (max |ref| {:.3g}); int8 "
        "outputs {:.1f} % equal, {:.2f} % within 1 level, largest difference {}\n",
        what, g.mean_cosine, g.min_cosine, g.max_abs, g.max_abs_reference, 100 * g.int8_equal,
        100 * g.int8_within_one, g.int8_largest);
  };
  fmt::print("{} pixels of fill_dummy_inputs (bands N(0,1), day of year 1..365)\n", pixels);
  show("native fp32 vs ORT", outputs[0].data(), ort.output());
  show("native bf16 vs fp32", outputs[1].data(), outputs[0].data());
  show("native int8 vs fp32", outputs[2].data(), outputs[0].data());
}

}  // namespace
}  // namespace tessera
