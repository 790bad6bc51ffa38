#pragma once
// NativeEngine: every Tessera model version (v1.0 early, v1.0, v1.1, v2; docs MODEL_FAMILY.md)
// computed by tessera's own code on the CPU: oneDNN matmuls (fp32, bf16, or s8 weights with
// u8/s8 activations) and float32 LayerNorm, RMSNorm, softmax, GRU state, pooling and fusion.
// Owns the weights in their working precision and layout, one cached matmul primitive per layer
// and row count, one scratchpad, and every activation buffer, allocated by the constructing
// thread.
//
// Steps: a model with fixed steps runs those; one with symbolic steps (shape().symbolic_steps)
// runs any count from 1 to kMaxModelSteps per branch, set per run with Engine::set_steps.
//
// Memory: the input and output buffers, and the pooled branch outputs (2 d floats per pixel),
// hold max_batch pixels at the largest step counts. The activation buffers hold a fixed number
// of rows (pixels x steps): max_batch x the fixed steps, or max_batch x 64 for symbolic steps,
// but never more than fit kActivationBudgetBytes (and at least one pixel at the longest steps),
// so that activation memory stops growing with max_batch beyond the budget. A run with more
// rows goes through each branch in chunks of whole pixels (equal chunks but the last), the
// fusion in chunks too, and the attention core in groups of pixels whose scores fit a fixed
// budget; every pixel is computed as in one piece (up to float rounding of another row count).
// Primitives are created per (rows) shape on first use and kept. Before any buffer is
// allocated, their bytes are compared with the memory this process may still use (MemAvailable
// and the cgroup's limit): a max_batch whose buffers cannot fit is refused with one line
// (OutOfMemoryError), never left to the kernel's OOM killer.
//
// Precisions (accumulation, LayerNorm, RMSNorm, softmax, GRU state and pooling are float32 in
// all):
//   fp32  every matmul float32.
//   bf16  bf16 weights and matmul inputs; FFN1 writes bf16 (it feeds FFN2 only), the rest f32.
//   int8  s8 weights with one scale per output column and s8 activations with one scale per row
//         (u8 after ReLU) for QKV, out-projection, FFN1, FFN2 and the GRU input projection;
//         the second embedding Linear, the GRU recurrence and the attention core run bf16
//         (float32 on a CPU without AVX512_BF16).
//   The first embedding Linear (bands -> d) and the fusion (Linear or MLP) are float32 always.
//
// Invariants: the model file has exactly the initializers model/model_builder.h documents for
// its version (checked at construction: tessera::Error naming the file and the first bad tensor
// or metadata); bf16 needs AVX512_BF16 or AMX and int8 needs AVX512_VNNI or AMX (checked at
// construction); primitives are created and run under omp_set_num_threads(threads). One thread
// runs it at a time; interrupt() may come from any thread and is checked between layers.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "tessera/engine/choice/engine_choice.h"
#include "tessera/engine/engine.h"

namespace tessera {

// Activation bytes one native engine holds at most (the rows of its activation buffers, the
// per-pixel work buffers of a chunk and, for fixed steps, the attention scores), whatever its
// max_batch: 512 MiB, where chunks of the full v1.0 model are ~300 pixels of 40 steps (matmuls
// of ~12,000 rows, long past where larger ones stop paying).
constexpr int64_t kActivationBudgetBytes = int64_t{512} << 20;

struct NativeEngineOptions {
  Precision precision = Precision::fp32;  // fp32 | bf16 | int8
  int threads = 1;                        // OpenMP threads of this engine's runs
  int64_t max_batch = 256;                // buffer capacity in pixels
};

// Throws Error (one line) unless this CPU runs `precision` natively: bf16 needs AVX512_BF16 or
// AMX, int8 AVX512_VNNI or AMX (oneDNN's effective ISA, so ONEDNN_MAX_CPU_ISA counts).
void require_native_precision(Precision precision);

// "oneDNN 2.6.3": the library the native engine's matmuls run on.
std::string native_library_version();

class NativeEngine : public Engine {
 public:
  NativeEngine(const std::string& model_path, const NativeEngineOptions& options);
  ~NativeEngine() override;
  NativeEngine(const NativeEngine&) = delete;
  NativeEngine& operator=(const NativeEngine&) = delete;

  const ModelShape& shape() const override { return shape_; }
  int64_t max_batch() const override { return options_.max_batch; }
  std::string name() const override { return "native-cpu"; }
  float* s2_input() override;
  float* s1_input() override;
  const float* output() const override;
  void run(int64_t batch) override;
  void interrupt() override { interrupted_ = true; }
  void allow_runs() override { interrupted_ = false; }
  int64_t buffer_bytes() const override;
  bool set_stage_profile(StageProfile* profile) override;
  // Rows (pixels x steps) of the activation buffers: what one chunk of a run computes.
  int64_t activation_rows() const;

 private:
  struct State;  // weights, primitives and buffers (native_engine.cpp)

  NativeEngineOptions options_;
  ModelShape shape_;
  std::unique_ptr<State> state_;
  std::atomic<bool> interrupted_{false};
};

}  // namespace tessera
