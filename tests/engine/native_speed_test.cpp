// Speed of the native engine against ONNX Runtime on one model, alternating engines within
// each round so that other load on the machine hits them alike. Disabled by default:
//   TESSERA_SPEED_MODEL=/tmp/full.onnx build/tests/test_engine
//     --gtest_also_run_disabled_tests --gtest_filter='*NativeSpeed*'
// Optional: TESSERA_SPEED_BATCHES (default "64,256"), TESSERA_SPEED_ROUNDS (default 5),
// TESSERA_SPEED_PRECISIONS (default "fp32,bf16,int8"), TESSERA_SPEED_THREADS (default 1).

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <vector>

#include "tessera/engine/native/native_engine.h"
#include "tessera/model/dummy_inputs.h"
#include "tessera/model/ort_engine.h"

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

double seconds_of_run(Engine& engine, int64_t batch) {
  const auto start = std::chrono::steady_clock::now();
  engine.run(batch);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
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
    options.precision = precision;
    options.max_batch = capacity;
    options.threads = threads;
    engines.push_back(std::make_unique<NativeEngine>(model, options));
    names.push_back("native " + precision);
  }
  for (auto& engine : engines) fill_dummy_inputs(*engine, 17);

  for (const int64_t batch : batches) {
    std::vector<std::vector<double>> times(engines.size());
    for (auto& engine : engines) engine->run(batch);  // warm-up: primitives, pages, caches
    for (int round = 0; round < rounds; ++round) {
      for (size_t e = 0; e < engines.size(); ++e)
        times[e].push_back(seconds_of_run(*engines[e], batch) * 1e3 / double(batch));
    }
    std::vector<double> medians;
    for (auto& t : times) {
      std::sort(t.begin(), t.end());
      medians.push_back(t[t.size() / 2]);
    }
    fmt::print("batch {} ({} rounds, {} thread(s)): ms/pixel median [best], speed-up vs ORT\n",
               batch, rounds, threads);
    for (size_t e = 0; e < engines.size(); ++e) {
      fmt::print("  {:12} {:8.3f} [{:8.3f}]  x{:.2f}\n", names[e], medians[e], times[e][0],
                 medians[0] / medians[e]);
    }
  }
}

}  // namespace
}  // namespace tessera
