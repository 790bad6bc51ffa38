#pragma once
// EngineSpec and the backend table: the one place that knows which backends exist, what each
// runs (devices, precisions), its checks, how to build one, its library's version and its
// options. Everything above engine/ asks for engines through make_engine(model, spec) and reads
// what they can do from Engine::caps().
//
// The grammar (the CLI parses it once: parse_engine_spec, or parse_device/parse_precision of
// engine/choice/engine_choice.h and resolve_engine_spec):
//   --engine     ort | native                           (engine_backends(), in that order)
//   --device     cpu | cuda:N[+io|+graph]               (GPU paths: engine/ort/ort_cuda.h)
//   --precision  fp32 | tf32 | fp16 | bf16 | int8 | ""  ("" = the engine's default on the device:
//                fp32 on a CPU, tf32 on a GPU)
// What each backend runs (its row of engine_backends()):
//   ort     cpu: fp32 (tf32, a GPU matmul mode, computes fp32 there); cuda: tf32, fp32, fp16
//   native  cpu: fp32, bf16, int8 (bf16 needs AVX512_BF16 or AMX, int8 VNNI or AMX)
// A spec holds the resolved precision, so two specs compute the same numbers exactly when their
// backend, device and precision are equal (what journals and profiles record).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tessera/engine/choice/engine_choice.h"
#include "tessera/engine/engine.h"

namespace tessera {

// The backends' names, for code that picks one (users name them with --engine).
inline constexpr char kOrtBackend[] = "ort";
inline constexpr char kNativeBackend[] = "native";

struct EngineSpec {
  std::string backend = kOrtBackend;      // the name of a row of engine_backends()
  Device device;                          // the CPU, or a CUDA device and its GPU path
  Precision precision = Precision::fp32;  // resolved: what the engine computes at
  int threads = 1;                        // threads of the engine's own pool (>= 1)
  // The PUs (OS indices) the engine's threads run on, for backends that pin their own pool
  // threads; empty: unpinned. The calling thread is bound by the caller (topology/binding.h).
  std::vector<int> cpus;
  int64_t max_batch = 256;  // pixels per run at most: the engine's buffers
  bool spinning = true;     // pool threads may spin between operations
  // Backend-specific settings by name (the row's `options`), e.g. {"optimization_level", "0"}.
  std::map<std::string, std::string> backend_options;

