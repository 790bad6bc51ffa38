#pragma once
// Engine: runs the Tessera model on a batch of pixels. Every backend (engine/ort: ONNX Runtime
// CPU/CUDA; engine/native: oneDNN CPU) implements it; engines are built from an EngineSpec by
// the registry (engine_spec.h), and nothing above engine/ names a backend's types.
//
// An Engine owns its input and output buffers, sized for `max_batch()` pixels and allocated
// by the thread that created the engine (so a pinned worker first-touches them on its own
// NUMA node). Callers write inputs straight into s2_input()/s1_input(), call run(batch), and
// read output(). One Engine is used by one thread at a time.

#include <fmt/format.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>

#include "tessera/common/error.h"
#include "tessera/common/memory.h"
#include "tessera/model/model_info.h"

namespace tessera {

struct StageProfile;

// The engine ran out of memory (host or device) building itself or running a batch: a result
// for a benchmark (the batch does not fit) and a reason to retry smaller for a GPU worker. Every
// backend throws this type for it, whatever its library's message; nothing matches text.
class OutOfMemoryError : public Error {
 public:
  using Error::Error;
};

// Throws OutOfMemoryError, before anything is allocated, when an engine's `bytes` of buffers for
// batches of `max_batch` pixels exceed available_memory_bytes() (common/memory.h):
//   "<model>: batches of <max_batch> pixels need about <X> GiB of <engine> buffers, more than
//    the <Y> GiB of memory available (use a smaller -b)"
inline void require_buffer_memory(const std::string& model_path, const std::string& engine,
                                  int64_t max_batch, int64_t bytes) {
  const int64_t available = available_memory_bytes();
  if (available < 0 || bytes <= available) return;
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  throw OutOfMemoryError(fmt::format(
      "{}: batches of {} pixels need about {:.1f} GiB of {} buffers, more than the {:.1f} GiB of "
      "memory available (use a smaller -b)",
      model_path, max_batch, static_cast<double>(bytes) / kGiB, engine,
      static_cast<double>(available) / kGiB));
}

// Abilities an engine declares, so that callers need not know which backend they hold.
struct EngineCaps {
  // Every run computes max_batch() pixels whatever the batch (a CUDA graph): running out of
  // memory there needs a smaller engine, not smaller runs.
  bool computes_whole_capacity = false;
  // allocate_host gives page-locked memory that run_from copies from and to directly.
  bool pinned_host_memory = false;
  // busy_seconds() measures the device's own busy time (a GPU's events).
  bool measures_busy_time = false;
};

// Host memory from Engine::allocate_host, freed by its deleter.
using HostBuffer = std::unique_ptr<float[], std::function<void(float*)>>;

class Engine {
 public:
  virtual ~Engine() = default;

  virtual const ModelShape& shape() const = 0;
  virtual int64_t max_batch() const = 0;
  // A short description for tables and summaries, e.g. "ort-cpu" or "ort-cuda:0".
  virtual std::string name() const = 0;
  virtual EngineCaps caps() const { return {}; }
  // Device busy time over every run so far, when caps().measures_busy_time; 0 otherwise.
  virtual double busy_seconds() const { return 0; }
  // Seconds the engine took to build (model load, graph optimisation, weight packing).
  virtual double build_seconds() const { return 0; }
  // Bytes of the host buffers the engine allocated for its runs (inputs, outputs, activations;
  // not the weights); 0 where the backend does not track them.
  virtual int64_t buffer_bytes() const { return 0; }

  // Input buffers of max_batch() pixels, row-major [pixel][step][feature].
  virtual float* s2_input() = 0;
  virtual float* s1_input() = 0;
  // Output buffer of max_batch() x output_dim floats, valid after run().
  virtual const float* output() const = 0;

  // The step counts of the runs that follow: the inputs of a run are [batch][s2_steps][features]
  // and [batch][s1_steps][features], packed. A model with fixed steps takes only its own (the
  // default); one with symbolic steps (shape().symbolic_steps) any from 1 to shape().s2_steps
  // and shape().s1_steps. Throws Error otherwise.
  void set_steps(int64_t s2_steps, int64_t s1_steps);
  int64_t s2_steps() const { return s2_steps_ > 0 ? s2_steps_ : shape().s2_steps; }
  int64_t s1_steps() const { return s1_steps_ > 0 ? s1_steps_ : shape().s1_steps; }
  int64_t s2_pixel_floats() const { return s2_steps() * shape().s2_features; }
  int64_t s1_pixel_floats() const { return s1_steps() * shape().s1_features; }

  // Runs the first `batch` pixels of the input buffers (1 <= batch <= max_batch()).
  virtual void run(int64_t batch) = 0;
  // Runs `batch` pixels read from `s2` and `s1` (laid out like the input buffers) and writes
  // their outputs to `out` (batch x output_dim). The default copies through the engine's own
  // buffers; a GPU engine copies straight between these and the device, fastest when they come
  // from allocate_host.
  virtual void run_from(const float* s2, const float* s1, int64_t batch, float* out) {
    std::memcpy(s2_input(), s2, static_cast<size_t>(batch * s2_pixel_floats()) * sizeof(float));
    std::memcpy(s1_input(), s1, static_cast<size_t>(batch * s1_pixel_floats()) * sizeof(float));
    run(batch);
    std::memcpy(out, output(), static_cast<size_t>(batch * shape().output_dim) * sizeof(float));
  }
  // `floats` zeroed floats of host memory that run_from reads and writes fastest: page-locked
  // for a GPU engine, ordinary otherwise. The buffer may outlive the engine.
  virtual HostBuffer allocate_host(int64_t floats) {
    return HostBuffer(new float[static_cast<size_t>(floats)](), [](float* p) { delete[] p; });
  }
  // Makes a run in progress on another thread end early (its run() throws Error), and every
  // later run too, until allow_runs(). Thread-safe. Engines that cannot stop a run ignore it.
  virtual void interrupt() {}
  // Undoes interrupt() for the runs that follow.
  virtual void allow_runs() {}
  // Where the runs that follow add their time stage by stage and in all (stage_profile.h:
  // StageProfile::engine_ns, runs); null stops it. The profile must outlive those runs; only
  // this engine's thread touches it. Returns whether the engine measures into it: one that
  // cannot break a run into stages returns false and its caller times run() as a whole.
  virtual bool set_stage_profile(StageProfile* /*profile*/) { return false; }

 private:
  int64_t s2_steps_ = 0, s1_steps_ = 0;  // 0: the shape's
};

}  // namespace tessera
