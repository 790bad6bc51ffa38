#pragma once
// OrtEngine: the Tessera model on ONNX Runtime (CPU execution provider, or CUDA when asked
// for and available). Owns one Ort::Session and the pre-allocated input/output buffers of
// max_batch pixels that every run() reuses.
//
// Invariants: the model's inputs are exactly `s2_input` [B, T2, F2] and `s1_input` [B, T1, F1]
// and its output `output` [B, D], all float32, with B dynamic (or equal to max_batch); the
// constructor checks this and throws tessera::Error naming the file otherwise. Inter-op
// threads are always 1 (the graph is one long chain).

#include <onnxruntime_cxx_api.h>

#include <memory>
#include <string>
#include <vector>

#include "tessera/engine/choice/engine_choice.h"
#include "tessera/engine/engine.h"

namespace tessera {

struct OrtEngineOptions {
  Device device;                          // the CPU, cuda:N, or (OrtCudaEngine) cuda:N+io|+graph
  int intra_op_threads = 1;               // >= 1; ORT's own default (0) is never used
  bool spinning = true;                   // session.intra_op.allow_spinning
  int optimization_level = 99;            // 0 none, 1 basic, 2 extended, 99 all
  std::string thread_affinities;          // session.intra_op_thread_affinities ("" = unpinned)
  int64_t max_batch = 256;                // buffer capacity in pixels
  Precision precision = Precision::tf32;  // cuda only: tf32 (ORT's default), fp32 or fp16
};

// Throws UsageError unless `precision` is fp32, tf32 or fp16 (CUDA: fp32 matmuls, tf32 matmuls,
// or the model's float16 version from fp16_model.h; a CPU session computes fp32).
void check_ort_precision(Precision precision);

// Whether CPU sessions use ORT's memory pattern, from TESSERA_CPU_MEM_PATTERN: "1" yes (ORT's
// default, for comparisons), "0" or unset no (tessera's default: docs/PERFORMANCE.md). Throws
// UsageError for any other value.
bool cpu_memory_pattern(const char* value);

// The session for `model_path` with `options`: from the file, or when `fp16` from the model's
// float16 version (fp16_model.h), converted in memory. Throws Ort::Exception, or Error when the
// conversion fails.
std::unique_ptr<Ort::Session> open_session(const std::string& model_path,
                                           const Ort::SessionOptions& options, bool fp16);

// The process's ONNX Runtime environment (one logger; sessions keep their own thread pools).
// Its log level comes from TESSERA_ORT_LOG (see ort_log_level), "fatal" when unset; an invalid
// value throws UsageError on first use.
Ort::Env& ort_env();

// ORT's graph optimisation level for OrtEngineOptions::optimization_level (0, 1, 2, 99).
// Throws UsageError for any other value.
GraphOptimizationLevel graph_optimization_level(int level);

// ORT's log level named by `name`: "verbose", "info", "warning", "error" or "fatal" (ORT logs to
// stderr). nullptr or "" give "fatal". Throws UsageError naming TESSERA_ORT_LOG otherwise.
OrtLoggingLevel ort_log_level(const char* name);

class OrtEngine : public Engine {
 public:
  OrtEngine(const std::string& model_path, const OrtEngineOptions& options);
  ~OrtEngine() override;
  OrtEngine(const OrtEngine&) = delete;
  OrtEngine& operator=(const OrtEngine&) = delete;

  const ModelShape& shape() const override { return shape_; }
  int64_t max_batch() const override { return options_.max_batch; }
  std::string name() const override;
  float* s2_input() override { return s2_.data(); }
  float* s1_input() override { return s1_.data(); }
  const float* output() const override { return out_.data(); }
  void run(int64_t batch) override;
  // ORT checks the terminate flag of a run's options between nodes.
  void interrupt() override { run_options_.SetTerminate(); }
  void allow_runs() override { run_options_.UnsetTerminate(); }

  // Seconds spent creating the session (graph load + optimisation), for benchmarks.
  double session_seconds() const { return session_seconds_; }
  double build_seconds() const override { return session_seconds_; }
  // The input and output buffers (ONNX Runtime's own arena, which grows with the largest run,
  // is not counted).
  int64_t buffer_bytes() const override {
    return static_cast<int64_t>((s2_.size() + s1_.size() + out_.size()) * sizeof(float));
  }

 private:
  // Reads the model's inputs and output (a fixed batch must be max_batch) and checks its weights
  // are finite (check_finite_weights). Throws Error naming the file.
  void check_model_io(const std::string& model_path);

  OrtEngineOptions options_;
  ModelShape shape_;
  std::unique_ptr<Ort::Session> session_;
  Ort::MemoryInfo memory_info_;
  Ort::RunOptions run_options_;
  std::vector<float> s2_, s1_, out_;
  double session_seconds_ = 0;
};

}  // namespace tessera
