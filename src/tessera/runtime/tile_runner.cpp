#include "tessera/runtime/tile_runner.h"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <latch>
#include <mutex>
#include <optional>
#include <thread>

#include "tessera/common/clock.h"
#include "tessera/common/error.h"
#include "tessera/common/power_of_two.h"
#include "tessera/io/npy.h"
#include "tessera/io/tile.h"
#include "tessera/model/ort_cuda.h"
#include "tessera/model/ort_engine.h"
#include "tessera/pipeline/preparer.h"
#include "tessera/pipeline/quantiser.h"
#include "tessera/runtime/device_batches.h"
#include "tessera/runtime/device_list.h"
#include "tessera/runtime/journal.h"
#include "tessera/runtime/worker_pool.h"
#include "tessera/topology/binding.h"
#include "tessera/topology/topology.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

// Writes back the pages of [begin, end) of a MAP_SHARED mapping and waits for the disk.
void sync_range(void* begin, void* end) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = reinterpret_cast<uintptr_t>(begin) & ~(page - 1);
  const uintptr_t last = reinterpret_cast<uintptr_t>(end);
  if (last > first) ::msync(reinterpret_cast<void*>(first), last - first, MS_SYNC);
}

// Identifies the computation a journal belongs to: resuming with any of these changed would
// mix two different results in one file.
std::string journal_key(const Tile& tile, const InferOptions& options, const DeviceList& devices,
                        int64_t latent, int64_t valid) {
  std::error_code ec;
  const auto model_bytes = fs::file_size(options.model_path, ec);
  const auto model_time = fs::last_write_time(options.model_path, ec).time_since_epoch().count();
  return fmt::format(
      "tessera-journal v1 grid={} hw={}x{} valid={} latent={} batch={} repeat={} device={}{} "
      "model_bytes={} model_time={}",
      tile.grid, tile.height, tile.width, valid, latent, options.batch, options.repeat,
      // Only CUDA devices compute differently at another precision.
      options.device, devices.any_cuda() ? " precision=" + options.precision : std::string(),
      model_bytes, model_time);
}

// Periodically reports progress from a monitor thread until stopped.
// The process's anonymous resident memory in bytes (RssAnon), or 0 if unknown.
int64_t rss_anon_bytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("RssAnon:", 0) == 0) return 1024 * std::atoll(line.c_str() + 8);
  }
  return 0;
}

// Reports progress and samples memory from a monitor thread every 0.5 s until stopped.
class ProgressMonitor {
 public:
  ProgressMonitor(const ProgressCallback& callback, const std::atomic<int64_t>& done, int64_t total)
      : callback_(callback), done_(done), total_(total), start_(Clock::now()) {
    peak_rss_anon_ = rss_anon_bytes();
    thread_ = std::thread([this] { loop(); });
  }
  // Valid after stop().
  int64_t peak_rss_anon() const { return peak_rss_anon_; }
  ~ProgressMonitor() { stop(); }
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void loop() {
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stopping_; })) {
      peak_rss_anon_ = std::max(peak_rss_anon_, rss_anon_bytes());
      if (callback_) {
        callback_(done_.load(), total_, seconds_since(start_));
      }
    }
    peak_rss_anon_ = std::max(peak_rss_anon_, rss_anon_bytes());
  }
  const ProgressCallback& callback_;
  const std::atomic<int64_t>& done_;
  int64_t total_;
  Clock::time_point start_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  int64_t peak_rss_anon_ = 0;
  std::thread thread_;
};

// Makes finished batches durable off the workers' critical path: one thread writes each
// batch's output rows back to disk (msync) and only then appends the batch to the journal,
// so the invariant "journaled => on disk" holds while workers go on computing.
class BatchCommitter {
 public:
  BatchCommitter(BatchJournal& journal, std::atomic<int64_t>& pixels_done)
      : journal_(journal), pixels_done_(pixels_done), thread_([this] { loop(); }) {}
  ~BatchCommitter() { stop(); }

