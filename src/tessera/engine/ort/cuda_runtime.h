#pragma once
// CudaRuntime: the few CUDA runtime functions tessera needs beyond ONNX Runtime (pinned host
// memory, device buffers, one stream, async copies, events for GPU busy time), looked up at
// run time with dlopen("libcudart.so.13") / dlopen("libcudart.so"). Nothing links against
// CUDA: on a machine without it, cuda_runtime() returns nullptr and cuda_runtime_error() says
// why, and every GPU feature reports itself unavailable.
//
// Invariant: a CudaRuntime is loaded once per process and never unloaded; all its function
// pointers are non-null. Status codes are the CUDA runtime's (0 = success).

#include <cstddef>
#include <string>

namespace tessera {

struct CudaRuntime {
  using Stream = void*;                    // cudaStream_t
  using Event = void*;                     // cudaEvent_t
  static constexpr int kHostToDevice = 1;  // cudaMemcpyHostToDevice
  static constexpr int kDeviceToHost = 2;  // cudaMemcpyDeviceToHost
  static constexpr unsigned kStreamNonBlocking = 1;

  int (*get_device_count)(int* count);
  int (*set_device)(int device);
  int (*mem_get_info)(size_t* free_bytes, size_t* total_bytes);
  int (*malloc_device)(void** ptr, size_t bytes);
  int (*free_device)(void* ptr);
  int (*malloc_host)(void** ptr, size_t bytes);  // page-locked (pinned)
  int (*free_host)(void* ptr);
  int (*memcpy_async)(void* dst, const void* src, size_t bytes, int kind, Stream stream);
  int (*stream_create)(Stream* stream, unsigned flags);
  int (*stream_synchronize)(Stream stream);
  int (*stream_destroy)(Stream stream);
  int (*event_create)(Event* event);
  int (*event_record)(Event event, Stream stream);
  int (*event_synchronize)(Event event);
  int (*event_elapsed_time)(float* ms, Event start, Event end);
  int (*event_destroy)(Event event);
  const char* (*get_error_string)(int status);

  // "<what>: <CUDA's message>" for a failed call, e.g. "cudaMalloc: out of memory".
  std::string describe(const char* what, int status) const;
};

// The process's CUDA runtime, loaded on first use; nullptr when it cannot be loaded.
const CudaRuntime* cuda_runtime();
// Why cuda_runtime() is nullptr (one line), or "" when it loaded.
std::string cuda_runtime_error();

// Why CUDA device `device_id` cannot run ONNX Runtime's CUDA execution provider here, in one
// line, or "" when it can as far as can be told without creating a session: ONNX Runtime
// lists CUDAExecutionProvider, libonnxruntime_providers_cuda.so lies beside libonnxruntime.so,
// /dev/nvidia0 exists, the CUDA runtime loads and reports the device.
std::string cuda_unavailable_reason(int device_id);

}  // namespace tessera
