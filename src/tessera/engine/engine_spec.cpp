#include "tessera/engine/engine_spec.h"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <new>

#include "tessera/common/error.h"
#include "tessera/engine/native/native_engine.h"
#include "tessera/engine/ort/ort_backend.h"
#include "tessera/model/model_info.h"
#include "tessera/topology/binding.h"

namespace tessera {
namespace {

struct Device {
  int index = -1;
  std::string gpu_path;
};

// "cpu" | "cuda" | "cuda:N" with an optional "+io" / "+graph". Throws UsageError.
Device parse_device_text(const std::string& text) {
  const std::string expected = "(expected cpu or cuda:N[+io|+graph])";
  if (text == "cpu") return {};
  Device device;
  std::string id = text;
  for (const char* path : {"io", "graph"}) {
    const std::string suffix = std::string("+") + path;
    if (id.size() > suffix.size() && id.ends_with(suffix)) {
      id.resize(id.size() - suffix.size());
      device.gpu_path = path;
    }
  }
  if (id == "cuda") id = "cuda:0";
  if (id.rfind("cuda:", 0) == 0) {
    const std::string n = id.substr(5);
    if (!n.empty() && n.size() < 4 && n.find_first_not_of("0123456789") == std::string::npos) {
      device.index = std::stoi(n);
      return device;
    }
  }
  throw UsageError("unknown device '" + text + "' " + expected);
}

bool known_precision(const std::string& p) {
  return p == "fp32" || p == "tf32" || p == "fp16" || p == "bf16" || p == "int8";
}

// The precisions `backend` computes on a CPU (cpu) or a GPU, its default first.
std::vector<std::string> precisions_of(const std::string& backend, bool cpu) {
  if (backend == "native")
    return cpu ? std::vector<std::string>{"fp32", "bf16", "int8"} : std::vector<std::string>{};
  return cpu ? std::vector<std::string>{"fp32"} : std::vector<std::string>{"tf32", "fp32", "fp16"};
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// The precision a spec computes at: "" is the default; tf32 (a GPU matmul mode) is fp32 on a CPU.
// Returns "" when the backend cannot run `precision` there; *why says why.
std::string resolve_precision(const std::string& backend, const Device& device,
                              const std::string& precision, std::string* why) {
  const bool cpu = device.index < 0;
  const std::vector<std::string> offered = precisions_of(backend, cpu);
  const std::string where = cpu ? "cpu" : "cuda";
  if (offered.empty()) {
    *why = fmt::format("the {} engine runs on the cpu only", backend);
    return "";
  }
  if (precision.empty()) return offered.front();
  if (cpu && precision == "tf32") return "fp32";
  if (std::find(offered.begin(), offered.end(), precision) != offered.end()) return precision;
  *why = fmt::format("the {} engine computes {} on {}, not {}", backend, join(offered), where,
                     precision);
  if (backend == "ort" && cpu && (precision == "bf16" || precision == "int8"))
    *why += " (--engine native does)";
  return "";
}

void check_grammar(const std::string& backend, const std::string& precision) {
  const auto& all = engine_backends();
  if (std::find(all.begin(), all.end(), backend) == all.end())
    throw UsageError(fmt::format("unknown engine '{}' (expected {})", backend, join(all)));
  if (!precision.empty() && !known_precision(precision)) {
    throw UsageError("unknown precision '" + precision +
                     "' (expected fp32, tf32, fp16, bf16 or int8)");
  }
}

// A native engine of several threads on a worker pinned to its first CPU (bind_worker_thread):
// OpenMP starts the engine's team from the calling thread and the team's threads keep the
// affinity they start with, so the team is started here with the thread widened to all of the
// worker's CPUs (else every thread of the team would share the one CPU), then the calling
// thread is narrowed again. The team stays with this thread for the engine's runs.
std::unique_ptr<Engine> make_native_engine(const std::string& model_path, const EngineSpec& spec) {
  const NativeEngineOptions options{spec.precision, spec.threads, spec.max_batch};
  if (spec.threads < 2 || spec.cpus.size() < 2)
    return std::make_unique<NativeEngine>(model_path, options);
  const std::vector<int> pinned = current_thread_cpus();
  set_current_thread_cpus(spec.cpus);
  try {
    omp_set_num_threads(spec.threads);
#pragma omp parallel
    {}
    auto engine = std::make_unique<NativeEngine>(model_path, options);
    set_current_thread_cpus(pinned);
    return engine;
  } catch (...) {
    set_current_thread_cpus(pinned);
    throw;
  }
}

}  // namespace

const std::vector<std::string>& engine_backends() {
  static const std::vector<std::string> backends = {"ort", "native"};
  return backends;
}

std::string engine_cannot_run(const std::string& backend, const std::string& device,
                              const std::string& precision) {
  check_grammar(backend, precision);
  std::string why;
  resolve_precision(backend, parse_device_text(device), precision, &why);
  return why;
}

EngineSpec parse_engine_spec(const std::string& backend, const std::string& device,
                             const std::string& precision) {
  check_grammar(backend, precision);
  const Device parsed = parse_device_text(device);
  std::string why;
  EngineSpec spec;
  spec.backend = backend;
  spec.device_index = parsed.index;
  spec.gpu_path = parsed.gpu_path;
  spec.precision = resolve_precision(backend, parsed, precision, &why);
  if (spec.precision.empty()) throw UsageError(device + ": " + why);
  return spec;
}

namespace {

// A float16 model computes in float16 whatever precision the engine is asked for, so a run
// recorded as "fp32" (or bf16, int8, tf32) would not be one: only fp16 (a GPU) takes it.
void refuse_float16_model_unless_fp16(const EngineSpec& spec, const std::string& model_path) {
  if (spec.precision == "fp16") return;
  ModelFileInfo info;
  try {
    info = read_model_info(model_path);
  } catch (const Error&) {
    return;  // the checks below name what is wrong with the file
  }
  if (!info.has_float16) return;
  throw Error(fmt::format(
      "{}: a float16 model (as tessera convert-model writes); {} on {} needs the float32 model",
      model_path, spec.label(), spec.device()));
}

}  // namespace

void check_engine_can_run(const EngineSpec& spec, const std::string& model_path) {
  refuse_float16_model_unless_fp16(spec, model_path);
  if (spec.backend == "ort") return ort_check_can_run(spec, model_path);
  read_model_shape(model_path);      // the model's inputs and output (the rest: at construction)
  check_finite_weights(model_path);  // from the same parse
  require_native_precision(spec.precision);
}

std::unique_ptr<Engine> make_engine(const std::string& model_path, const EngineSpec& spec) {
  if (spec.max_batch < 1)
    throw UsageError(fmt::format("batch size must be at least 1 (got {})", spec.max_batch));
  if (spec.threads < 1)
    throw UsageError(fmt::format("thread count must be at least 1 (got {})", spec.threads));
  try {
    if (spec.backend == "native") {
      if (!spec.backend_options.empty())
        throw UsageError("the native engine has no option '" + spec.backend_options.begin()->first +
                         "'");
      return make_native_engine(model_path, spec);
    }
    return make_ort_engine(model_path, spec);
  } catch (const std::bad_alloc&) {
    throw OutOfMemoryError(fmt::format("{}: out of memory building an engine for {} pixels",
                                       spec.device(), spec.max_batch));
  }
}

void check_backend_option(const std::string& backend, const std::string& key,
                          const std::string& value) {
  if (backend == "ort") return ort_check_option(key, value);
  throw UsageError(fmt::format("the {} engine has no option '{}'", backend, key));
}

void check_engine_environment() {
  ort_check_environment();
}

std::string backend_version(const std::string& backend) {
  if (backend == "ort") return ort_version();
  if (backend == "native") return native_library_version();
  throw UsageError("unknown engine '" + backend + "'");
}

}  // namespace tessera