  // Queues batch b (n pixels) whose rows lie in [rows_begin, rows_end) and whose scales lie
  // in [scales_begin, scales_end) of the mapped outputs.
  void commit(int64_t b, int64_t n, void* rows_begin, void* rows_end, void* scales_begin,
              void* scales_end) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back({b, n, rows_begin, rows_end, scales_begin, scales_end});
    }
    wake_.notify_one();
  }
  // Drains the queue, stops the thread and rethrows its error, if any.
  void finish() {
    stop();
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  void stop() noexcept {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable()) thread_.join();
  }
  struct Item {
    int64_t batch, pixels;
    void *rows_begin, *rows_end, *scales_begin, *scales_end;
  };
  void loop() {
    for (;;) {
      Item item;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        item = queue_.front();
        queue_.pop_front();
      }
      if (error_) continue;  // keep draining; the run fails as a whole
      try {
        sync_range(item.rows_begin, item.rows_end);
        sync_range(item.scales_begin, item.scales_end);
        journal_.mark_done(item.batch);
        pixels_done_ += item.pixels;
      } catch (...) {
        error_ = std::current_exception();
      }
    }
  }
  BatchJournal& journal_;
  std::atomic<int64_t>& pixels_done_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Item> queue_;
  bool stopping_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

// How fast the streaming (GPU) workers of a tile go together, so that a CPU worker can leave
// the tile's last batches to them instead of starting one that they would finish sooner.
class StreamPace {
 public:
  // A streaming worker is about to start its first run.
  void started() {
    int64_t none = 0;
    start_ns_.compare_exchange_strong(none, now_ns());
  }
  void ran(int64_t pixels) { pixels_ += pixels; }
  // Pixels per second since the first streaming run began; 0 before any run has finished.
  double pixels_per_second() const {
    const int64_t start = start_ns_.load(), pixels = pixels_.load();
    if (start == 0 || pixels == 0) return 0;
    return static_cast<double>(pixels) * 1e9 /
           static_cast<double>(std::max<int64_t>(1, now_ns() - start));
  }

 private:
  static int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
        .count();
  }
  std::atomic<int64_t> start_ns_{0}, pixels_{0};
};

// What every worker of one tile shares. Batch b holds valid pixels [b*B, min((b+1)*B, n)).
struct TileJob {
  const Tile& tile;
  const InferOptions& options;
  const std::vector<int64_t>& valid;
  const ModelShape& shape;
  BatchJournal& journal;
  BatchCommitter& committer;
  int8_t* embedding_rows;
  float* scale_values;
  BatchCounter& counter;
  std::atomic<int64_t>& pixels_done;
  std::atomic<bool>& abort;  // set when any worker failed: the others stop claiming
  StreamPace& pace;
  BatchFinishes& finishes;

  int64_t latent() const { return shape.output_dim; }

  // True when the streaming workers alone would finish every unclaimed batch in less time
  // than a CPU worker needs for one (`cpu_batch_seconds`, its last): that worker stops, so
  // the tile does not end waiting for it. Always false without streaming workers.
  bool streams_finish_first(double cpu_batch_seconds) const {
    return leave_to_streams(pace.pixels_per_second(), counter.unclaimed() * options.batch,
                            cpu_batch_seconds);
  }
  const int64_t* pixels(int64_t b) const { return valid.data() + b * options.batch; }
  int64_t count(int64_t b) const {
    return std::min(options.batch, static_cast<int64_t>(valid.size()) - b * options.batch);
  }

  // Unless another worker finished batch b first (then false, nothing written): quantises its
  // float outputs (count(b) x latent, in pixel order) into the mapped outputs and hands the
  // batch to the committer (write-back, then journal).
  bool finish(int64_t b, const float* result) const {
    if (!finishes.finish(b)) return false;
    const int64_t n = count(b);
    const int64_t* p = pixels(b);
    const int64_t d = latent();
    for (int64_t k = 0; k < n; ++k) {
      quantize_embedding(result + k * d, static_cast<int>(d), embedding_rows + p[k] * d,
                         scale_values + p[k]);
    }
    committer.commit(b, n, embedding_rows + p[0] * d, embedding_rows + (p[n - 1] + 1) * d,
                     scale_values + p[0], scale_values + p[n - 1] + 1);
    return true;
  }
};

