#pragma once
// OrtCudaEngine: the Tessera model on ONNX Runtime's CUDA execution provider with IO binding.
// The device string picks the path (every path also accepts --precision fp32|tf32):
//   "cuda:N"        OrtEngine: CPU tensors in, ORT copies them to the GPU (ORT's default path)
//   "cuda:N+io"     OrtCudaEngine: pinned host buffers, device-resident input/output buffers
//                   bound once per batch size, copies and compute on one CUDA stream
//   "cuda:N+graph"  as "+io", plus one CUDA graph per engine: every run computes max_batch
//                   pixels (cuda_run_batch), captured once and replayed on later runs; ORT's
//                   memory pattern is off for it (see the constructor)
//
// OrtCudaEngine owns: one Ort::Session on device N, one CUDA stream (ORT computes on it too,
// via the provider option user_compute_stream), pinned host buffers s2/s1/output and device
// buffers of max_batch pixels, and two CUDA events. Invariant: the buffer addresses never
// change after construction (CUDA graphs replay against them); run(b) copies the first b
// pixels host -> device, runs cuda_run_batch(b) pixels (the rest are earlier inputs, or zeros),
// copies b outputs back, and returns when they are in output(). Any thread may call run() (one
// at a time): it makes the engine's GPU current first.
// It needs the CUDA runtime (cuda_runtime.h); without it construction throws one line.

#include <onnxruntime_cxx_api.h>

#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>

#include "tessera/engine/engine.h"
#include "tessera/engine/ort/cuda_runtime.h"
#include "tessera/engine/ort/ort_engine.h"

namespace tessera {

enum class CudaPath { kNone, kDefault, kIoBinding, kCudaGraph };

// The GPU path of a device: kNone for the CPU, else by its GpuPath.
CudaPath cuda_path(const Device& device);

// The batch a run of `batch` pixels is computed at: `batch` itself, except on the CUDA-graph path,
// where it is always max_batch, so that an engine holds exactly one graph. (With ORT 1.29 a
// second graph in one session corrupts the first: kernels such as Concat and Split copy their
// parameters to the GPU from small pinned host buffers, a graph's copy node reads that host
// memory again at every replay, and capturing another graph size reuses the same buffers for its
// own parameters; on the H100 the replay of the first graph then read out of bounds.) The
// padding pixels' outputs are computed and ignored.
int64_t cuda_run_batch(CudaPath path, int64_t batch, int64_t max_batch);

// True when an ONNX Runtime / CUDA error message means the memory ran out (ORT's arena:
// "Failed to allocate memory", CUDA: "out of memory", cuBLAS/cuDNN: "ALLOC_FAILED").
bool is_out_of_memory_message(const std::string& message);

// An ONNX Runtime error as one line: line breaks become spaces. (ORT's run errors can put the
// cause, e.g. "Failed to allocate memory ...", on a second line after "Status Message:".)
std::string one_line(const std::string& message);
// The first line of an ONNX Runtime message.
std::string first_line(const std::string& message);

// Throws Error naming `model_path` when the model has ScatterND nodes: ORT 1.29's CUDA
// execution provider crashes (SIGSEGV in Run) on that form of the day-of-year encoding.
void refuse_models_that_crash_cuda(const std::string& model_path);

// Throws Error "<device>: the CUDA execution provider is not available (<reason>)" when
// `device` names a CUDA device (any path) that this machine cannot run; nothing for "cpu".
void require_cuda(const Device& device);

// Adds ORT's CUDA execution provider on `device` to `session_options`: `precision`
// tf32 or fp32 matmuls, an arena that grows by what is asked, then the `extra` provider
// options and, when not null, `compute_stream` as ORT's compute stream. Throws Error
// "<device>: the CUDA execution provider is not available (...)".
void append_cuda_provider(Ort::SessionOptions& session_options, const Device& device,
                          Precision precision,
                          const std::unordered_map<std::string, std::string>& extra = {},
                          void* compute_stream = nullptr);

class OrtCudaEngine : public Engine {
 public:
  // options.device must be "cuda:N+io" or "cuda:N+graph". Throws tessera::Error (one line)
  // when the model is unusable or CUDA is unavailable, UsageError for bad options.
  OrtCudaEngine(const std::string& model_path, const OrtEngineOptions& options);
  ~OrtCudaEngine() override;
  OrtCudaEngine(const OrtCudaEngine&) = delete;
  OrtCudaEngine& operator=(const OrtCudaEngine&) = delete;

  const ModelShape& shape() const override { return shape_; }
  int64_t max_batch() const override { return options_.max_batch; }
  std::string name() const override { return "ort-" + options_.device.name(); }
  float* s2_input() override { return host_s2_; }
  float* s1_input() override { return host_s1_; }
  const float* output() const override { return host_out_; }
  void run(int64_t batch) override;
  // Copies host -> device from `s2`/`s1` and device -> host into `out` directly, on the
  // engine's stream (no copy through the engine's own pinned buffers).
  void run_from(const float* s2, const float* s1, int64_t batch, float* out) override;
  // Page-locked (cudaMallocHost); throws Error when that fails.
  HostBuffer allocate_host(int64_t floats) override;

  EngineCaps caps() const override {
    return {.computes_whole_capacity = path_ == CudaPath::kCudaGraph,
            .pinned_host_memory = true,
            .measures_busy_time = true};
  }
  double build_seconds() const override { return session_seconds_; }
  double session_seconds() const { return session_seconds_; }
  // GPU time (CUDA events) from the first host->device copy to the last device->host copy of
  // every run() so far: what "GPU busy" is measured from.
  double busy_seconds() const override { return busy_seconds_; }

 private:
  void free_buffers();
  // run() and run_from(): computes cuda_run_batch(batch) pixels from the device buffers after
  // copying the first `batch` from s2/s1, and copies `batch` outputs to `out`.
  void run_between(const float* s2, const float* s1, int64_t batch, float* out);

  OrtEngineOptions options_;
  CudaPath path_;
  int device_id_;
  const CudaRuntime* cuda_ = nullptr;
  ModelShape shape_;
  CudaRuntime::Stream stream_ = nullptr;
  CudaRuntime::Event start_ = nullptr, stop_ = nullptr;
  float *host_s2_ = nullptr, *host_s1_ = nullptr, *host_out_ = nullptr;
  float *device_s2_ = nullptr, *device_s1_ = nullptr, *device_out_ = nullptr;
  std::unique_ptr<Ort::Session> session_;
  Ort::MemoryInfo device_memory_{nullptr};
  // One binding (and, for CUDA graphs, one run-options object with its gpu_graph_id) per run
  // shape (pixels computed, S2 steps, S1 steps), made on first use; later runs of that shape
  // reuse them unchanged. On the IO-binding path they are dropped when kMaxBindings shapes
  // have gathered.
  static constexpr size_t kMaxBindings = 16;
  // By run shape: (pixels computed, S2 steps, S1 steps).
  using RunShape = std::tuple<int64_t, int64_t, int64_t>;
  std::map<RunShape, Ort::IoBinding> bindings_;
  std::map<RunShape, Ort::RunOptions> run_options_;
  double session_seconds_ = 0;
  double busy_seconds_ = 0;
};

// The engine a device string asks for: OrtEngine for "cpu" and "cuda:N", OrtCudaEngine for
// "cuda:N+io" / "cuda:N+graph". `session_seconds` (optional) receives the session build time.
std::unique_ptr<Engine> build_ort_engine(const std::string& model_path,
                                         const OrtEngineOptions& options,
                                         double* session_seconds = nullptr);

}  // namespace tessera