  bool on_cpu() const { return device.on_cpu(); }
  // "ort fp32", "native bf16": what computed a result, for tables and summaries.
  std::string label() const { return backend + " " + precision_name(precision); }
};

// A setting of one backend (EngineSpec::backend_options), and the flag `tessera bench` takes it
// by.
struct BackendOption {
  std::string key;            // e.g. "optimization_level"
  std::string flag;           // e.g. "--opt-level"
  std::string help;           // the flag's help text
  std::string default_value;  // the backend's own default, for the help text
};

// One backend: a row of the table. Adding a backend is one row and its library engine/<name>/.
struct Backend {
  std::string name;
  std::vector<Precision> cpu_precisions;  // on a CPU, its default first; empty: not on CPUs
  std::vector<Precision> gpu_precisions;  // on a CUDA device, its default first; empty: no GPUs
  std::vector<BackendOption> options;     // the EngineSpec::backend_options it takes
  // Throws UsageError unless `value` is valid for option `key` (one of `options`); may be null
  // when `options` is empty.
  void (*check_option)(const std::string& key, const std::string& value) = nullptr;
  // check_engine_can_run's backend part (the float16-model check is common to all).
  void (*check_can_run)(const EngineSpec& spec, const std::string& model_path) = nullptr;
  std::unique_ptr<Engine> (*make)(const std::string& model_path, const EngineSpec& spec) = nullptr;
  // The library it computes with, e.g. "1.29.0" (ONNX Runtime), "oneDNN 3.5.3".
  std::string (*version)() = nullptr;
  // Checks the environment variables it reads (UsageError naming the variable); may be null.
  void (*check_environment)() = nullptr;
  // Its place by speed among the backends that compute fp32 on a CPU, 1 the fastest (measured:
  // docs/PERFORMANCE.md); choose_default_engine tries the backends in this order.
  int speed_rank = 0;
  // Throws Error naming the file unless this backend can run the model at `model_path` (e.g. the
  // weights a native engine reads by name); may be null: every model check_can_run passes.
  void (*check_model)(const std::string& model_path) = nullptr;
};

// The backends, in the order tables and errors list them.
const std::vector<Backend>& engine_backends();

// The row named `name`. Throws UsageError "unknown engine 'x' (expected ort, native)".
const Backend& find_backend(const std::string& name);

// "ort or native": the backends, for help texts.
std::string backend_choices();

// "fp32, tf32 (GPU), fp16 (GPU), bf16 (native CPU), int8 (native CPU)": every precision and,
// unless every backend runs it on CPUs, where it runs; for help texts.
std::string precision_choices_by_device();

// Resolves a precision for `backend` on `device` into a spec (the other fields keep their
// defaults): nullopt is the backend's default there, tf32 on a CPU is fp32. Throws UsageError
// for a combination the engine cannot run ("cuda:0: the native engine runs on the cpu only").
EngineSpec resolve_engine_spec(const std::string& backend, const Device& device,
                               std::optional<Precision> precision = std::nullopt);

// The CLI's edge: parses engine, device and precision text (in that order, each one's own
// UsageError), then resolve_engine_spec.
EngineSpec parse_engine_spec(const std::string& backend, const std::string& device,
                             const std::string& precision = "");

// Whether `backend` can run `precision` on `device`, without throwing: the reason when not,
// "" when it can (an unknown backend throws UsageError as find_backend does).
std::string engine_cannot_run(const std::string& backend, const Device& device,
                              std::optional<Precision> precision);

// Checks what this machine and `model_path` allow a spec, before any engine is built: the CUDA
// provider for a GPU, the CPU's instructions for bf16/int8, models ORT's CUDA provider cannot
// run, and a float16 model (tessera convert-model) for any precision but fp16: it would compute
// in float16 under another precision's name. Throws Error with one line naming the device, the
// model or what the CPU lacks.
void check_engine_can_run(const EngineSpec& spec, const std::string& model_path);

// The engine a run takes when its user names none, and why.
struct EngineChoice {
  std::string backend;  // a row of engine_backends()
  // "default: fastest fp32 engine here", or why a faster backend was passed over:
  // "native cannot run m.onnx: initializer 'x' is missing ...", "native cannot run on cuda:0
  // (the native engine runs on the cpu only)".
  std::string reason;
};

// The default engine for `model_path` on `devices` (one run's devices; every one gets the same
// backend): the backend of lowest speed_rank that runs `precision` (nullopt: its default) on
// every device and passes check_engine_can_run and check_model for the model. When none passes,
// the fastest that runs the precision on every device (its own checks then fail with their
// line), else the fastest of all (resolve_engine_spec then throws).
EngineChoice choose_default_engine(const std::string& model_path,
                                   const std::vector<Device>& devices,
                                   std::optional<Precision> precision = std::nullopt);

// Builds the engine a spec asks for on the calling thread (its buffers are first-touched
// there). Throws Error naming the model for an unusable model, OutOfMemoryError when memory
// runs out, UsageError for a bad spec.
std::unique_ptr<Engine> make_engine(const std::string& model_path, const EngineSpec& spec);

// Builds engines: make_engine, or another function where a caller wants engines of its own
// (tests run the runtime on an engine that is not a registered backend).
using EngineFactory =
    std::function<std::unique_ptr<Engine>(const std::string& model_path, const EngineSpec& spec)>;

// Throws UsageError unless `value` is a valid EngineSpec::backend_options entry `key` of
// `backend` ("the native engine has no option 'x'"; ort's "optimization_level": 0, 1, 2, 99).
void check_backend_option(const std::string& backend, const std::string& key,
                          const std::string& value);

// Checks the environment variables the backends read (e.g. TESSERA_ORT_LOG), so that a bad
// value is one UsageError before any work starts.
void check_engine_environment();

// Whether `backend`'s row lists option `key`.
bool backend_takes_option(const std::string& backend, const std::string& key);

// Every backend's options, in table order.
std::vector<BackendOption> all_backend_options();

// The option `key` of whichever backend takes it. Throws UsageError when none does.
const BackendOption& backend_option(const std::string& key);

// check_backend_option for the backend that takes `key` (UsageError when none does).
void check_option_of_any_backend(const std::string& key, const std::string& value);

// The version of the library a backend computes with (its row's `version`).
std::string backend_version(const std::string& backend);

}  // namespace tessera