// What one streaming worker measured.
struct StreamStats {
  bool gpu = false;  // its engine was an OrtCudaEngine (busy time is known)
  double busy_seconds = 0, wall_seconds = 0;
  int64_t pixels_per_run = 0;
  int64_t pixels = 0;              // valid pixels it computed (each once, whatever --repeat)
  int64_t batches_taken_over = 0;  // of those, batches a CPU worker was still running
};

// One chunk of consecutive batches on its way through a streaming worker: prepared by a
// helper thread, run by the engine thread, then quantised by the same helper.
struct Slot {
  std::vector<int64_t> pixels;   // the chunk's not-yet-done pixels, batch after batch
  std::vector<int64_t> batches;  // their batch numbers
  float *s2 = nullptr, *s1 = nullptr, *out = nullptr;  // StreamEngine::buffers
  std::vector<float> mean;
  int64_t count = 0;
  bool done = false;  // the engine has filled `out` for the submitted pass
};

// A streaming worker's engine, kept between tiles with what out-of-memory taught it.
struct StreamEngine {
  std::unique_ptr<Engine> engine;
  int64_t chunk = 0;     // batches claimed at once (0: not yet set); halved while building OOMs
  int64_t capacity = 0;  // the engine's max_batch
  int64_t limit = 0;     // pixels per run; halved while running OOMs (run_in_sub_batches)
  // Inputs and outputs of the worker's two slots, from the engine's allocate_host (pinned on a
  // GPU, so the engine copies straight from and into them), for buffer_capacity pixels; kept
  // with the engine, reallocated only when a larger engine needs more.
  struct Buffers {
    HostBuffer s2, s1, out;
  } buffers[2];
  int64_t buffer_capacity = 0;
};

