// The multi-device runner on CPU only: device lists, chunk claiming over the shared batch
// counter, out-of-memory halving (with an engine that runs out of memory on purpose), and
// whole tiles through "cpu,cpu+stream" (the GPU worker's pipeline on a CPU engine) against
// the plain CPU run.

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <thread>

#include "tessera/common/error.h"
#include "tessera/engine/ort/cuda_runtime.h"
#include "tessera/engine/ort/ort_engine.h"
#include "tessera/io/synth_tile.h"
#include "tessera/model/model_builder.h"
#include "tessera/runtime/device_batches.h"
#include "tessera/runtime/device_list.h"
#include "tessera/runtime/tile_runner.h"
#include "tessera/topology/placement.h"
#include "tessera/topology/topology.h"
#include "test_models.h"
#include "test_support.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
// Two cases write the same fixture tile: a directory per process keeps them apart.
const testing::ProcessTestDir kTestDir("device_test");
const std::string& kDir = kTestDir.path();

using testing::error_of;

// The streaming entries of `list` as given.
std::vector<std::string> entries(const DeviceList& list) {
  std::vector<std::string> out;
  for (const StreamDevice& stream : list.streams) out.push_back(stream.entry);
  return out;
}

TEST(DeviceList, Parses) {
  DeviceList list = parse_device_list("cpu");
  EXPECT_TRUE(list.cpu);
  EXPECT_TRUE(list.streams.empty());
  list = parse_device_list("cpu,cuda:0");
  EXPECT_TRUE(list.cpu);
  EXPECT_EQ(entries(list), std::vector<std::string>({"cuda:0"}));
  list = parse_device_list("cuda:1+graph,cuda:0+io");
  EXPECT_FALSE(list.cpu);
  EXPECT_EQ(entries(list), std::vector<std::string>({"cuda:1+graph", "cuda:0+io"}));
  EXPECT_EQ(list.streams[0].device, (Device{1, GpuPath::graph}));
  EXPECT_EQ(list.streams[1].device, (Device{0, GpuPath::io}));
  EXPECT_TRUE(list.any_cuda());
  list = parse_device_list("cpu+stream,cpu");
  EXPECT_TRUE(list.cpu);
  EXPECT_EQ(entries(list), std::vector<std::string>({"cpu+stream"}));
  EXPECT_TRUE(list.streams[0].device.on_cpu());  // its engine runs on the CPU
  EXPECT_FALSE(list.any_cuda());
  EXPECT_FALSE(parse_device_list("cpu").any_cuda());
}

TEST(DeviceList, RejectsBadLists) {
  EXPECT_EQ(error_of([] { parse_device_list(""); }), "empty entry in device list ''");
  EXPECT_EQ(error_of([] { parse_device_list("cpu,"); }), "empty entry in device list 'cpu,'");
  EXPECT_EQ(error_of([] { parse_device_list("cpu,cpu"); }),
            "device cpu is listed twice in 'cpu,cpu'");
  EXPECT_EQ(error_of([] { parse_device_list("cpu,tpu"); }),
            "unknown device 'tpu' (expected cpu or cuda:N[+io|+graph])");
  EXPECT_EQ(error_of([] { parse_device_list("cuda:0 "); }),
            "unknown device 'cuda:0 ' (expected cpu or cuda:N[+io|+graph])");
}

TEST(BatchCounter, ChunksAreConsecutiveAndClipped) {
  BatchCounter counter(10);
  auto r = counter.claim(4);
  EXPECT_EQ(r.first, 0);
  EXPECT_EQ(r.end, 4);
  r = counter.claim(1);
  EXPECT_EQ(r.first, 4);
  EXPECT_EQ(r.end, 5);
  r = counter.claim(8);
  EXPECT_EQ(r.first, 5);
  EXPECT_EQ(r.end, 10);
  EXPECT_TRUE(counter.claim(1).empty());
  EXPECT_TRUE(counter.claim(3).empty());
}

