#pragma once
// StageProfile: where a run's time goes, stage by stage. An engine that can (the native one)
// adds the time of each stage of its runs to the profile it is given (Engine::set_stage_profile);
// the runtime adds the stages outside the engine (input preparation, quantisation, writing).
// Off unless asked: with no profile attached nothing reads a clock.
//
// Invariants: times are steady-clock nanoseconds accumulated per stage, never per call; a GEMM
// stage also accumulates the floating-point (or integer) operations it did, 2·M·N·K per matmul;
// stages never nest, so their sum is at most the time of the runs they were measured in
// (`engine_ns`: the engine's run() calls, from entry to return).

#include <array>
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "tessera/common/table.h"

namespace tessera {

enum class Stage {
  kPrimitiveCreation,      // oneDNN primitives (and scratchpad) for a run shape met the first time
  kInputFeatures,          // band gather and the day-of-year encoding
  kGemmEmbedding,          // the two embedding Linears
  kGemmQkvOut,             // QKV and out-projection
  kGemmFfn,                // FFN1 and FFN2
  kGemmGruInput,           // the GRU's input projection (every step at once)
  kGemmGruRecurrent,       // the GRU's per-step recurrent matmuls
  kGemmFusion,             // the fusion Linear / MLP
  kAttentionCore,          // q kᵀ and p v, the batched matmuls of the attention core
  kSoftmax,                // the attention's softmax (float32, its output in the attention's type)
  kNormalization,          // residual + LayerNorm, QK RMSNorm, the fusion's LayerNorms
  kActivationConversion,   // int8 epilogues (row scales, bias, ReLU, requantise), bf16 stores
  kGruGates,               // the GRU's element-wise gates and state updates
  kPooling,                // attention pooling over the steps
  kTileScan,               // outside the engine: the scan that plans a tile's batches
  kInputPreparation,       // outside the engine: the preparer's resampling and standardising
  kEmbeddingQuantisation,  // outside the engine: the version's int8 rule
  kWriting,  // outside the engine: batches handed to the committer, outputs committed, formats
  kCount
};

// The stage's name in tables and JSON ("gemm_qkv_out", ...).
const char* stage_name(Stage stage);
// Whether the stage is a matmul whose rate against the bound means something.
bool is_gemm_stage(Stage stage);
// Whether the stage runs inside Engine::run.
bool is_engine_stage(Stage stage);

struct StageProfile {
  static constexpr size_t kStages = static_cast<size_t>(Stage::kCount);
  std::array<int64_t, kStages> ns{};
  std::array<double, kStages> operations{};  // 2·M·N·K summed, GEMM stages only
  int64_t engine_ns = 0;                     // Engine::run calls, entry to return
  int64_t runs = 0;                          // Engine::run calls
  int64_t shapes = 0;                        // run shapes whose primitives were created

  void add(Stage stage, int64_t nanoseconds, double ops = 0) {
    ns[static_cast<size_t>(stage)] += nanoseconds;
    operations[static_cast<size_t>(stage)] += ops;
  }
  int64_t stage_ns(Stage stage) const { return ns[static_cast<size_t>(stage)]; }
  void merge(const StageProfile& other) {
    for (size_t i = 0; i < kStages; ++i) {
      ns[i] += other.ns[i];
      operations[i] += other.operations[i];
    }
    engine_ns += other.engine_ns;
    runs += other.runs;
    shapes += other.shapes;
  }
};

// Sum over the stages inside the engine, and the time profiled in all: the engine's runs and
// the stages outside it.
int64_t engine_stages_ns(const StageProfile& profile);
int64_t profiled_ns(const StageProfile& profile);

// stage | ms | share % (of profiled_ns) | GFLOP/s (GEMM stages: operations over their time) |
// % of peak (only when peak_gops > 0): one row per stage with time, then engine_other (the
// engine's run time no stage measured) and total.
Table stage_table(const StageProfile& profile, double peak_gops);
// {"<stage>": {"ms", "gops" (GEMM stages)}, ..., "engine_ms", "engine_other_ms", "engine_runs",
// "run_shapes"}: every stage, measured or not.
// GEMM stages also carry "gop" (operations / 1e9), so that stage_profile_from_json reads back
// what stage_json wrote (to nanoseconds' rounding of the milliseconds).
nlohmann::json stage_json(const StageProfile& profile);
StageProfile stage_profile_from_json(const nlohmann::json& stages);

// Adds the time from construction to destruction to `profile`'s `stage` (nothing when profile
// is null: no clock is read).
class StageTimer {
 public:
  StageTimer(StageProfile* profile, Stage stage, double ops = 0)
      : profile_(profile), stage_(stage), ops_(ops) {
    if (profile_) start_ = std::chrono::steady_clock::now();
  }
  ~StageTimer() {
    if (!profile_) return;
    const auto elapsed = std::chrono::steady_clock::now() - start_;
    profile_->add(stage_, std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count(),
                  ops_);
  }
  StageTimer(const StageTimer&) = delete;
  StageTimer& operator=(const StageTimer&) = delete;

 private:
  StageProfile* profile_;
  Stage stage_;
  double ops_;
  std::chrono::steady_clock::time_point start_;
};

// Adds one run, from construction to destruction, to `profile`'s engine_ns and runs (nothing
// when profile is null).
class RunTimer {
 public:
  explicit RunTimer(StageProfile* profile) : profile_(profile) {
    if (profile_) start_ = std::chrono::steady_clock::now();
  }
  ~RunTimer() {
    if (!profile_) return;
    const auto elapsed = std::chrono::steady_clock::now() - start_;
    profile_->engine_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count();
    ++profile_->runs;
  }
  RunTimer(const RunTimer&) = delete;
  RunTimer& operator=(const RunTimer&) = delete;

 private:
  StageProfile* profile_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace tessera
