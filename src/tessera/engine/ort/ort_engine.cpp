#include "tessera/engine/ort/ort_engine.h"

#include <fmt/format.h>
#include <onnxruntime_session_options_config_keys.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tessera/common/clock.h"
#include "tessera/common/error.h"
#include "tessera/engine/ort/ort_backend.h"
#include "tessera/engine/ort/ort_cuda.h"
#include "tessera/model/fp16_model.h"

namespace tessera {
// One ORT environment per process: sessions share its logger; each session keeps its own
// thread pool (per-session pools are what pinned parallel workers need).
Ort::Env& ort_env() {
  static Ort::Env env(ort_log_level(std::getenv("TESSERA_ORT_LOG")), "tessera");
  return env;
}

bool cpu_memory_pattern(const char* value) {
  const std::string text = value ? value : "";
  if (text.empty() || text == "0") return false;
  if (text == "1") return true;
  throw UsageError("TESSERA_CPU_MEM_PATTERN: expected 0 or 1 (got '" + text + "')");
}

std::unique_ptr<Ort::Session> open_session(const std::string& model_path,
                                           const Ort::SessionOptions& options, bool fp16) {
  if (!fp16) return std::make_unique<Ort::Session>(ort_env(), model_path.c_str(), options);
  const std::string bytes = fp16_model_bytes(model_path);
  return std::make_unique<Ort::Session>(ort_env(), bytes.data(), bytes.size(), options);
}

GraphOptimizationLevel graph_optimization_level(int level) {
  switch (level) {
    case 0:
      return ORT_DISABLE_ALL;
    case 1:
      return ORT_ENABLE_BASIC;
    case 2:
      return ORT_ENABLE_EXTENDED;
    case 99:
      return ORT_ENABLE_ALL;
  }
  throw UsageError(
      fmt::format("unknown graph optimisation level {} (expected 0, 1, 2 or 99)", level));
}

OrtLoggingLevel ort_log_level(const char* name) {
  const std::string level = name ? name : "";
  // Unset: fatal only. ORT's errors come back as statuses that tessera turns into its own
  // one-line messages; ORT's logger would print each a second time.
  if (level.empty() || level == "fatal") return ORT_LOGGING_LEVEL_FATAL;
  if (level == "error") return ORT_LOGGING_LEVEL_ERROR;
  if (level == "verbose") return ORT_LOGGING_LEVEL_VERBOSE;
  if (level == "info") return ORT_LOGGING_LEVEL_INFO;
  if (level == "warning") return ORT_LOGGING_LEVEL_WARNING;
  throw UsageError("TESSERA_ORT_LOG: unknown log level '" + level +
                   "' (expected verbose, info, warning, error or fatal)");
}

namespace {

// Whether the model's step axes are symbolic; false for a file read_model_shape refuses, whose
// one-line error comes from the checks that follow (the ScatterND refusal, check_model_io).
bool has_symbolic_steps(const std::string& model_path) {
  try {
    return read_model_shape(model_path).symbolic_steps;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace

std::string ort_version() {
  return Ort::GetVersionString();
}

void check_ort_precision(Precision precision) {
  if (precision != Precision::fp32 && precision != Precision::tf32 && precision != Precision::fp16)
    throw UsageError("the ort engine computes fp32, tf32 or fp16, not " +
                     precision_name(precision));
}

OrtEngine::OrtEngine(const std::string& model_path, const OrtEngineOptions& options)
    : options_(options),
      memory_info_(Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault)) {
  if (options_.max_batch < 1) {
    throw UsageError(fmt::format("batch size must be at least 1 (got {})", options_.max_batch));
  }
  if (options_.intra_op_threads < 1) {
    throw UsageError(
        fmt::format("thread count must be at least 1 (got {})", options_.intra_op_threads));
  }
  const int cuda_device = options_.device.cuda_index;
  if (options_.device.gpu_path != GpuPath::automatic) {
    throw UsageError(options_.device.name() +
                     ": the IO-binding paths are run by OrtCudaEngine, not OrtEngine");
  }
  check_ort_precision(options_.precision);
  std::error_code ec;
  if (!std::filesystem::exists(model_path, ec)) throw Error(model_path + ": no such file");
  if (std::filesystem::is_directory(model_path, ec))
    throw Error(model_path + ": is a directory, not an ONNX model");
  if (!std::ifstream(model_path).good()) throw Error(model_path + ": cannot be read");

  Ort::SessionOptions session_options;
  session_options.SetIntraOpNumThreads(options_.intra_op_threads);
  session_options.SetInterOpNumThreads(1);
  session_options.SetExecutionMode(ORT_SEQUENTIAL);
  session_options.SetGraphOptimizationLevel(graph_optimization_level(options_.optimization_level));
  if (cuda_device < 0 && !cpu_memory_pattern(std::getenv("TESSERA_CPU_MEM_PATTERN"))) {
    // ORT's memory pattern plans one block per input shape from the first run and allocates it
    // on the second, beside the arena the first run grew: on the CPU that is a second slow run
    // and ~0.8 GB more per session of the full model at batch 256, for no speed in steady state
    // (docs/PERFORMANCE.md). The arena alone serves the runs.
    session_options.DisableMemPattern();
  } else if (has_symbolic_steps(model_path)) {
    // With length buckets the input shapes change from run to run, and ORT would plan and keep
    // one memory pattern per shape: hundreds on a tile, for nothing.
    session_options.DisableMemPattern();
  }
  session_options.AddConfigEntry(kOrtSessionOptionsConfigAllowIntraOpSpinning,
                                 options_.spinning ? "1" : "0");
  session_options.AddConfigEntry(kOrtSessionOptionsConfigSetDenormalAsZero, "1");
  if (!options_.thread_affinities.empty()) {
    session_options.AddConfigEntry(kOrtSessionOptionsConfigIntraOpThreadAffinities,
                                   options_.thread_affinities.c_str());
  }
  if (cuda_device >= 0) {
    refuse_models_that_crash_cuda(model_path);
    append_cuda_provider(session_options, options_.device, options_.precision);
  }

  const auto start = Clock::now();
  try {
    session_ = open_session(model_path, session_options,
                            cuda_device >= 0 && options_.precision == Precision::fp16);
  } catch (const Ort::Exception& e) {
    throw Error(model_path + ": not a loadable ONNX model (ONNX Runtime: " + first_line(e.what()) +
                ")");
  }
  session_seconds_ = seconds_since(start);

  check_model_io(model_path);
  const int64_t pixel_floats =
      shape_.s2_pixel_floats() + shape_.s1_pixel_floats() + shape_.output_dim;
  require_buffer_memory(model_path, "ort engine", options_.max_batch,
                        options_.max_batch * pixel_floats * static_cast<int64_t>(sizeof(float)));
  // Allocated (and zero-filled, so first-touched) by the constructing thread.
  s2_.assign(options_.max_batch * shape_.s2_pixel_floats(), 0.0f);
  s1_.assign(options_.max_batch * shape_.s1_pixel_floats(), 0.0f);
  out_.assign(options_.max_batch * shape_.output_dim, 0.0f);
}

OrtEngine::~OrtEngine() = default;

std::string OrtEngine::name() const {
  return "ort-" + options_.device.name();
}

void OrtEngine::check_model_io(const std::string& model_path) {
  shape_ = read_model_shape(model_path);
  check_finite_weights(model_path);
  if (shape_.batch >= 0 && shape_.batch != options_.max_batch) {
    throw Error(fmt::format("{}: takes batches of exactly {} pixels, not {}", model_path,
                            shape_.batch, options_.max_batch));
  }
}

void OrtEngine::run(int64_t batch) {
  if (batch < 1 || batch > options_.max_batch) {
    throw Error(fmt::format("batch of {} pixels is outside 1..{}", batch, options_.max_batch));
  }
  const int64_t s2_shape[3] = {batch, s2_steps(), shape_.s2_features};
  const int64_t s1_shape[3] = {batch, s1_steps(), shape_.s1_features};
  const int64_t out_shape[2] = {batch, shape_.output_dim};
  Ort::Value inputs[2] = {Ort::Value::CreateTensor<float>(memory_info_, s2_.data(),
                                                          batch * s2_pixel_floats(), s2_shape, 3),
                          Ort::Value::CreateTensor<float>(memory_info_, s1_.data(),
                                                          batch * s1_pixel_floats(), s1_shape, 3)};
  Ort::Value output = Ort::Value::CreateTensor<float>(memory_info_, out_.data(),
                                                      batch * shape_.output_dim, out_shape, 2);
  static const char* const kInputNames[2] = {"s2_input", "s1_input"};
  static const char* const kOutputNames[1] = {"output"};
  try {
    session_->Run(run_options_, kInputNames, inputs, 2, kOutputNames, &output, 1);
  } catch (const Ort::Exception& e) {
    throw_ort_error(name() + ": inference failed (ONNX Runtime: " + one_line(e.what()) + ")");
  }
}

}  // namespace tessera
