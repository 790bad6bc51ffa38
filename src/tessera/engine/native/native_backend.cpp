#include "tessera/engine/native/native_backend.h"

#include <omp.h>

#include <vector>

#include "tessera/engine/native/native_engine.h"
#include "tessera/engine/native/native_model.h"
#include "tessera/model/model_description.h"
#include "tessera/model/model_info.h"
#include "tessera/topology/binding.h"

namespace tessera {

void native_check_can_run(const EngineSpec& spec, const std::string& model_path) {
  read_model_shape(model_path);      // the model's inputs and output (the rest: at construction)
  check_finite_weights(model_path);  // from the same parse
  require_native_precision(spec.precision);
}

void native_check_model(const std::string& model_path) {
  const NativeModel model(read_model(model_path), NativeModel::Weights::kCheckOnly);
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

std::string native_backend_version() {
  return native_library_version();
}

}  // namespace tessera
