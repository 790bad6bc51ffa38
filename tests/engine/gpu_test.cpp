// The GPU paths (ort_cuda.h). Without a usable GPU (no libonnxruntime_providers_cuda.so for ONNX
// Runtime beside it, no /dev/nvidia0, no CUDA runtime or no device 0) the GPU
// tests skip with the reason and the no-GPU tests check the one-line errors users see. On a
// GPU machine they compare every CUDA path with the CPU engine on a small model.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>

#include "tessera/common/error.h"
#include "tessera/engine/dummy_inputs.h"
#include "tessera/engine/ort/cuda_runtime.h"
#include "tessera/engine/ort/ort_cuda.h"
#include "tessera/engine/ort/ort_engine.h"
#include "tessera/model/model_builder.h"
#include "test_models.h"
#include "test_support.h"

namespace tessera {
namespace {

const std::string kDir = std::string(TESSERA_TEST_TMP) + "/gpu_test";

// A model small enough for the CPU reference (d 32, one layer, 6 + 5 steps).
const std::string& small_model() {
  static const std::string path =
      testing::write_test_model(kDir, "small.onnx", testing::tiny_model_config(6, 5));
  return path;
}

// Few weights but 40 steps x 4096 FFN activations: ~0.7 MB per pixel, so a million-pixel
// batch cannot fit in any GPU's memory.
const std::string& wide_model() {
  static const std::string path = [] {
    ModelConfig config = testing::tiny_model_config();
    config.ffn = 4096;
    return testing::write_test_model(kDir, "wide.onnx", config);
  }();
  return path;
}

using testing::error_of;

// Skips the calling test unless CUDA device 0 can run ONNX Runtime's CUDA provider.
#define REQUIRE_GPU()                                                 \
  do {                                                                \
    const std::string reason = cuda_unavailable_reason(0);            \
    if (!reason.empty()) GTEST_SKIP() << "no usable GPU: " << reason; \
  } while (0)

// Copies the first `batch` pixels of `from`'s inputs into `to`'s.
void copy_inputs(Engine& from, Engine& to, int64_t batch) {
  const ModelShape& s = from.shape();
  std::memcpy(to.s2_input(), from.s2_input(), batch * s.s2_pixel_floats() * sizeof(float));
  std::memcpy(to.s1_input(), from.s1_input(), batch * s.s1_pixel_floats() * sizeof(float));
}

// Largest |a - b| over the first `batch` outputs.
float max_difference(const Engine& a, const Engine& b, int64_t batch) {
  float worst = 0;
  for (int64_t i = 0; i < batch * a.shape().output_dim; ++i) {
    worst = std::max(worst, std::fabs(a.output()[i] - b.output()[i]));
  }
  return worst;
}

// ---- without a GPU (and on one): parsing and errors ----

TEST(GpuPaths, GraphRunsComputeTheWholeEngine) {
  // IO binding computes what it is given; the graph path always its engine's capacity, so
  // that an engine captures exactly one graph.
  EXPECT_EQ(cuda_run_batch(CudaPath::kIoBinding, 7, 64), 7);
  EXPECT_EQ(cuda_run_batch(CudaPath::kDefault, 33, 64), 33);
  EXPECT_EQ(cuda_run_batch(CudaPath::kCudaGraph, 7, 64), 64);
  EXPECT_EQ(cuda_run_batch(CudaPath::kCudaGraph, 64, 64), 64);
  EXPECT_EQ(cuda_run_batch(CudaPath::kCudaGraph, 1, 16384), 16384);
}

TEST(GpuPaths, DeviceStringsNameThePath) {
  EXPECT_EQ(cuda_path(parse_device("cpu")), CudaPath::kNone);
  EXPECT_EQ(cuda_path(parse_device("cuda")), CudaPath::kDefault);
  EXPECT_EQ(cuda_path(parse_device("cuda:1")), CudaPath::kDefault);
  EXPECT_EQ(cuda_path(parse_device("cuda:0+io")), CudaPath::kIoBinding);
  EXPECT_EQ(cuda_path(parse_device("cuda:2+graph")), CudaPath::kCudaGraph);
  EXPECT_EQ(parse_device("cuda:3+graph").cuda_index, 3);
  EXPECT_EQ(parse_device("cuda:12+io").cuda_index, 12);
  EXPECT_EQ(error_of([] { cuda_path(parse_device("cuda:0+fast")); }),
            "unknown device 'cuda:0+fast' (expected cpu or cuda:N[+io|+graph])");
  EXPECT_EQ(error_of([] { cuda_path(parse_device("cuda:+io")); }),
            "unknown device 'cuda:+io' (expected cpu or cuda:N[+io|+graph])");
}

TEST(GpuPaths, OutOfMemoryWordings) {
  // ORT's arena, the CUDA allocator, cuBLAS; the first with the cause on a second line.
  EXPECT_TRUE(is_out_of_memory_message(
      "Non-zero status code returned while running MatMul node. Name:'mm' Status Message: \n"
      "/onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:376 void* "
      "onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*, bool, "
      "onnxruntime::WaitNotificationFn) Failed to allocate memory for requested buffer of size "
      "687194767360"));
  EXPECT_TRUE(is_out_of_memory_message("CUDA failure 2: out of memory ; GPU=0 ; hostname=h"));
  EXPECT_TRUE(is_out_of_memory_message("CUBLAS failure 3: CUBLAS_STATUS_ALLOC_FAILED ; GPU=0"));
  EXPECT_TRUE(is_out_of_memory_message("cuda:0+io: cudaMalloc: out of memory"));
  EXPECT_FALSE(is_out_of_memory_message("Invalid input name: s3_input"));
  EXPECT_EQ(one_line("Status Message: \n/src/bfc_arena.cc:376 Failed to allocate\n"),
            "Status Message: /src/bfc_arena.cc:376 Failed to allocate");
}

TEST(GpuPaths, OrtEngineLeavesTheIoPathsToOrtCudaEngine) {
  OrtEngineOptions options;
  options.device = parse_device("cuda:0+graph");
  EXPECT_EQ(error_of([&] { OrtEngine(small_model(), options); }),
            "cuda:0+graph: the IO-binding paths are run by OrtCudaEngine, not OrtEngine");
}

TEST(GpuPaths, MakeEngineKeepsTheCpuEngine) {
  OrtEngineOptions options;
  options.max_batch = 3;
  double seconds = -1;
  const auto engine = build_ort_engine(small_model(), options, &seconds);
  EXPECT_EQ(engine->name(), "ort-cpu");
  EXPECT_NE(dynamic_cast<OrtEngine*>(engine.get()), nullptr);
  EXPECT_GE(seconds, 0.0);
}

TEST(GpuPaths, BadOptionsBeforeAnyCudaWork) {
  OrtEngineOptions options;
  options.device = parse_device("cuda:0+io");
  options.precision = Precision::bf16;
  EXPECT_EQ(error_of([&] { OrtCudaEngine(small_model(), options); }),
            "the ort engine computes fp32, tf32 or fp16, not bf16");
  options.precision = Precision::fp32;
  options.max_batch = 0;
  EXPECT_EQ(error_of([&] { OrtCudaEngine(small_model(), options); }),
            "batch size must be at least 1 (got 0)");
  options.max_batch = 4;
  EXPECT_EQ(error_of([&] { OrtCudaEngine(kDir + "/missing.onnx", options); }),
            kDir + "/missing.onnx: no such file");
}

TEST(GpuPaths, CudaEngineWithoutAGpuIsOneClearLine) {
  const std::string reason = cuda_unavailable_reason(0);
  if (reason.empty()) GTEST_SKIP() << "a usable GPU is present: see the GPU tests";
  EXPECT_NE(reason.find_first_not_of(' '), std::string::npos);
  EXPECT_EQ(reason.find('\n'), std::string::npos);
  for (const std::string device : {"cuda:0+io", "cuda:0+graph"}) {
    OrtEngineOptions options;
    options.device = parse_device(device);
    const std::string message = error_of([&] { build_ort_engine(small_model(), options); });
    EXPECT_EQ(message.rfind(device + ": the CUDA execution provider is not available (", 0), 0u)
        << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

// ---- on a GPU ----

class GpuAgainstCpu : public ::testing::TestWithParam<const char*> {};

TEST_P(GpuAgainstCpu, MatchesTheCpuEngine) {
  REQUIRE_GPU();
  const std::string device = GetParam();
  OrtEngineOptions cpu_options;
  cpu_options.max_batch = 64;
  OrtEngine cpu(small_model(), cpu_options);
  fill_dummy_inputs(cpu, 11);
  for (const std::string precision : {"fp32", "tf32", "fp16"}) {
    OrtEngineOptions gpu_options = cpu_options;
    gpu_options.device = parse_device(device);
    gpu_options.precision = parse_precision(precision);
    const auto gpu = build_ort_engine(small_model(), gpu_options);
    EXPECT_EQ(gpu->name(), "ort-" + device);
    // fp16: float16 weights and activations (on the CPU the converted model is within 4e-3).
    const float tolerance = precision == "fp32" ? 1e-3f : precision == "tf32" ? 3e-2f : 5e-2f;
    // Full batch, a smaller one, then both again: with CUDA graphs the runs of 7 pixels replay
    // the one graph of 64 (an engine holding graphs of two sizes read out of bounds).
    for (const int64_t batch : {64, 7, 64, 7}) {
      copy_inputs(cpu, *gpu, batch);
      cpu.run(batch);
      gpu->run(batch);
      EXPECT_LE(max_difference(cpu, *gpu, batch), tolerance)
          << device << " " << precision << " batch " << batch;
    }
    // New inputs in the same buffers must give new outputs (a replayed graph reads them).
    fill_dummy_inputs(cpu, 12);
    copy_inputs(cpu, *gpu, 64);
    cpu.run(64);
    gpu->run(64);
    EXPECT_LE(max_difference(cpu, *gpu, 64), tolerance) << device << " " << precision;
    fill_dummy_inputs(cpu, 11);
  }
}

// run_from copies straight between the caller's buffers (pinned from allocate_host, or
// ordinary) and the device: the same outputs as run() through the engine's own buffers.
TEST(GpuPaths, RunFromReadsAndWritesTheCallersBuffers) {
  REQUIRE_GPU();
  for (const std::string device : {"cuda:0+io", "cuda:0+graph"}) {
    OrtEngineOptions options;
    options.device = parse_device(device);
    options.max_batch = 64;
    const auto gpu = build_ort_engine(small_model(), options);
    const ModelShape& s = gpu->shape();
    fill_dummy_inputs(*gpu, 7);
    gpu->run(40);
    const std::vector<float> expected(gpu->output(), gpu->output() + 40 * s.output_dim);
    HostBuffer s2 = gpu->allocate_host(64 * s.s2_pixel_floats());
    HostBuffer s1 = gpu->allocate_host(64 * s.s1_pixel_floats());
    HostBuffer out = gpu->allocate_host(64 * s.output_dim);
    std::memcpy(s2.get(), gpu->s2_input(), 40 * s.s2_pixel_floats() * sizeof(float));
    std::memcpy(s1.get(), gpu->s1_input(), 40 * s.s1_pixel_floats() * sizeof(float));
    std::vector<float> plain_s2(s2.get(), s2.get() + 40 * s.s2_pixel_floats());
    std::vector<float> plain_s1(s1.get(), s1.get() + 40 * s.s1_pixel_floats());
    std::vector<float> plain_out(40 * s.output_dim);
    fill_dummy_inputs(*gpu, 8);  // the engine's own buffers must not be what is read
    gpu->run_from(s2.get(), s1.get(), 40, out.get());
    gpu->run_from(plain_s2.data(), plain_s1.data(), 40, plain_out.data());
    for (size_t k = 0; k < expected.size(); ++k) {
      ASSERT_NEAR(out[k], expected[k], 1e-5f) << device << " " << k;
      ASSERT_NEAR(plain_out[k], expected[k], 1e-5f) << device << " " << k;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, GpuAgainstCpu,
                         ::testing::Values("cuda:0", "cuda:0+io", "cuda:0+graph"));

TEST(GpuMemory, AbsurdBufferIsAnOutOfMemoryError) {
  REQUIRE_GPU();
  OrtEngineOptions options;
  options.device = parse_device("cuda:0+io");
  options.max_batch = int64_t{1} << 34;  // 24 TB of s2 inputs
  const std::string message = error_of([&] { OrtCudaEngine(small_model(), options); });
  EXPECT_EQ(message.rfind("cuda:0+io: cudaMalloc: ", 0), 0u) << message;
  EXPECT_TRUE(is_out_of_memory_message(message)) << message;
}

TEST(GpuMemory, AbsurdBatchFailsThenSmallerBatchesRun) {
  REQUIRE_GPU();
  for (const std::string device : {"cuda:0", "cuda:0+io"}) {
    OrtEngineOptions options;
    options.device = parse_device(device);
    options.max_batch = int64_t{1} << 20;
    const auto gpu = build_ort_engine(wide_model(), options);
    fill_dummy_inputs(*gpu, 5);
    const std::string message = error_of([&] { gpu->run(options.max_batch); });
    EXPECT_TRUE(is_out_of_memory_message(message)) << device << ": " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    // The engine stays usable, and agrees with the CPU.
    OrtEngineOptions cpu_options;
    cpu_options.max_batch = 32;
    OrtEngine cpu(wide_model(), cpu_options);
    copy_inputs(*gpu, cpu, 32);
    gpu->run(32);
    cpu.run(32);
    EXPECT_LE(max_difference(cpu, *gpu, 32), 1e-3f) << device;
  }
}

TEST(GpuMemory, BusyTimeIsMeasured) {
  REQUIRE_GPU();
  OrtEngineOptions options;
  options.device = parse_device("cuda:0+io");
  options.max_batch = 256;
  OrtCudaEngine gpu(small_model(), options);
  fill_dummy_inputs(gpu, 3);
  EXPECT_EQ(gpu.busy_seconds(), 0.0);
  for (int i = 0; i < 3; ++i) gpu.run(256);
  EXPECT_GT(gpu.busy_seconds(), 0.0);
}

}  // namespace
}  // namespace tessera
