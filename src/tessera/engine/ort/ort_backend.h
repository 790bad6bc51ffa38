#pragma once
// The ONNX Runtime backend as the backend table (engine_spec.h) sees it: an EngineSpec becomes
// OrtEngine (CPU, and the default CUDA path) or OrtCudaEngine (the IO-binding and CUDA-graph
// paths). Everything ORT-specific about building an engine — session options, thread
// affinities, the CUDA provider check, the ScatterND refusal — happens behind these two calls.
//
// Backend options (EngineSpec::backend_options): "optimization_level" 0, 1, 2 or 99 (default).

#include <memory>
#include <string>

#include "tessera/engine/engine.h"
#include "tessera/engine/engine_spec.h"

namespace tessera {

// Throws Error when this machine cannot run `spec` with ORT: no usable CUDA provider for a GPU
// (naming the device), or a model whose ScatterND nodes crash the CUDA provider.
void ort_check_can_run(const EngineSpec& spec, const std::string& model_path);

std::unique_ptr<Engine> make_ort_engine(const std::string& model_path, const EngineSpec& spec);

// Throws UsageError unless `key` = `value` is a backend option of this file's header comment.
void ort_check_option(const std::string& key, const std::string& value);

// Checks TESSERA_ORT_LOG and TESSERA_CPU_MEM_PATTERN (UsageError naming the variable).
void ort_check_environment();

// The ONNX Runtime library's version string, e.g. "1.29.0".
std::string ort_version();

// Throws OutOfMemoryError when `message` (ORT's, CUDA's) says that memory ran out, else Error.
[[noreturn]] void throw_ort_error(const std::string& message);

}  // namespace tessera
