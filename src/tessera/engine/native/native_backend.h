#pragma once
// The native (oneDNN) backend as the backend table (engine_spec.h) sees it: an EngineSpec
// becomes a NativeEngine whose OpenMP team runs on the spec's CPUs. Everything native-specific
// about building an engine — the team's pinning, the CPU instructions a precision needs —
// happens behind these calls. The backend has no options.

#include <memory>
#include <string>

#include "tessera/engine/engine.h"
#include "tessera/engine/engine_spec.h"

namespace tessera {

// Throws Error when `model_path` cannot be read or has a non-finite weight, or this CPU does
// not run spec.precision natively (engine/native/native_engine.h: require_native_precision).
void native_check_can_run(const EngineSpec& spec, const std::string& model_path);

// Throws Error naming the file unless the native engine can run the model at `model_path`: a
// Tessera model whose weights it finds by name and shape (native_model.h). Reads the weights.
void native_check_model(const std::string& model_path);

// Builds a NativeEngine of spec.threads OpenMP threads on spec.cpus (see the .cpp's invariant).
std::unique_ptr<Engine> make_native_engine(const std::string& model_path, const EngineSpec& spec);

// "oneDNN 3.5.3": the library the native engine's matmuls run on.
std::string native_backend_version();

}  // namespace tessera
