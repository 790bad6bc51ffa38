#pragma once
// EngineSpec and the engine registry: the one place that knows which backends exist, what each
// runs (devices, precisions), and how to build one. Everything above engine/ asks for engines
// through make_engine(model, spec) and reads what they can do from Engine::caps().
//
// The grammar the CLI passes through unchanged:
//   --engine     ort | native                           (default ort)
//   --device     cpu | cuda:N[+io|+graph]               (GPU paths: engine/ort/ort_cuda.h)
//   --precision  fp32 | tf32 | fp16 | bf16 | int8 | ""  ("" = the engine's default on the device:
//                fp32 on a CPU, tf32 on a GPU)
// What each backend runs:
//   ort     cpu: fp32 (tf32, a GPU matmul mode, computes fp32 there); cuda: tf32, fp32, fp16
//   native  cpu: fp32, bf16, int8 (bf16 needs AVX512_BF16 or AMX, int8 VNNI or AMX)
// A spec holds the resolved precision, so two specs compute the same numbers exactly when their
// backend, device and precision are equal (what journals and profiles record).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tessera/engine/engine.h"

namespace tessera {

struct EngineSpec {
  std::string backend = "ort";     // "ort" or "native"
  int device_index = -1;           // -1: the CPU; N: CUDA device N
  std::string gpu_path;            // "" (the backend's default), "io" or "graph"
  std::string precision = "fp32";  // resolved: never "" once parsed
  int threads = 1;                 // threads of the engine's own pool (>= 1)
  // The PUs (OS indices) the engine's threads run on, for backends that pin their own pool
  // threads; empty: unpinned. The calling thread is bound by the caller (topology/binding.h).
  std::vector<int> cpus;
  int64_t max_batch = 256;  // pixels per run at most: the engine's buffers
  bool spinning = true;     // pool threads may spin between operations
  // Backend-specific settings by name, e.g. {"optimization_level", "0"} for ort.
  std::map<std::string, std::string> backend_options;

  bool on_cpu() const { return device_index < 0; }
  // "cpu", "cuda:0", "cuda:0+graph".
  std::string device() const {
    if (on_cpu()) return "cpu";
    return "cuda:" + std::to_string(device_index) + (gpu_path.empty() ? "" : "+" + gpu_path);
  }
  // "ort fp32", "native bf16": what computed a result, for tables and summaries.
  std::string label() const { return backend + " " + precision; }
};

// The backends, in the order tables list them.
const std::vector<std::string>& engine_backends();

// Parses and resolves engine, device and precision into a spec (the other fields keep their
// defaults). Throws UsageError for an unknown engine, device or precision, or a combination
// the engine cannot run ("native runs on the cpu only", "ort on cpu computes fp32 only ...").
EngineSpec parse_engine_spec(const std::string& backend, const std::string& device,
                             const std::string& precision = "");

// Whether `backend` can run `precision` on `device`, without throwing: the reason when not,
// "" when it can (grammar errors throw UsageError as parse_engine_spec does).
std::string engine_cannot_run(const std::string& backend, const std::string& device,
                              const std::string& precision);

// Checks what this machine and `model_path` allow a spec, before any engine is built: the CUDA
// provider for a GPU, the CPU's instructions for bf16/int8, models ORT's CUDA provider cannot
// run, and a float16 model (tessera convert-model) for any precision but fp16: it would compute
// in float16 under another precision's name. Throws Error with one line naming the device, the
// model or what the CPU lacks.
void check_engine_can_run(const EngineSpec& spec, const std::string& model_path);

// Builds the engine a spec asks for on the calling thread (its buffers are first-touched
// there). Throws Error naming the model for an unusable model, OutOfMemoryError when memory
// runs out, UsageError for a bad spec.
std::unique_ptr<Engine> make_engine(const std::string& model_path, const EngineSpec& spec);

// Builds engines: make_engine, or another function where a caller wants engines of its own
// (tests run the runtime on an engine that is not a registered backend).
using EngineFactory =
    std::function<std::unique_ptr<Engine>(const std::string& model_path, const EngineSpec& spec)>;

// Throws UsageError unless `value` is a valid EngineSpec::backend_options entry `key` of
// `backend` (e.g. ort's "optimization_level": 0, 1, 2 or 99).
void check_backend_option(const std::string& backend, const std::string& key,
                          const std::string& value);

// Checks the environment variables the backends read (e.g. TESSERA_ORT_LOG), so that a bad
// value is one UsageError before any work starts.
void check_engine_environment();

// The version of the library a backend computes with, e.g. "1.29.0" for ort (ONNX Runtime).
std::string backend_version(const std::string& backend);

}  // namespace tessera