// A streaming worker: builds its engine unless `kept` holds one large enough (halving the chunk
// while that runs out of memory), then two helper threads each claim chunks, prepare them into
// their own Slot, hand each pass to this thread and wait, while this thread runs whatever slot
// is ready. So the next chunk is prepared while the engine runs, and finished chunks are
// quantised while it runs. The helpers bind themselves to `helper_cpus` when given (else they
// share the engine thread's binding). `engine_ready` is called once the engine exists (not when
// building it fails); `engines_built` counts a build.
StreamStats run_stream_worker(const TileJob& job, const std::string& device, StreamEngine& kept,
                              const WorkerPlan* helper_cpus, MemoryPolicy policy,
                              const std::function<void()>& engine_ready,
                              std::atomic<int>& engines_built) {
  const InferOptions& options = job.options;
  const int64_t valid = static_cast<int64_t>(job.valid.size());
  if (kept.chunk == 0) kept.chunk = std::max<int64_t>(1, options.gpu_batch / options.batch);
  int64_t& chunk = kept.chunk;
  // A CUDA-graph engine computes its whole capacity at every run: running out of memory there
  // needs a smaller engine, not smaller runs.
  const bool whole_capacity = cuda_path(stream_engine_device(device)) == CudaPath::kCudaGraph;
  // GPU time of engines this call replaced for memory (busy_seconds counts per engine).
  double busy_of_replaced = 0;
  bool shrunk = false;
  const auto build = [&](int64_t max_batch) {
    kept.engine.reset();  // free the old one's memory first
    OrtEngineOptions engine_options;
    engine_options.device = stream_engine_device(device);
    engine_options.intra_op_threads = 1;
    engine_options.spinning = false;
    engine_options.precision = options.precision;
    engine_options.max_batch = max_batch;
    kept.engine = make_engine(options.model_path, engine_options);
    ++engines_built;
    kept.capacity = max_batch;
    kept.limit = max_batch;
  };
  if (!kept.engine || kept.capacity < std::min(chunk * options.batch, valid)) {
    for (;;) {
      try {
        // Sized for this tile rounded up to a power of two (never above the chunk), so that
        // tiles of varying sizes below the chunk rebuild it rarely.
        build(std::min(chunk * options.batch, power_of_two_at_least(valid)));
        break;
      } catch (const Error& e) {
        if (chunk == 1 || !is_out_of_memory_message(e.what())) throw;
        chunk /= 2;
      }
    }
  }
  const auto gpu_busy_seconds = [&] {
    const auto* cuda = dynamic_cast<const OrtCudaEngine*>(kept.engine.get());
    return cuda ? cuda->busy_seconds() : 0.0;
  };
  const bool gpu = dynamic_cast<const OrtCudaEngine*>(kept.engine.get()) != nullptr;
  const double busy_before = gpu_busy_seconds();
  engine_ready();
  const int64_t capacity = kept.capacity;  // the slots' size, even if the engine shrinks
  int64_t& limit = kept.limit;
  const auto start = Clock::now();

  std::mutex mutex;
  std::condition_variable wake;
  std::deque<Slot*> ready;
  int helpers_left = 2;
  int64_t pixels = 0, taken_over = 0;  // guarded by mutex
  std::exception_ptr error;
  auto fail = [&](std::exception_ptr e) {
    {
      std::lock_guard lock(mutex);
      if (!error) error = e;
    }
    job.abort = true;
    wake.notify_all();
  };
  // Allocated here, before the helpers start: the engine thread may replace the engine later.
  if (kept.buffer_capacity < capacity) {
    for (auto& b : kept.buffers) b = {};  // free the smaller ones first
    for (auto& b : kept.buffers) {
      b.s2 = kept.engine->allocate_host(capacity * job.shape.s2_pixel_floats());
      b.s1 = kept.engine->allocate_host(capacity * job.shape.s1_pixel_floats());
      b.out = kept.engine->allocate_host(capacity * job.latent());
    }
    kept.buffer_capacity = capacity;
  }
  Slot slots[2];
  for (int i = 0; i < 2; ++i) {
    slots[i].s2 = kept.buffers[i].s2.get();
    slots[i].s1 = kept.buffers[i].s1.get();
    slots[i].out = kept.buffers[i].out.get();
    if (options.repeat > 1) slots[i].mean.resize(capacity * job.latent());
  }
  auto helper = [&](Slot& slot) {
    try {
      if (helper_cpus) bind_current_thread(*helper_cpus, policy);
      PixelPreparer preparer(job.tile, static_cast<int>(job.shape.s2_steps),
                             static_cast<int>(job.shape.s1_steps));
      while (!job.abort) {
        const BatchCounter::Range range = job.counter.claim(chunk);
        slot.batches.clear();
        const bool taking_over = range.empty();
        if (taking_over) {
          // Nothing left to claim: the batches CPU workers are still running, if any.
          slot.batches = job.finishes.take_over(chunk);
          if (slot.batches.empty()) break;
        }
        for (int64_t b = range.first; b < range.end; ++b) {
          if (!job.journal.done(b)) slot.batches.push_back(b);
        }
        slot.pixels.clear();
        for (const int64_t b : slot.batches) {
          slot.pixels.insert(slot.pixels.end(), job.pixels(b), job.pixels(b) + job.count(b));
        }
        slot.count = static_cast<int64_t>(slot.pixels.size());
        if (slot.count == 0) continue;
        const int64_t floats = slot.count * job.latent();
        if (options.repeat > 1) std::fill(slot.mean.begin(), slot.mean.begin() + floats, 0.0f);
        for (int r = 0; r < options.repeat; ++r) {
          preparer.prepare_batch(slot.pixels.data(), slot.count, r, slot.s2, slot.s1);
          std::unique_lock lock(mutex);
          slot.done = false;
          ready.push_back(&slot);
          wake.notify_all();
          wake.wait(lock, [&] { return slot.done || error; });
          if (error) return;
          lock.unlock();
          if (options.repeat > 1) accumulate(slot.out, floats, slot.mean.data());
        }
        const float* result = slot.out;
        if (options.repeat > 1) {
          divide_by(floats, options.repeat, slot.mean.data());
          result = slot.mean.data();
        }
        int64_t offset = 0, written = 0, won = 0;
        for (const int64_t b : slot.batches) {
          if (job.finish(b, result + offset * job.latent())) {
            written += job.count(b);
            ++won;
          }
          offset += job.count(b);
        }
        std::lock_guard lock(mutex);
        pixels += written;
        if (taking_over) taken_over += won;
      }
    } catch (...) {
      fail(std::current_exception());
    }
    std::lock_guard lock(mutex);
    --helpers_left;
    wake.notify_all();
  };
  std::thread helpers[2] = {std::thread(helper, std::ref(slots[0])),
                            std::thread(helper, std::ref(slots[1]))};
  for (;;) {
    Slot* slot = nullptr;
    {
      std::unique_lock lock(mutex);
      wake.wait(lock, [&] { return error || !ready.empty() || helpers_left == 0; });
      if (error || ready.empty()) break;
      slot = ready.front();
      ready.pop_front();
    }
    job.pace.started();
    const auto say_reduced = [&](int64_t reduced) {
      fmt::print(stderr, "tessera: {}: out of memory, continuing with {} pixels per run\n", device,
                 reduced);
    };
    try {
      for (;;) {
        try {
          run_in_sub_batches(*kept.engine, slot->s2, slot->s1, slot->count, slot->out,
                             whole_capacity ? nullptr : &limit, say_reduced);
          break;
        } catch (const Error& e) {
          if (!whole_capacity || kept.capacity == 1 || !is_out_of_memory_message(e.what())) throw;
          busy_of_replaced += gpu_busy_seconds();
          shrunk = true;
          for (int64_t next = kept.capacity / 2;; next /= 2) {
            try {
              build(next);
              break;
            } catch (const Error& again) {
              if (next == 1 || !is_out_of_memory_message(again.what())) throw;
            }
          }
          say_reduced(kept.capacity);
        }
      }
    } catch (...) {
      fail(std::current_exception());
      break;
    }
    job.pace.ran(slot->count);
    std::lock_guard lock(mutex);
    slot->done = true;
    wake.notify_all();
  }
  for (auto& t : helpers) t.join();
  // An engine shrunk for memory (graph path) takes smaller chunks from the next tile on, so
  // that the next tile does not build the larger one again.
  if (shrunk) chunk = std::max<int64_t>(1, std::min(chunk, kept.capacity / options.batch));
  if (error) std::rethrow_exception(error);
  StreamStats stats;
  stats.wall_seconds = seconds_since(start);
  stats.pixels_per_run = whole_capacity ? kept.capacity : limit;
  stats.pixels = pixels;
  stats.batches_taken_over = taken_over;
  if (gpu) {
    stats.gpu = true;
    stats.busy_seconds = busy_of_replaced + gpu_busy_seconds() - busy_before;
  }
  return stats;
}

}  // namespace