TEST(BatchCounter, ThreadsClaimEveryBatchExactlyOnce) {
  const int64_t batches = 5000;
  BatchCounter counter(batches);
  std::vector<std::vector<int64_t>> claimed(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const int64_t chunk = t == 0 ? 16 : 1;  // one "GPU" among three "CPU" workers
      for (auto r = counter.claim(chunk); !r.empty(); r = counter.claim(chunk)) {
        EXPECT_LE(r.end - r.first, chunk);
        for (int64_t b = r.first; b < r.end; ++b) claimed[t].push_back(b);
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<int64_t> all;
  for (const auto& c : claimed) all.insert(all.end(), c.begin(), c.end());
  std::sort(all.begin(), all.end());
  ASSERT_EQ(static_cast<int64_t>(all.size()), batches);
  for (int64_t b = 0; b < batches; ++b) ASSERT_EQ(all[b], b);
}

// An engine whose output row k is the sum of pixel k's inputs, and that fails with ONNX
// Runtime's arena message for batches above `fits` pixels (or with another error when asked).
class FakeEngine : public Engine {
 public:
  FakeEngine(int64_t max_batch, int64_t fits) : max_batch_(max_batch), fits_(fits) {
    shape_.s2_steps = 2;
    shape_.s2_features = 3;
    shape_.s1_steps = 1;
    shape_.s1_features = 2;
    shape_.output_dim = 2;
    s2_.resize(max_batch * 6);
    s1_.resize(max_batch * 2);
    out_.resize(max_batch * 2);
  }
  const ModelShape& shape() const override { return shape_; }
  int64_t max_batch() const override { return max_batch_; }
  std::string name() const override { return "fake"; }
  float* s2_input() override { return s2_.data(); }
  float* s1_input() override { return s1_.data(); }
  const float* output() const override { return out_.data(); }
  void run(int64_t batch) override {
    runs.push_back(batch);
    if (other_error) throw Error("fake: inference failed (ONNX Runtime: Invalid rank)");
    if (batch > fits_) {
      throw OutOfMemoryError(
          "fake: inference failed (ONNX Runtime: Non-zero status code returned while running "
          "MatMul node. Status Message: bfc_arena.cc:376 Failed to allocate memory for "
          "requested buffer of size 1234)");
    }
    for (int64_t k = 0; k < batch; ++k) {
      float sum = 0;
      for (int i = 0; i < 6; ++i) sum += s2_[k * 6 + i];
      out_[k * 2] = sum;
      out_[k * 2 + 1] = s1_[k * 2] + s1_[k * 2 + 1];
    }
  }
  void interrupt() override { ++interrupts; }
  void allow_runs() override { ++allows; }
  std::vector<int64_t> runs;
  bool other_error = false;
  int interrupts = 0, allows = 0;

 private:
  ModelShape shape_;
  int64_t max_batch_, fits_;
  std::vector<float> s2_, s1_, out_;
};

TEST(BatchCounter, UnclaimedCountsDown) {
  BatchCounter counter(5);
  EXPECT_EQ(counter.unclaimed(), 5);
  counter.claim(2);
  EXPECT_EQ(counter.unclaimed(), 3);
  counter.claim(10);
  EXPECT_EQ(counter.unclaimed(), 0);
  counter.claim(1);
  EXPECT_EQ(counter.unclaimed(), 0);
}

TEST(BatchFinishes, TheFirstFinisherWritesAndACpuWorkerStillRunningIsInterrupted) {
  BatchFinishes finishes(6, 2);
  FakeEngine a(4, 4), b(4, 4);
  BatchCounter counter(6);
  const auto none_done = [](int64_t) { return false; };
  counter.claim(4);  // batches 0-3 went to a streaming worker
  EXPECT_EQ(finishes.claim_and_start(0, counter, a, none_done), 4);
  EXPECT_EQ(a.allows, 1);
  EXPECT_EQ(finishes.claim_and_start(1, counter, b, none_done), 5);
  // A streaming worker with nothing left to claim takes both over, once.
  EXPECT_EQ(finishes.take_over(8), (std::vector<int64_t>{4, 5}));
  EXPECT_TRUE(finishes.take_over(8).empty());
  // It finishes 4 first: worker 0 is interrupted, and its own finish is refused.
  EXPECT_TRUE(finishes.finish(4));
  EXPECT_TRUE(finishes.finished(4));
  EXPECT_EQ(a.interrupts, 1);
  EXPECT_EQ(b.interrupts, 0);
  finishes.stop(0);
  EXPECT_FALSE(finishes.finish(4));
  // Worker 1 finishes 5 first (having stopped): nobody is interrupted, the second is refused.
  finishes.stop(1);
  EXPECT_TRUE(finishes.finish(5));
  EXPECT_EQ(b.interrupts, 0);
  EXPECT_FALSE(finishes.finish(5));
  // Nothing left to claim: nothing starts.
  EXPECT_EQ(finishes.claim_and_start(0, counter, a, none_done), -1);
  EXPECT_EQ(a.allows, 1);
  // Journaled and finished batches are passed over; take_over hands out at most `count`.
  BatchCounter again(6);
  EXPECT_EQ(finishes.claim_and_start(0, again, a, [](int64_t b) { return b < 2; }), 2);
  EXPECT_EQ(finishes.claim_and_start(1, again, b, none_done), 3);
  EXPECT_EQ(finishes.take_over(1), (std::vector<int64_t>{2}));
  EXPECT_EQ(finishes.take_over(1), (std::vector<int64_t>{3}));
  finishes.stop(0);
  EXPECT_TRUE(finishes.finish(2));
  finishes.stop(1);
  BatchCounter last(6);
  last.claim(2);
  EXPECT_EQ(finishes.claim_and_start(0, last, a, none_done), 3);  // 2, 4 and 5 are finished
  EXPECT_EQ(finishes.claim_and_start(1, last, b, none_done), -1);
  EXPECT_FALSE(finishes.finished(0));
}

TEST(LeaveToStreams, ACpuWorkerStopsWhenTheGpuWouldFinishTheRestFirst) {
  // A GPU at 25,000 px/s finishes 100,000 unclaimed pixels in 4 s.
  EXPECT_TRUE(leave_to_streams(25000, 100000, 15.0));  // a 15 s CPU batch would end last
  EXPECT_FALSE(leave_to_streams(25000, 100000, 3.0));  // a 3 s CPU batch still helps
  EXPECT_FALSE(leave_to_streams(25000, 100000, 4.0));  // a tie: keep going
  EXPECT_TRUE(leave_to_streams(25000, 0, 0.5));        // nothing left for anyone
  EXPECT_FALSE(leave_to_streams(0, 100000, 15.0));     // GPU rate not known yet
  EXPECT_FALSE(leave_to_streams(25000, 100000, 0.0));  // first CPU batch not timed yet
}

TEST(StreamingEngineCapacity, IsTheChunkOrTheTileRoundedUpAndNeverAboveTheCeiling) {
  // 64 batches of 256 pixels: a 16384-pixel chunk.
  EXPECT_EQ(streaming_engine_capacity(64, 256, 1000000, 0), 16384);
  EXPECT_EQ(streaming_engine_capacity(64, 256, 3000, 0), 4096);  // a small tile
  EXPECT_EQ(streaming_engine_capacity(64, 256, 4096, 0), 4096);
  EXPECT_EQ(streaming_engine_capacity(64, 256, 1000000, 2048), 2048);  // shrunk for memory
  // Shrunk below one batch: the next tile is not built at a batch again.
  EXPECT_EQ(streaming_engine_capacity(1, 256, 1000000, 128), 128);
  EXPECT_EQ(streaming_engine_capacity(64, 256, 100, 128), 128);
}

TEST(SubBatches, HalvesOnOutOfMemoryAndKeepsTheLimit) {
  FakeEngine engine(64, 13);
  const int64_t count = 40;
  std::vector<float> s2(count * 6), s1(count * 2), out(count * 2, -1.0f);
  for (size_t i = 0; i < s2.size(); ++i) s2[i] = static_cast<float>(i % 7);
  for (size_t i = 0; i < s1.size(); ++i) s1[i] = static_cast<float>(i % 5);
  int64_t limit = 64;
  std::vector<int64_t> halvings;
  run_in_sub_batches(engine, s2.data(), s1.data(), count, out.data(), &limit,
                     [&](int64_t reduced) { halvings.push_back(reduced); });
  // 40 fails, 20 fails, 10 fits: four runs of 10.
  EXPECT_EQ(halvings, std::vector<int64_t>({20, 10}));
  EXPECT_EQ(limit, 10);
  EXPECT_EQ(engine.runs, std::vector<int64_t>({40, 20, 10, 10, 10, 10}));
  for (int64_t k = 0; k < count; ++k) {
    float sum = 0;
    for (int i = 0; i < 6; ++i) sum += s2[k * 6 + i];
    EXPECT_EQ(out[k * 2], sum) << k;
    EXPECT_EQ(out[k * 2 + 1], s1[k * 2] + s1[k * 2 + 1]) << k;
  }
  // The reduced limit holds for the next call: no failing attempt.
  engine.runs.clear();
  run_in_sub_batches(engine, s2.data(), s1.data(), 15, out.data(), &limit);
  EXPECT_EQ(engine.runs, std::vector<int64_t>({10, 5}));
}

TEST(SubBatches, OtherErrorsAndSinglePixelsAreRethrown) {
  std::vector<float> s2(6 * 8), s1(2 * 8), out(2 * 8);
  FakeEngine broken(8, 8);
  broken.other_error = true;
  int64_t limit = 8;
  EXPECT_EQ(
      error_of([&] { run_in_sub_batches(broken, s2.data(), s1.data(), 8, out.data(), &limit); }),
      "fake: inference failed (ONNX Runtime: Invalid rank)");
  EXPECT_EQ(limit, 8);
  FakeEngine tiny(8, 0);  // not even one pixel fits
  const std::string message =
      error_of([&] { run_in_sub_batches(tiny, s2.data(), s1.data(), 8, out.data(), &limit); });
  EXPECT_NE(message.find("Failed to allocate memory"), std::string::npos) << message;
  EXPECT_EQ(limit, 1);
  EXPECT_EQ(tiny.runs, std::vector<int64_t>({8, 4, 2, 1}));
}

TEST(SubBatches, WithoutALimitRunsAtTheEnginesSizeAndRethrowsOutOfMemory) {
  std::vector<float> s2(6 * 20), s1(2 * 20), out(2 * 20);
  FakeEngine engine(8, 8);
  run_in_sub_batches(engine, s2.data(), s1.data(), 20, out.data(), nullptr);
  EXPECT_EQ(engine.runs, std::vector<int64_t>({8, 8, 4}));
  FakeEngine small(8, 4);  // runs of 8 do not fit: no halving without a limit
  const std::string message =
      error_of([&] { run_in_sub_batches(small, s2.data(), s1.data(), 8, out.data(), nullptr); });
  EXPECT_NE(message.find("Failed to allocate memory"), std::string::npos) << message;
  EXPECT_EQ(small.runs, std::vector<int64_t>({8}));
}

// ---- whole tiles ----

const std::string& small_model() {
  static const std::string path =
      testing::write_test_model(kDir, "small.onnx", testing::tiny_model_config());
  return path;
}

std::string write_tile(const std::string& grid, int height, int width, uint32_t seed,
                       double nodata = 0.05) {
  SynthOptions options;
  options.nodata = nodata;
  options.height = height;
  options.width = width;
  options.s2_steps = 14;
  options.s1_asc_steps = 5;
  options.s1_desc_steps = 0;
  options.seed = seed;
  const std::string d = kDir + "/" + grid;
  write_synth_tile(d, options, true);
  return d;
}

const std::string& tile_dir() {
  static const std::string dir = write_tile("grid_0.55_1.15", 13, 11, 7);
  return dir;
}

// A second tile, larger than the first.
const std::string& large_tile_dir() {
  static const std::string dir = write_tile("grid_0.65_1.15", 21, 17, 8);
  return dir;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The payload of an .npy file (after its header, which ends with the first newline).
std::string npy_payload(const std::string& path) {
  const std::string bytes = slurp(path);
  return bytes.substr(bytes.find('\n') + 1);
}

void expect_same_outputs(const TileSummary& a, const TileSummary& b, const std::string& what) {
  const std::string qa = npy_payload(a.embeddings_path), qb = npy_payload(b.embeddings_path);
  const std::string sa = npy_payload(a.scales_path), sb = npy_payload(b.scales_path);
  ASSERT_EQ(qa.size(), qb.size()) << what;
  ASSERT_EQ(sa.size(), sb.size()) << what;
  int64_t nonzero = 0;
  for (size_t i = 0; i < qa.size(); ++i) {
    const int diff = static_cast<int8_t>(qa[i]) - static_cast<int8_t>(qb[i]);
    ASSERT_LE(std::abs(diff), 1) << what << " byte " << i;
    nonzero += qa[i] != 0;
  }
  EXPECT_GT(nonzero, 0) << what;
  std::vector<float> fa(sa.size() / 4), fb(sb.size() / 4);
  std::memcpy(fa.data(), sa.data(), sa.size());
  std::memcpy(fb.data(), sb.data(), sb.size());
  for (size_t i = 0; i < fa.size(); ++i) {
    ASSERT_NEAR(fa[i], fb[i], 1e-5f * std::fabs(fb[i])) << what << " scale " << i;
  }
}

InferOptions infer_options(const std::string& device, const std::string& out, int repeat,
                           int64_t gpu_batch) {
  InferOptions options;
  options.model_path = small_model();
  options.out_dir = out;
  options.device = device;
  options.batch = 8;
  options.gpu_batch = gpu_batch;
  options.repeat = repeat;
  options.force = true;
  return options;
}

Plan one_worker_plan() {
  return plan_layout(Topology::this_machine().info(), "single:1", MemoryPolicy::kLocal);
}

TileSummary infer(const std::string& device, const std::string& out, int repeat,
                  int64_t gpu_batch) {
  return run_tile(tile_dir(), infer_options(device, out, repeat, gpu_batch), one_worker_plan(),
                  nullptr);
}

TEST(BatchFinishes, AnInterruptedOrtRunFailsUntilRunsAreAllowedAgain) {
  OrtEngineOptions options;
  options.max_batch = 16;
  OrtEngine engine(small_model(), options);
  engine.interrupt();
  const std::string message = error_of([&] { engine.run(16); });
  EXPECT_EQ(message.rfind("ort-cpu: inference failed (ONNX Runtime: ", 0), 0u) << message;
  EXPECT_NE(message.find("terminate"), std::string::npos) << message;
  engine.allow_runs();
  engine.run(16);
}

TEST(MixedDevices, StreamingWorkerWritesTheSameBytesAsTheCpuWorkers) {
  for (const int repeat : {1, 2}) {
    const TileSummary cpu = infer("cpu", kDir + "/out_cpu", repeat, 8192);
    ASSERT_EQ(cpu.status, TileStatus::kDone);
    EXPECT_EQ(cpu.gpu_busy_percent, -1);
    EXPECT_EQ(cpu.gpu_batch, 0);
    EXPECT_EQ(cpu.pixels_computed, cpu.pixels_valid);
    EXPECT_EQ(cpu.stream_pixels, 0);
    // Chunks of 3 batches (24 pixels) on the streaming worker, single batches on the CPU
    // worker, and the streaming worker alone with one chunk for the whole tile.
    for (const auto& [device, gpu_batch] :
         std::vector<std::pair<std::string, int64_t>>{{"cpu,cpu+stream", 24},
                                                      {"cpu+stream", 24},
                                                      {"cpu+stream", 100000},
                                                      {"cpu+stream,cpu", 7}}) {
      const std::string out = kDir + "/out_mixed";
      const TileSummary mixed = infer(device, out, repeat, gpu_batch);
      ASSERT_EQ(mixed.status, TileStatus::kDone);
      EXPECT_EQ(mixed.pixels_valid, cpu.pixels_valid);
      EXPECT_EQ(mixed.batches, cpu.batches);
      EXPECT_EQ(mixed.gpu_busy_percent, -1);  // a CPU engine has no GPU busy time
      EXPECT_GE(mixed.gpu_batch, 8);
      EXPECT_EQ(mixed.pixels_computed, cpu.pixels_valid);
      if (device == "cpu+stream") {
        EXPECT_EQ(mixed.stream_pixels, mixed.pixels_computed) << device;
      } else {
        // The streaming worker starts first (CPU sessions are built after its engine); how
        // much the CPU worker gets depends on timing.
        EXPECT_GT(mixed.stream_pixels, 0) << device;
        EXPECT_LE(mixed.stream_pixels, mixed.pixels_computed) << device;
      }
      // Same pixels, same sampling, same CPU engine: only the batch a pixel ran in differs,
      // which may move a float by an ulp (GEMM blocking), so an int8 value by at most one.
      expect_same_outputs(mixed, cpu, device + " repeat " + std::to_string(repeat));
      EXPECT_FALSE(fs::exists(out + "/grid_0.55_1.15.journal"));
    }
  }
}

// On the graph path an engine computes its whole capacity at every run, so running out of memory
// must build a smaller engine rather than run fewer pixels. A tile of 2^20 valid pixels through a
// model with ~0.7 MB of activations per pixel, in chunks of 2^20 pixels, fits no GPU.
TEST(MixedDevices, AGraphEngineOutOfMemoryIsRebuiltSmaller) {
  const std::string reason = cuda_unavailable_reason(0);
  if (!reason.empty()) GTEST_SKIP() << "no usable GPU: " << reason;
  const std::string tile = write_tile("grid_0.75_1.15", 1024, 1024, 9, 0.0);
  ModelConfig config = testing::tiny_model_config();
  config.ffn = 4096;
  InferOptions options = infer_options("cuda:0+graph", kDir + "/out_graph_oom", 1, 1 << 20);
  options.model_path = testing::write_test_model(kDir, "wide.onnx", config);
  options.batch = 256;
  const TileSummary graph = run_tile(tile, options, one_worker_plan(), nullptr);
  ASSERT_EQ(graph.status, TileStatus::kDone);
  EXPECT_EQ(graph.pixels_valid, 1 << 20);
  EXPECT_LT(graph.gpu_batch, 1 << 20);
  EXPECT_GT(graph.engines_built, 1);
  // The next tile of the run keeps the engine that fitted instead of building a larger one.
  options.out_dir = kDir + "/out_graph_oom_kept";
  TileRunner kept(options, one_worker_plan());
  const TileSummary first = kept.run(tile, nullptr);
  const TileSummary second = kept.run(write_tile("grid_0.85_1.15", 1024, 1024, 10, 0.0), nullptr);
  ASSERT_EQ(second.status, TileStatus::kDone);
  EXPECT_EQ(second.engines_built, 0);
  EXPECT_EQ(second.gpu_batch, first.gpu_batch);
  // The IO-binding path halves its runs instead; both compute the same embeddings.
  options.device = "cuda:0+io";
  options.out_dir = kDir + "/out_io_oom";
  const TileSummary io = run_tile(tile, options, one_worker_plan(), nullptr);
  ASSERT_EQ(io.status, TileStatus::kDone);
  EXPECT_LT(io.gpu_batch, 1 << 20);
  const std::string qa = npy_payload(graph.embeddings_path), qb = npy_payload(io.embeddings_path);
  ASSERT_EQ(qa.size(), qb.size());
  int64_t within_one = 0;
  for (size_t i = 0; i < qa.size(); ++i) {
    within_one += std::abs(static_cast<int8_t>(qa[i]) - static_cast<int8_t>(qb[i])) <= 1;
  }
  EXPECT_GE(static_cast<double>(within_one), 0.995 * static_cast<double>(qa.size()));
}

TEST(MixedDevices, UnavailableGpuIsOneLineAndWritesNothing) {
  if (fs::exists("/dev/nvidia0")) GTEST_SKIP() << "a GPU is present";
  const std::string out = kDir + "/out_cuda";
  fs::remove_all(out);
  for (const std::string device : {"cuda:0", "cpu,cuda:0+graph"}) {
    const std::string message = error_of([&] { infer(device, out, 1, 8192); });
    const std::string gpu = device.substr(device.find("cuda"));
    EXPECT_EQ(message.rfind(gpu + ": the CUDA execution provider is not available (", 0), 0u)
        << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    EXPECT_FALSE(fs::exists(out)) << device;
  }
  EXPECT_EQ(error_of([&] { infer("cpu+stream", out, 1, 0); }),
            "GPU batch must be 1 to 4194304 (got 0)");
}

// ---- engines kept between the tiles of a run ----

TEST(TileRunner, KeepsEnginesBetweenTilesAndWritesTheSameBytes) {
  for (const std::string device : {"cpu", "cpu,cpu+stream"}) {
    // Each tile on its own, as reference: every engine is built for it.
    const TileSummary small_alone = infer(device, kDir + "/alone_small", 1, 24);
    const TileSummary large_alone =
        run_tile(large_tile_dir(), infer_options(device, kDir + "/alone_large", 1, 24),
                 one_worker_plan(), nullptr);
    const int engines = device == "cpu" ? 1 : 2;
    EXPECT_EQ(small_alone.engines_built, engines) << device;
    EXPECT_EQ(large_alone.engines_built, engines) << device;

    TileRunner runner(infer_options(device, kDir + "/kept", 1, 24), one_worker_plan());
    const TileSummary small = runner.run(tile_dir(), nullptr);
    const TileSummary large = runner.run(large_tile_dir(), nullptr);
    const TileSummary again = runner.run(tile_dir(), nullptr);
    EXPECT_EQ(small.engines_built, engines) << device;
    EXPECT_EQ(large.engines_built, 0) << device;
    EXPECT_EQ(again.engines_built, 0) << device;
    expect_same_outputs(small, small_alone, device + " first tile");
    expect_same_outputs(large, large_alone, device + " second tile");
    expect_same_outputs(again, small_alone, device + " third tile");
    if (device == "cpu") {
      // One worker, same batches, same session options: the very same bytes.
      EXPECT_EQ(npy_payload(large.embeddings_path), npy_payload(large_alone.embeddings_path));
      EXPECT_EQ(npy_payload(large.scales_path), npy_payload(large_alone.scales_path));
    }
  }
}

TEST(TileRunner, BuildsALargerStreamingEngineWhenATileNeedsOne) {
  // Without a chunk limit the streaming engine is sized to the tile, rounded up to a power of
  // two: the larger second tile needs a new one, the third (the small one again) fits in it.
  TileRunner runner(infer_options("cpu+stream", kDir + "/grow", 1, 100000), one_worker_plan());
  const TileSummary small = runner.run(tile_dir(), nullptr);
  const TileSummary large = runner.run(large_tile_dir(), nullptr);
  const TileSummary again = runner.run(tile_dir(), nullptr);
  EXPECT_EQ(small.engines_built, 1);
  EXPECT_EQ(large.engines_built, 1);
  EXPECT_EQ(again.engines_built, 0);
  EXPECT_EQ(small.gpu_batch, 256);  // 13 x 11 tile: 129..143 valid pixels
  EXPECT_EQ(large.gpu_batch, 512);  // 21 x 17 tile: more than 256
  EXPECT_EQ(again.gpu_batch, 512);
}

TEST(TileRunner, ATileThatCannotBeReadKeepsTheEngines) {
  TileRunner runner(infer_options("cpu", kDir + "/bad_between", 1, 24), one_worker_plan());
  EXPECT_EQ(runner.run(tile_dir(), nullptr).engines_built, 1);
  const std::string missing = kDir + "/grid_9.95_9.95";
  EXPECT_NE(error_of([&] { runner.run(missing, nullptr); }).find(missing), std::string::npos);
  EXPECT_EQ(runner.run(large_tile_dir(), nullptr).engines_built, 0);
}

TEST(TileRunner, ATileWithNothingToComputeBuildsNoEngine) {
  const std::string empty = write_tile("grid_0.75_1.15", 5, 4, 9, 1.0);  // no valid pixel
  TileRunner runner(infer_options("cpu,cpu+stream", kDir + "/empty", 1, 24), one_worker_plan());
  const TileSummary none = runner.run(empty, nullptr);
  EXPECT_EQ(none.status, TileStatus::kDone);
  EXPECT_EQ(none.pixels_valid, 0);
  EXPECT_EQ(none.engines_built, 0);
  EXPECT_EQ(npy_payload(none.scales_path), std::string(5 * 4 * sizeof(float), '\0'));
  EXPECT_EQ(runner.run(tile_dir(), nullptr).engines_built, 2);
}

// An engine is checked, once built, to come from the bytes the run identified: a model made
// again with the same bytes while it was read is accepted, one rewritten with other weights fails
// the tile before any batch is computed with it.
TEST(TileRunner, AnEngineBuiltFromAChangedModelFileIsRefused) {
  ModelConfig config = testing::tiny_model_config();
  InferOptions options = infer_options("cpu", kDir + "/changed_model", 1, 24);
  options.model_path = testing::write_test_model(kDir, "changing.onnx", config);
  const auto rewrite_while_building = [&](uint64_t seed) {
    return [&config, seed](const std::string& path, const EngineSpec& spec) {
      ModelConfig made = config;
      made.seed = seed;
      testing::write_test_model(kDir, "changing.onnx", made);  // a new file, renamed over
      return make_engine(path, spec);
    };
  };
  TileRunner same(options, one_worker_plan(), rewrite_while_building(config.seed));
  EXPECT_EQ(same.run(tile_dir(), nullptr).status, TileStatus::kDone);
  TileRunner other(options, one_worker_plan(), rewrite_while_building(config.seed + 1));
  EXPECT_EQ(error_of([&] { other.run(tile_dir(), nullptr); }),
            options.model_path +
                ": the model file changed while this run was using it; run again with the model "
                "as it is now");
}

TEST(TileRunner, AWorkerThatFailsDropsEveryEngine) {
  // A model that fails on batches that are not a multiple of 4: with batches of 4 pixels, a
  // tile of 143 valid pixels fails on its last batch, one of 132 runs through.
  InferOptions options = infer_options("cpu", kDir + "/fails", 1, 24);
  options.model_path = testing::write_batch_multiple_model(kDir, "multiple_of_4.onnx", 4);
  options.batch = 4;
  const std::string odd = write_tile("grid_0.85_1.15", 13, 11, 10, 0.0);
  const std::string even = write_tile("grid_0.95_1.15", 12, 11, 11, 0.0);
  TileRunner runner(options, one_worker_plan());
  EXPECT_EQ(runner.run(even, nullptr).engines_built, 1);
  EXPECT_EQ(runner.run(even, nullptr).engines_built, 0);
  const std::string message = error_of([&] { runner.run(odd, nullptr); });
  EXPECT_NE(message.find("Reshape"), std::string::npos) << message;
  EXPECT_EQ(runner.run(even, nullptr).engines_built, 1);  // built anew after the failure
}

TEST(TileRunner, ChecksItsOptionsBeforeAnyTile) {
  InferOptions options = infer_options("cpu", kDir + "/never", 1, 24);
  options.batch = 0;
  EXPECT_EQ(error_of([&] { TileRunner(options, one_worker_plan()); }),
            "batch size must be at least 1 (got 0)");
  options = infer_options("cpu,gpu", kDir + "/never", 1, 24);
  EXPECT_NE(error_of([&] { TileRunner(options, one_worker_plan()); }).find("gpu"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(kDir + "/never"));
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

// The runtime takes its engines from a factory, never from a backend it names: a whole tile
// through the native engine (through the CPU workers and the streaming worker's pipeline),
// every engine built by the factory with the worker's spec, the outputs within one step of
// ONNX Runtime's, and the summary naming what computed them.
TEST(EngineSeam, AWholeTileRunsOnTheNativeEngine) {
  const TileSummary ort = infer("cpu", kDir + "/seam_ort", 1, 24);
  for (const std::string device : {"cpu", "cpu,cpu+stream"}) {
    InferOptions options = infer_options(device, kDir + "/seam_native", 1, 24);
    options.engine = kNativeBackend;
    std::vector<EngineSpec> built;
    std::mutex mutex;
    const EngineFactory factory = [&](const std::string& model, const EngineSpec& spec) {
      std::lock_guard lock(mutex);
      built.push_back(spec);
      return make_engine(model, spec);
    };
    TileRunner runner(options, one_worker_plan(), factory);
    const TileSummary native = runner.run(tile_dir(), nullptr);
    EXPECT_EQ(native.engine, "native") << device;
    EXPECT_EQ(native.precision, "fp32") << device;
    ASSERT_EQ(built.size(), device == "cpu" ? 1u : 2u) << device;
    for (const EngineSpec& spec : built) {
      EXPECT_EQ(spec.backend, "native");
      EXPECT_TRUE(spec.device.on_cpu());
      EXPECT_EQ(spec.precision, Precision::fp32);
    }
    // The CPU worker's engine knows the worker's CPUs (a streaming worker's binds its thread).
    EXPECT_TRUE(std::any_of(built.begin(), built.end(), [](const EngineSpec& spec) {
      return !spec.cpus.empty();
    })) << device;
    expect_same_outputs(native, ort, "native " + device);
  }
}

TEST(EngineSeam, ASpecIsCheckedBeforeAnyTile) {
  InferOptions options = infer_options("cpu", kDir + "/seam_bad", 1, 24);
  options.engine = "native";
  options.device = "cpu,cuda:0";
  EXPECT_EQ(error_of([&] { TileRunner(options, one_worker_plan()); }),
            "cuda:0: the native engine runs on the cpu only");
  options.device = "cpu";
  options.precision = Precision::fp16;
  EXPECT_EQ(error_of([&] { TileRunner(options, one_worker_plan()); }),
            "cpu: the native engine computes fp32, bf16, int8 on cpu, not fp16");
  options.engine = "ort";
  options.precision = Precision::bf16;
  EXPECT_EQ(error_of([&] { TileRunner(options, one_worker_plan()); }),
            "cpu: the ort engine computes fp32 on cpu, not bf16 (--engine native does)");
}

}  // namespace
}  // namespace tessera
