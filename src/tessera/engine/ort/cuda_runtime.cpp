#include "tessera/engine/ort/cuda_runtime.h"

#include <dlfcn.h>
#include <fmt/format.h>
#include <onnxruntime_cxx_api.h>

#include <filesystem>
#include <mutex>

namespace tessera {
namespace {

struct Loaded {
  CudaRuntime runtime{};
  bool ok = false;
  std::string error;
};

template <typename F>
bool bind(void* library, const char* symbol, F*& out, std::string& error) {
  out = reinterpret_cast<F*>(::dlsym(library, symbol));
  if (!out && error.empty()) error = std::string("the CUDA runtime lacks ") + symbol;
  return out != nullptr;
}

Loaded load() {
  Loaded loaded;
  void* library = nullptr;
  std::string dl_error;
  for (const char* name : {"libcudart.so.13", "libcudart.so.12", "libcudart.so"}) {
    library = ::dlopen(name, RTLD_NOW | RTLD_GLOBAL);
    if (library) break;
    if (dl_error.empty()) {
      const char* message = ::dlerror();
      dl_error = message ? message : name;
    }
  }
  if (!library) {
    loaded.error = "cannot load the CUDA runtime (" + dl_error + ")";
    return loaded;
  }
  CudaRuntime& r = loaded.runtime;
  std::string& e = loaded.error;
  bool ok = bind(library, "cudaGetDeviceCount", r.get_device_count, e);
  ok = bind(library, "cudaSetDevice", r.set_device, e) && ok;
  ok = bind(library, "cudaMemGetInfo", r.mem_get_info, e) && ok;
  ok = bind(library, "cudaMalloc", r.malloc_device, e) && ok;
  ok = bind(library, "cudaFree", r.free_device, e) && ok;
  ok = bind(library, "cudaMallocHost", r.malloc_host, e) && ok;
  ok = bind(library, "cudaFreeHost", r.free_host, e) && ok;
  ok = bind(library, "cudaMemcpyAsync", r.memcpy_async, e) && ok;
  ok = bind(library, "cudaStreamCreateWithFlags", r.stream_create, e) && ok;
  ok = bind(library, "cudaStreamSynchronize", r.stream_synchronize, e) && ok;
  ok = bind(library, "cudaStreamDestroy", r.stream_destroy, e) && ok;
  ok = bind(library, "cudaEventCreate", r.event_create, e) && ok;
  ok = bind(library, "cudaEventRecord", r.event_record, e) && ok;
  ok = bind(library, "cudaEventSynchronize", r.event_synchronize, e) && ok;
  ok = bind(library, "cudaEventElapsedTime", r.event_elapsed_time, e) && ok;
  ok = bind(library, "cudaEventDestroy", r.event_destroy, e) && ok;
  ok = bind(library, "cudaGetErrorString", r.get_error_string, e) && ok;
  loaded.ok = ok;
  return loaded;
}

const Loaded& loaded() {
  static const Loaded instance = load();
  return instance;
}

// The directory holding libonnxruntime.so (where ORT looks for its provider libraries).
std::filesystem::path ort_library_dir() {
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&OrtGetApiBase), &info) && info.dli_fname) {
    return std::filesystem::path(info.dli_fname).parent_path();
  }
  return {};
}

}  // namespace

std::string CudaRuntime::describe(const char* what, int status) const {
  const char* message = get_error_string ? get_error_string(status) : nullptr;
  return fmt::format("{}: {}", what, message ? message : fmt::format("CUDA error {}", status));
}

const CudaRuntime* cuda_runtime() {
  return loaded().ok ? &loaded().runtime : nullptr;
}

std::string cuda_runtime_error() {
  return loaded().ok ? "" : loaded().error;
}

std::string cuda_unavailable_reason(int device_id) {
  // Not asked: Ort::GetAvailableProviders(). Builds that load the CUDA provider as a shared
  // library at run time need not list it, so the library's presence is what counts.
  const auto dir = ort_library_dir();
  std::error_code ec;
  if (!std::filesystem::exists(dir / "libonnxruntime_providers_cuda.so", ec)) {
    return "no libonnxruntime_providers_cuda.so beside " +
           (dir.empty() ? std::string("libonnxruntime.so") : (dir / "libonnxruntime.so").string()) +
           "; scripts/setup.sh --with-cuda fetches it";
  }
  if (!std::filesystem::exists("/dev/nvidia0", ec)) return "no NVIDIA GPU (/dev/nvidia0 is absent)";
  const CudaRuntime* cuda = cuda_runtime();
  if (!cuda) return cuda_runtime_error();
  int count = 0;
  if (const int status = cuda->get_device_count(&count); status != 0) {
    return cuda->describe("cudaGetDeviceCount", status);
  }
  if (device_id < 0 || device_id >= count) {
    return fmt::format("no CUDA device {} ({} device{} found)", device_id, count,
                       count == 1 ? "" : "s");
  }
  return "";
}

}  // namespace tessera