struct TileRunner::Kept {
  DeviceList devices;
  Plan cpu_plan;  // the plan without the PUs of the streaming workers; index = position
  // Without "cpu": none. Else 2 PUs per streaming worker (stream i: engine thread on
  // [2i], helpers on [2i+1]) or, on small machines, 1 (stream i: all on [i]).
  std::vector<WorkerPlan> stream_cpus;
  std::optional<ModelShape> shape;  // read from the model on the first tile computed
  std::vector<std::unique_ptr<OrtEngine>> cpu_engines;  // by WorkerPlan::index
  std::vector<StreamEngine> stream_engines;             // by streaming device

  void drop_engines() {
    for (auto& engine : cpu_engines) engine.reset();
    for (auto& stream : stream_engines) stream = StreamEngine{};
  }
};

TileRunner::TileRunner(const InferOptions& options, const Plan& plan)
    : options_(options), plan_(plan), kept_(std::make_unique<Kept>()) {
  if (options.batch < 1)
    throw UsageError(fmt::format("batch size must be at least 1 (got {})", options.batch));
  if (options.repeat < 1)
    throw UsageError(fmt::format("--repeat must be at least 1 (got {})", options.repeat));
  check_precision(options.precision);
  kept_->devices = parse_device_list(options.device);
  for (const auto& device : kept_->devices.streams) require_cuda(stream_engine_device(device));
  if (options.gpu_batch < 1) {
    throw UsageError(fmt::format("GPU batch must be at least 1 (got {})", options.gpu_batch));
  }
  // Next to CPU workers, each streaming worker gets two PUs of its own, one for its engine
  // thread and one for its two helpers (or, on a machine too small for that, one for all
  // three): a GPU waits whenever the thread that launches its kernels waits for a core.
  kept_->cpu_plan = plan;
  const int streams = static_cast<int>(kept_->devices.streams.size());
  if (kept_->devices.cpu && streams > 0) {
    const MachineInfo machine = Topology::this_machine().info();
    kept_->stream_cpus = reserve_feeder_cpus(machine, kept_->cpu_plan, 2 * streams);
    if (kept_->stream_cpus.empty())
      kept_->stream_cpus = reserve_feeder_cpus(machine, kept_->cpu_plan, streams);
  }
  // A CPU worker's engine slot is its index, made its position here.
  for (size_t i = 0; i < kept_->cpu_plan.workers.size(); ++i)
    kept_->cpu_plan.workers[i].index = static_cast<int>(i);
  kept_->cpu_engines.resize(kept_->cpu_plan.workers.size());
  kept_->stream_engines.resize(kept_->devices.streams.size());
}

