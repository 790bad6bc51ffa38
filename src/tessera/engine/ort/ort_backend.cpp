#include "tessera/engine/ort/ort_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

#include "tessera/common/error.h"
#include "tessera/engine/ort/ort_cuda.h"
#include "tessera/engine/ort/ort_engine.h"
#include "tessera/topology/placement.h"

namespace tessera {

void ort_check_can_run(const EngineSpec& spec, const std::string& model_path) {
  // The model loads: one cheap unoptimised CPU session, whose errors every case would share.
  OrtEngineOptions probe;
  probe.optimization_level = 0;
  try {
    probe.max_batch = std::max<int64_t>(1, read_model_shape(model_path).batch);
  } catch (const Error&) {
    // ONNX Runtime's own load below says what is wrong with the file, in its words.
  }
  OrtEngine(model_path, probe);
  if (spec.on_cpu()) return;
  require_cuda(spec.device);
  refuse_models_that_crash_cuda(model_path);
}

std::unique_ptr<Engine> make_ort_engine(const std::string& model_path, const EngineSpec& spec) {
  OrtEngineOptions options;
  options.device = spec.device;
  options.intra_op_threads = spec.threads;
  options.spinning = spec.spinning;
  options.max_batch = spec.max_batch;
  options.precision = spec.on_cpu() ? Precision::fp32 : spec.precision;
  if (spec.on_cpu() && !spec.cpus.empty())
    options.thread_affinities = ort_thread_affinities(spec.cpus, spec.threads);
  // engine_spec.cpp:make_engine checked every option against ort_check_option.
  if (const auto level = spec.backend_options.find("optimization_level");
      level != spec.backend_options.end())
    options.optimization_level = std::stoi(level->second);
  return build_ort_engine(model_path, options);
}

void ort_check_option(const std::string& key, const std::string& value) {
  if (key != "optimization_level")
    throw UsageError(fmt::format("the ort engine has no option '{}'", key));
  const bool digits = !value.empty() && value.size() < 4 &&
                      value.find_first_not_of("0123456789") == std::string::npos;
  if (!digits) throw UsageError("unknown graph optimisation level '" + value + "'");
  graph_optimization_level(std::stoi(value));  // throws UsageError for any other level
}

void ort_check_environment() {
  ort_log_level(std::getenv("TESSERA_ORT_LOG"));
  cpu_memory_pattern(std::getenv("TESSERA_CPU_MEM_PATTERN"));
}

void throw_ort_error(const std::string& message) {
  if (is_out_of_memory_message(message)) throw OutOfMemoryError(message);
  throw Error(message);
}

}  // namespace tessera
