#pragma once
// Engine: runs the Tessera model on a batch of pixels. Every backend (ONNX Runtime CPU/CUDA,
// later native engines) implements it; nothing above this interface knows which one runs.
//
// An Engine owns its input and output buffers, sized for `max_batch()` pixels and allocated
// by the thread that created the engine (so a pinned worker first-touches them on its own
// NUMA node). Callers write inputs straight into s2_input()/s1_input(), call run(batch), and
// read output(). One Engine is used by one thread at a time.

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>

namespace tessera {

// The tensor shapes a model expects, read from the model file itself.
struct ModelShape {
  int64_t s2_steps = 40;     // s2_input [B, s2_steps, s2_features]
  int64_t s2_features = 11;  // bands + day of year
  int64_t s1_steps = 40;     // s1_input [B, s1_steps, s1_features]
  int64_t s1_features = 3;
  int64_t output_dim = 128;  // output [B, output_dim]

  int64_t s2_pixel_floats() const { return s2_steps * s2_features; }
  int64_t s1_pixel_floats() const { return s1_steps * s1_features; }
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

  // Input buffers of max_batch() pixels, row-major [pixel][step][feature].
  virtual float* s2_input() = 0;
  virtual float* s1_input() = 0;
  // Output buffer of max_batch() x output_dim floats, valid after run().
  virtual const float* output() const = 0;

  // Runs the first `batch` pixels of the input buffers (1 <= batch <= max_batch()).
  virtual void run(int64_t batch) = 0;
  // Runs `batch` pixels read from `s2` and `s1` (laid out like the input buffers) and writes
  // their outputs to `out` (batch x output_dim). The default copies through the engine's own
  // buffers; a GPU engine copies straight between these and the device, fastest when they come
  // from allocate_host.
  virtual void run_from(const float* s2, const float* s1, int64_t batch, float* out) {
    const ModelShape& s = shape();
    std::memcpy(s2_input(), s2, static_cast<size_t>(batch * s.s2_pixel_floats()) * sizeof(float));
    std::memcpy(s1_input(), s1, static_cast<size_t>(batch * s.s1_pixel_floats()) * sizeof(float));
    run(batch);
    std::memcpy(out, output(), static_cast<size_t>(batch * s.output_dim) * sizeof(float));
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
};

}  // namespace tessera
