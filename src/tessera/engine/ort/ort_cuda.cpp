#include "tessera/engine/ort/ort_cuda.h"

#include <fmt/format.h>
#include <onnxruntime_run_options_config_keys.h>
#include <onnxruntime_session_options_config_keys.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "tessera/common/clock.h"
#include "tessera/common/error.h"
#include "tessera/engine/ort/ort_backend.h"
#include "tessera/model/model_info.h"

namespace tessera {
namespace {

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

}  // namespace

CudaPath cuda_path(const Device& device) {
  if (device.on_cpu()) return CudaPath::kNone;
  switch (device.gpu_path) {
    case GpuPath::graph:
      return CudaPath::kCudaGraph;
    case GpuPath::io:
      return CudaPath::kIoBinding;
    case GpuPath::automatic:
      break;
  }
  return CudaPath::kDefault;
}

int64_t cuda_run_batch(CudaPath path, int64_t batch, int64_t max_batch) {
  return path == CudaPath::kCudaGraph ? max_batch : batch;
}

bool is_out_of_memory_message(const std::string& message) {
  const std::string text = lower(message);
  for (const char* needle : {"out of memory", "failed to allocate", "alloc_failed", "bad_alloc"}) {
    if (text.find(needle) != std::string::npos) return true;
  }
  return false;
}

std::string one_line(const std::string& message) {
  std::string out;
  for (const char c : message) {
    if (c == '\n' || c == '\r') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string first_line(const std::string& message) {
  return message.substr(0, message.find('\n'));
}

void refuse_models_that_crash_cuda(const std::string& model_path) {
  if (read_model_info(model_path).has_scatter_nd) {
    throw Error(model_path +
                ": has ScatterND nodes, which crash ONNX Runtime's CUDA execution provider; "
                "export the positional encoding with Concat/Reshape (as `tessera make-model` "
                "does) or run on cpu");
  }
}

void require_cuda(const Device& device) {
  if (device.on_cpu()) return;
  if (const std::string reason = cuda_unavailable_reason(device.cuda_index); !reason.empty()) {
    throw Error(device.name() + ": the CUDA execution provider is not available (" + reason + ")");
  }
}

void append_cuda_provider(Ort::SessionOptions& session_options, const Device& device,
                          Precision precision,
                          const std::unordered_map<std::string, std::string>& extra,
                          void* compute_stream) {
  try {
    // Creating the options loads the CUDA provider library, which logs through ORT's default
    // logger: that exists only once the process's Ort::Env does.
    ort_env();
    Ort::CUDAProviderOptions cuda;
    std::unordered_map<std::string, std::string> options = {
        {"device_id", std::to_string(device.cuda_index)},
        {"use_tf32", precision == Precision::tf32 ? "1" : "0"},
        {"arena_extend_strategy", "kSameAsRequested"}};
    for (const auto& [key, value] : extra) options[key] = value;
    cuda.Update(options);
    if (compute_stream) cuda.UpdateWithValue("user_compute_stream", compute_stream);
    session_options.AppendExecutionProvider_CUDA_V2(*cuda);
  } catch (const Ort::Exception& e) {
    throw Error(device.name() + ": the CUDA execution provider is not available (" +
                first_line(e.what()) + ")");
  }
}

OrtCudaEngine::OrtCudaEngine(const std::string& model_path, const OrtEngineOptions& options)
    : options_(options), path_(cuda_path(options.device)), device_id_(options.device.cuda_index) {
  if (path_ != CudaPath::kIoBinding && path_ != CudaPath::kCudaGraph) {
    throw UsageError(options_.device.name() + ": OrtCudaEngine runs cuda:N+io or cuda:N+graph");
  }
  if (options_.max_batch < 1) {
    throw UsageError(fmt::format("batch size must be at least 1 (got {})", options_.max_batch));
  }
  check_ort_precision(options_.precision);
  // Reads and checks the model's inputs and output (same checks and messages as the CPU
  // engine) from the file.
  shape_ = read_model_shape(model_path);
  check_finite_weights(model_path);
  if (shape_.symbolic_steps && path_ == CudaPath::kCudaGraph) {
    throw UsageError(options_.device.name() + ": " + model_path +
                     " has symbolic step axes (length buckets), and a CUDA graph takes one input "
                     "shape: run it on cuda:N or cuda:N+io");
  }
  refuse_models_that_crash_cuda(model_path);
  require_cuda(options_.device);
  cuda_ = cuda_runtime();
  auto check = [&](const char* what, int status) {
    if (status != 0) {
      free_buffers();
      throw_ort_error(options_.device.name() + ": " + cuda_->describe(what, status));
    }
  };
  check("cudaSetDevice", cuda_->set_device(device_id_));
  check("cudaStreamCreateWithFlags",
        cuda_->stream_create(&stream_, CudaRuntime::kStreamNonBlocking));
  check("cudaEventCreate", cuda_->event_create(&start_));
  check("cudaEventCreate", cuda_->event_create(&stop_));
  // Device buffers first: a batch too large for the GPU fails here, before pinning host memory.
  const auto bytes = [&](int64_t floats) {
    return static_cast<size_t>(options_.max_batch * floats) * sizeof(float);
  };
  void* p = nullptr;
  check("cudaMalloc", cuda_->malloc_device(&p, bytes(shape_.s2_pixel_floats())));
  device_s2_ = static_cast<float*>(p);
  check("cudaMalloc", cuda_->malloc_device(&p, bytes(shape_.s1_pixel_floats())));
  device_s1_ = static_cast<float*>(p);
  check("cudaMalloc", cuda_->malloc_device(&p, bytes(shape_.output_dim)));
  device_out_ = static_cast<float*>(p);
  check("cudaMallocHost", cuda_->malloc_host(&p, bytes(shape_.s2_pixel_floats())));
  host_s2_ = static_cast<float*>(p);
  check("cudaMallocHost", cuda_->malloc_host(&p, bytes(shape_.s1_pixel_floats())));
  host_s1_ = static_cast<float*>(p);
  check("cudaMallocHost", cuda_->malloc_host(&p, bytes(shape_.output_dim)));
  host_out_ = static_cast<float*>(p);
  std::fill_n(host_s2_, options_.max_batch * shape_.s2_pixel_floats(), 0.0f);
  std::fill_n(host_s1_, options_.max_batch * shape_.s1_pixel_floats(), 0.0f);
  std::fill_n(host_out_, options_.max_batch * shape_.output_dim, 0.0f);
  // Zeros on the device too: a padded run (cuda_run_batch) computes pixels never written.
  check("cudaMemcpyAsync",
        cuda_->memcpy_async(device_s2_, host_s2_, bytes(shape_.s2_pixel_floats()),
                            CudaRuntime::kHostToDevice, stream_));
  check("cudaMemcpyAsync",
        cuda_->memcpy_async(device_s1_, host_s1_, bytes(shape_.s1_pixel_floats()),
                            CudaRuntime::kHostToDevice, stream_));
  check("cudaStreamSynchronize", cuda_->stream_synchronize(stream_));

  Ort::SessionOptions session_options;
  session_options.SetIntraOpNumThreads(std::max(1, options_.intra_op_threads));
  session_options.SetInterOpNumThreads(1);
  session_options.SetExecutionMode(ORT_SEQUENTIAL);
  session_options.SetGraphOptimizationLevel(graph_optimization_level(options_.optimization_level));
  // The CPU threads only feed the GPU: spinning would burn the cores that prepare batches.
  session_options.AddConfigEntry(kOrtSessionOptionsConfigAllowIntraOpSpinning, "0");
  if (path_ == CudaPath::kCudaGraph || shape_.symbolic_steps) {
    // Symbolic steps (length buckets): the input shapes change from run to run, and ORT would
    // plan and keep one memory pattern per shape, for nothing.
    // A graph is captured on the third run, and nothing may allocate GPU memory during a
    // capture. With the memory pattern on, every run from the second asks the arena for one
    // block holding all of the run's tensors, beside the per-tensor blocks the first run left
    // there: for the full model at 16384 pixels 48.5 GB next to 50 GB, which does not fit, so
    // ORT falls back to allocating tensor by tensor, the arena grows during the capture and the
    // capture fails ("operation failed due to a previous error during capture"). With the
    // pattern off the first run's blocks serve every later run.
    session_options.DisableMemPattern();
  }
  try {
    append_cuda_provider(session_options, options_.device, options_.precision,
                         {{"enable_cuda_graph", path_ == CudaPath::kCudaGraph ? "1" : "0"}},
                         stream_);
  } catch (const Error&) {
    free_buffers();
    throw;
  }
  const auto start = Clock::now();
  try {
    session_ = open_session(model_path, session_options, options_.precision == Precision::fp16);
  } catch (const Ort::Exception& e) {
    free_buffers();
    throw_ort_error(model_path +
                    ": cannot build a CUDA session (ONNX Runtime: " + first_line(e.what()) + ")");
  }
  session_seconds_ = seconds_since(start);
  device_memory_ = Ort::MemoryInfo("Cuda", OrtDeviceAllocator, device_id_, OrtMemTypeDefault);
}

OrtCudaEngine::~OrtCudaEngine() {
  free_buffers();
}

void OrtCudaEngine::free_buffers() {
  // The session computes on stream_ and binds the device buffers: it goes first.
  bindings_.clear();
  run_options_.clear();
  session_.reset();
  if (!cuda_) return;
  cuda_->set_device(device_id_);  // the thread that frees may not be the one that built
  if (stream_) cuda_->stream_synchronize(stream_);
  for (float** p : {&device_s2_, &device_s1_, &device_out_}) {
    if (*p) cuda_->free_device(*p);
    *p = nullptr;
  }
  for (float** p : {&host_s2_, &host_s1_, &host_out_}) {
    if (*p) cuda_->free_host(*p);
    *p = nullptr;
  }
  for (CudaRuntime::Event* e : {&start_, &stop_}) {
    if (*e) cuda_->event_destroy(*e);
    *e = nullptr;
  }
  if (stream_) cuda_->stream_destroy(stream_);
  stream_ = nullptr;
}

void OrtCudaEngine::run(int64_t batch) {
  run_between(host_s2_, host_s1_, batch, host_out_);
}

void OrtCudaEngine::run_from(const float* s2, const float* s1, int64_t batch, float* out) {
  run_between(s2, s1, batch, out);
}

HostBuffer OrtCudaEngine::allocate_host(int64_t floats) {
  void* p = nullptr;
  const size_t bytes = static_cast<size_t>(floats) * sizeof(float);
  // The calling thread's current GPU gets the allocation's context: make it this engine's.
  int status = cuda_->set_device(device_id_);
  if (status == 0) status = cuda_->malloc_host(&p, bytes);
  if (status != 0) throw_ort_error(name() + ": " + cuda_->describe("cudaMallocHost", status));
  std::memset(p, 0, bytes);
  const CudaRuntime* cuda = cuda_;  // process-wide: the buffer may outlive the engine
  return HostBuffer(static_cast<float*>(p), [cuda](float* q) { cuda->free_host(q); });
}

void OrtCudaEngine::run_between(const float* s2, const float* s1, int64_t batch, float* out) {
  if (batch < 1 || batch > options_.max_batch) {
    throw Error(fmt::format("batch of {} pixels is outside 1..{}", batch, options_.max_batch));
  }
  auto check = [&](const char* what, int status) {
    if (status == 0) return;
    // Copies from s2/s1 and into `out` may still be queued: those are the caller's buffers,
    // which it may free once this throws.
    cuda_->stream_synchronize(stream_);
    throw_ort_error(name() + ": " + cuda_->describe(what, status));
  };
  check("cudaSetDevice", cuda_->set_device(device_id_));
  const int64_t computed = cuda_run_batch(path_, batch, options_.max_batch);
  const RunShape run_shape{computed, s2_steps(), s1_steps()};
  auto binding = bindings_.find(run_shape);
  if (binding == bindings_.end()) {
    if (path_ != CudaPath::kCudaGraph && bindings_.size() >= kMaxBindings) {
      bindings_.clear();
      run_options_.clear();
    }
    const int64_t s2_shape[3] = {computed, s2_steps(), shape_.s2_features};
    const int64_t s1_shape[3] = {computed, s1_steps(), shape_.s1_features};
    const int64_t out_shape[2] = {computed, shape_.output_dim};
    Ort::IoBinding io(*session_);
    io.BindInput("s2_input",
                 Ort::Value::CreateTensor<float>(device_memory_, device_s2_,
                                                 computed * s2_pixel_floats(), s2_shape, 3));
    io.BindInput("s1_input",
                 Ort::Value::CreateTensor<float>(device_memory_, device_s1_,
                                                 computed * s1_pixel_floats(), s1_shape, 3));
    io.BindOutput("output",
                  Ort::Value::CreateTensor<float>(device_memory_, device_out_,
                                                  computed * shape_.output_dim, out_shape, 2));
    binding = bindings_.emplace(run_shape, std::move(io)).first;
    Ort::RunOptions run_options;
    if (path_ == CudaPath::kCudaGraph) {
      run_options.AddConfigEntry(kOrtRunOptionsConfigCudaGraphAnnotation,
                                 std::to_string(computed).c_str());
    }
    run_options_.emplace(run_shape, std::move(run_options));
  }
  const auto floats = [&](int64_t per_pixel) {
    return static_cast<size_t>(batch * per_pixel) * sizeof(float);
  };
  check("cudaEventRecord", cuda_->event_record(start_, stream_));
  check("cudaMemcpyAsync", cuda_->memcpy_async(device_s2_, s2, floats(s2_pixel_floats()),
                                               CudaRuntime::kHostToDevice, stream_));
  check("cudaMemcpyAsync", cuda_->memcpy_async(device_s1_, s1, floats(s1_pixel_floats()),
                                               CudaRuntime::kHostToDevice, stream_));
  try {
    session_->Run(run_options_.at(run_shape), binding->second);
  } catch (const Ort::Exception& e) {
    cuda_->stream_synchronize(stream_);
    throw_ort_error(name() + ": inference failed (ONNX Runtime: " + one_line(e.what()) + ")");
  }
  check("cudaMemcpyAsync", cuda_->memcpy_async(out, device_out_, floats(shape_.output_dim),
                                               CudaRuntime::kDeviceToHost, stream_));
  check("cudaEventRecord", cuda_->event_record(stop_, stream_));
  check("cudaEventSynchronize", cuda_->event_synchronize(stop_));
  float ms = 0;
  check("cudaEventElapsedTime", cuda_->event_elapsed_time(&ms, start_, stop_));
  busy_seconds_ += ms / 1e3;
}

std::unique_ptr<Engine> build_ort_engine(const std::string& model_path,
                                         const OrtEngineOptions& options, double* session_seconds) {
  const CudaPath path = cuda_path(options.device);
  if (path == CudaPath::kIoBinding || path == CudaPath::kCudaGraph) {
    auto engine = std::make_unique<OrtCudaEngine>(model_path, options);
    if (session_seconds) *session_seconds = engine->session_seconds();
    return engine;
  }
  auto engine = std::make_unique<OrtEngine>(model_path, options);
  if (session_seconds) *session_seconds = engine->session_seconds();
  return engine;
}

}  // namespace tessera