TileRunner::~TileRunner() = default;

TileSummary run_tile(const std::string& tile_dir, const InferOptions& options, const Plan& plan,
                     const ProgressCallback& progress) {
  return TileRunner(options, plan).run(tile_dir, progress);
}

TileSummary TileRunner::run(const std::string& tile_dir, const ProgressCallback& progress) {
  const InferOptions& options = options_;
  const DeviceList& devices = kept_->devices;
  const auto start = Clock::now();
  const Tile tile = open_tile(tile_dir);
  TileSummary summary;
  summary.tile = tile_dir;
  summary.grid = tile.grid;
  summary.pixels_total = tile.pixels();
  summary.embeddings_path = (fs::path(options.out_dir) / (tile.grid + ".npy")).string();
  summary.scales_path = (fs::path(options.out_dir) / (tile.grid + "_scales.npy")).string();
  const std::string journal_path = (fs::path(options.out_dir) / (tile.grid + ".journal")).string();
  std::error_code ec;
  if (!options.force && fs::exists(summary.embeddings_path, ec) &&
      fs::exists(summary.scales_path, ec)) {
    // A run stopped between committing the outputs and removing the journal leaves the journal
    // behind; the outputs are complete, so it is stale.
    fs::remove(journal_path, ec);
    summary.status = "skipped";
    return summary;
  }
  fs::create_directories(options.out_dir, ec);
  if (ec) throw Error(options.out_dir + ": cannot create output directory: " + ec.message());

  const std::vector<int64_t> valid = valid_pixels(tile);
  summary.pixels_valid = static_cast<int64_t>(valid.size());
  summary.batches = (summary.pixels_valid + options.batch - 1) / options.batch;

  // The outputs (sized by the model's output width) exist before the workers start, so ask
  // ONNX Runtime for the model's shape once, without graph optimisation (fast to load).
  if (!kept_->shape) kept_->shape = probe_model_shape(options.model_path);
  const ModelShape& shape = *kept_->shape;
  if (shape.s2_features != kS2Bands + 1 || shape.s1_features != kS1Bands + 1) {
    throw Error(fmt::format("{}: model takes {} + {} features per step, tiles give {} + {}",
                            options.model_path, shape.s2_features, shape.s1_features, kS2Bands + 1,
                            kS1Bands + 1));
  }
  const int64_t latent = shape.output_dim;

  const std::string key = journal_key(tile, options, devices, latent, summary.pixels_valid);
  if (!options.resume) fs::remove(journal_path, ec);
  std::optional<BatchJournal> journal;
  journal.emplace(journal_path, key, summary.batches);
  // Partial outputs are continued only together with a journal that matches them; if either
  // output is missing or different, everything starts over.
  const std::vector<int64_t> embedding_shape = {tile.height, tile.width, latent};
  const std::vector<int64_t> scale_shape = {tile.height, tile.width};
  std::optional<NpyWriter> embeddings, scales;
  embeddings.emplace(summary.embeddings_path, DType::kInt8, embedding_shape, journal->resumed());
  scales.emplace(summary.scales_path, DType::kFloat32, scale_shape, journal->resumed());
  if (journal->resumed() && !(embeddings->resumed() && scales->resumed())) {
    embeddings.reset();
    scales.reset();
    journal.reset();
    fs::remove(journal_path, ec);
    journal.emplace(journal_path, key, summary.batches);
    embeddings.emplace(summary.embeddings_path, DType::kInt8, embedding_shape, false);
    scales.emplace(summary.scales_path, DType::kFloat32, scale_shape, false);
  }
  summary.batches_resumed = journal->done_count();

  auto* embedding_rows = static_cast<int8_t*>(embeddings->data());
  auto* scale_values = static_cast<float*>(scales->data());
  std::atomic<int64_t> pixels_done{0};
  for (int64_t b = 0; b < summary.batches; ++b) {
    if (journal->done(b))
      pixels_done += std::min(options.batch, summary.pixels_valid - b * options.batch);
  }
  const int64_t pixels_resumed = pixels_done.load();
  ProgressMonitor monitor(progress, pixels_done, summary.pixels_valid);

  BatchCounter counter(summary.batches);
  std::atomic<bool> abort{false};
  BatchCommitter committer(*journal, pixels_done);
  StreamPace pace;
  BatchFinishes finishes(summary.batches, kept_->cpu_engines.size());
  const TileJob job{tile,         options, valid,       shape, *journal, committer, embedding_rows,
                    scale_values, counter, pixels_done, abort, pace,     finishes};
  // No workers (and no engine builds) when every batch is done already, or there is none.
  const bool work_left = journal->done_count() < summary.batches;
  const size_t streams = work_left ? devices.streams.size() : 0;
  const std::vector<WorkerPlan>& stream_cpus = kept_->stream_cpus;
  std::atomic<int> engines_built{0};
  std::vector<StreamStats> stream_stats(streams);
  std::vector<std::exception_ptr> errors(streams + 1);
  std::vector<std::thread> stream_threads;
  // CPU workers build their sessions only once every GPU engine is built (or has failed): a
  // GPU is ~100x a CPU worker, and its session build must not queue behind theirs for cores.
  std::latch stream_engines_ready(static_cast<std::ptrdiff_t>(streams));
  for (size_t i = 0; i < streams; ++i) {
    stream_threads.emplace_back([&, i] {
      bool counted = false;
      const auto ready = [&] {
        if (!counted) stream_engines_ready.count_down();
        counted = true;
      };
      try {
        // Threads inherit this binding: the engine's and, unless rebound, the helpers.
        const WorkerPlan* helper_cpus = nullptr;
        if (stream_cpus.size() >= 2 * streams) {
          bind_current_thread(stream_cpus[2 * i], plan_.policy);
          helper_cpus = &stream_cpus[2 * i + 1];
        } else if (i < stream_cpus.size()) {
          bind_current_thread(stream_cpus[i], plan_.policy);
        }
        stream_stats[i] = run_stream_worker(job, devices.streams[i], kept_->stream_engines[i],
                                            helper_cpus, plan_.policy, ready, engines_built);
      } catch (...) {
        errors[i + 1] = std::current_exception();
        abort = true;
      }
      ready();
    });
  }
  if (devices.cpu && work_left) {
    stream_engines_ready.wait();
    try {
      run_pinned_workers(kept_->cpu_plan, [&](const WorkerPlan& worker) {
        // Built by this worker's thread, after binding: its memory is on the worker's nodes,
        // and every later tile's thread is bound the same way.
        std::unique_ptr<OrtEngine>& kept_engine = kept_->cpu_engines.at(worker.index);
        if (!kept_engine) {
          OrtEngineOptions engine_options;
          engine_options.device = "cpu";
          engine_options.intra_op_threads = worker.threads;
          engine_options.spinning = options.spinning;
          engine_options.max_batch = options.batch;
          engine_options.thread_affinities = ort_thread_affinities(worker);
          kept_engine = std::make_unique<OrtEngine>(options.model_path, engine_options);
          ++engines_built;
        }
        OrtEngine& engine = *kept_engine;
        PixelPreparer preparer(tile, static_cast<int>(shape.s2_steps),
                               static_cast<int>(shape.s1_steps));
        std::vector<float> mean(options.repeat > 1 ? options.batch * latent : 0);
        double batch_seconds = 0;  // this worker's last batch
        while (!abort && !job.streams_finish_first(batch_seconds)) {
          const auto batch_start = Clock::now();
          const int64_t b = counter.claim(1).first;
          if (b >= summary.batches) break;
          if (journal->done(b)) continue;
          if (!finishes.start(worker.index, b, engine)) continue;
          const int64_t count = job.count(b);
          const float* result = engine.output();
          if (options.repeat > 1) std::fill(mean.begin(), mean.begin() + count * latent, 0.0f);
          try {
            for (int r = 0; r < options.repeat; ++r) {
              preparer.prepare_batch(job.pixels(b), count, r, engine.s2_input(), engine.s1_input());
              engine.run(count);
              if (options.repeat > 1) accumulate(engine.output(), count * latent, mean.data());
            }
          } catch (const Error&) {
            finishes.stop(worker.index);
            if (finishes.finished(b)) continue;  // interrupted: a streaming worker finished b
            throw;
          }
          finishes.stop(worker.index);
          if (options.repeat > 1) {
            divide_by(count * latent, options.repeat, mean.data());
            result = mean.data();
          }
          job.finish(b, result);
          batch_seconds = seconds_since(batch_start);
        }
      });
    } catch (...) {
      errors[0] = std::current_exception();
      abort = true;
    }
  }
  for (auto& t : stream_threads) t.join();
  // Every batch is durable and journaled once the committer has drained.
  try {
    committer.finish();
  } catch (...) {
    if (!errors[0]) errors[0] = std::current_exception();
  }
  for (const auto& e : errors) {
    if (e) {
      kept_->drop_engines();  // a failed engine may be in any state
      std::rethrow_exception(e);
    }
  }
  double busy_percent = 0;
  int gpus = 0;
  for (const auto& s : stream_stats) {
    summary.stream_pixels += s.pixels;
    summary.batches_taken_over += s.batches_taken_over;
    summary.gpu_batch =
        summary.gpu_batch ? std::min(summary.gpu_batch, s.pixels_per_run) : s.pixels_per_run;
    if (s.gpu && s.wall_seconds > 0) {
      busy_percent += 100.0 * s.busy_seconds / s.wall_seconds;
      ++gpus;
    }
  }
  if (gpus > 0) summary.gpu_busy_percent = busy_percent / gpus;
  monitor.stop();
  summary.peak_rss_anon_bytes = monitor.peak_rss_anon();
  if (progress) {
    progress(pixels_done.load(), summary.pixels_valid, seconds_since(start));
  }

  embeddings->commit();
  scales->commit();
  journal->remove();
  summary.status = "done";
  summary.engines_built = engines_built.load();
  summary.seconds = seconds_since(start);
  const int64_t computed = pixels_done.load() - pixels_resumed;
  summary.pixels_computed = computed;
  summary.ms_per_pixel = computed > 0 ? 1e3 * summary.seconds / static_cast<double>(computed) : 0;
  return summary;
}

nlohmann::json tile_summary_json(const TileSummary& s) {
  return {{"tile", s.tile},
          {"grid", s.grid},
          {"status", s.status},
          {"pixels_total", s.pixels_total},
          {"pixels_valid", s.pixels_valid},
          {"batches", s.batches},
          {"batches_resumed", s.batches_resumed},
          {"pixels_computed", s.pixels_computed},
          {"seconds", s.seconds},
          {"ms_per_pixel", s.ms_per_pixel},
          {"gpu_busy_percent", s.gpu_busy_percent},
          {"gpu_batch", s.gpu_batch},
          {"stream_pixels", s.stream_pixels},
          {"batches_taken_over", s.batches_taken_over},
          {"peak_rss_anon_bytes", s.peak_rss_anon_bytes},
          {"engines_built", s.engines_built},
          {"embeddings", s.embeddings_path},
          {"scales", s.scales_path}};
}

}  // namespace tessera
