#include "tessera/runtime/tile_runner.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
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
#include "tessera/common/threads.h"
#include "tessera/io/npy.h"
#include "tessera/io/tile.h"
#include "tessera/model/ort_cuda.h"
#include "tessera/model/ort_engine.h"
#include "tessera/pipeline/preparer.h"
#include "tessera/pipeline/quantiser.h"
#include "tessera/runtime/cpu_worker.h"
#include "tessera/runtime/device_batches.h"
#include "tessera/runtime/device_list.h"
#include "tessera/runtime/journal.h"
#include "tessera/runtime/stream_worker.h"
#include "tessera/runtime/tile_job.h"
#include "tessera/runtime/worker_pool.h"
#include "tessera/topology/binding.h"
#include "tessera/topology/topology.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

// Identifies the computation a journal belongs to: resuming with any of these changed would
// mix two different results in one file.
std::string journal_key(const Tile& tile, const InferOptions& options, const DeviceList& devices,
                        int64_t latent, int64_t valid) {
  std::error_code ec;
  const auto model_bytes = fs::file_size(options.model_path, ec);
  const auto model_time = fs::last_write_time(options.model_path, ec).time_since_epoch().count();
  // The tile's data: a tile written again under the same name (same size, other values) must
  // not continue the old one's outputs.
  std::string inputs;
  for (const NpyArray* array : tile_files(tile)) {
    inputs += fmt::format("{}:{};", fs::file_size(array->path(), ec),
                          fs::last_write_time(array->path(), ec).time_since_epoch().count());
  }
  return fmt::format(
      "tessera-journal v2 grid={} hw={}x{} valid={} latent={} batch={} repeat={} device={}{} "
      "model_bytes={} model_time={} inputs={:016x}",
      tile.grid, tile.height, tile.width, valid, latent, options.batch, options.repeat,
      // Only CUDA devices compute differently at another precision.
      options.device, devices.any_cuda() ? " precision=" + options.precision : std::string(),
      model_bytes, model_time, std::hash<std::string>{}(inputs));
}

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
  if (options.batch > kMaxInferBatch) {
    throw UsageError(
        fmt::format("batch size must be at most {} (got {})", kMaxInferBatch, options.batch));
  }
  if (options.repeat < 1)
    throw UsageError(fmt::format("--repeat must be at least 1 (got {})", options.repeat));
  check_precision(options.precision);
  kept_->devices = parse_device_list(options.device);
  for (const auto& device : kept_->devices.streams) require_cuda(stream_engine_device(device));
  if (options.gpu_batch < 1 || options.gpu_batch > kMaxInferBatch) {
    throw UsageError(
        fmt::format("GPU batch must be 1 to {} (got {})", kMaxInferBatch, options.gpu_batch));
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
  // An output must never land on one of the tile's own files (a flat tile written into itself).
  for (const std::string& output : {summary.embeddings_path, summary.scales_path, journal_path}) {
    for (const NpyArray* input : tile_files(tile)) {
      for (const std::string& path : {output, output + ".partial"}) {
        if (fs::equivalent(path, input->path(), ec)) {
          throw Error(fmt::format("{}: the output {} would replace this tile's input file",
                                  tile_dir, path));
        }
      }
    }
  }
  if (!options.force && fs::exists(summary.embeddings_path, ec) &&
      fs::exists(summary.scales_path, ec)) {
    // A run stopped between committing the outputs and removing the journal leaves the journal
    // behind, and a killed --force run its partial outputs; the outputs are complete, so these
    // are stale.
    for (const std::string& stale :
         {journal_path, summary.embeddings_path + ".partial", summary.scales_path + ".partial"}) {
      fs::remove(stale, ec);
    }
    summary.status = "skipped";
    return summary;
  }

  // The outputs (sized by the model's output width) exist before the workers start, so ask
  // ONNX Runtime for the model's shape once, without graph optimisation (fast to load).
  if (!kept_->shape) kept_->shape = probe_model_shape(options.model_path);
  const ModelShape& shape = *kept_->shape;
  if (shape.s2_features != kS2Bands + 1 || shape.s1_features != kS1Bands + 1) {
    throw Error(fmt::format("{}: model takes {} + {} features per step, tiles give {} + {}",
                            options.model_path, shape.s2_features, shape.s1_features, kS2Bands + 1,
                            kS1Bands + 1));
  }

  const auto scan_start = Clock::now();
  const std::vector<int64_t> valid = valid_pixels(tile);
  summary.scan_seconds = seconds_since(scan_start);
  summary.pixels_valid = static_cast<int64_t>(valid.size());
  summary.batches = (summary.pixels_valid + options.batch - 1) / options.batch;
  fs::create_directories(options.out_dir, ec);
  if (ec) throw Error(options.out_dir + ": cannot create output directory: " + ec.message());
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
  BatchCommitter committer(*journal, pixels_done, abort, embeddings->temp_path(),
                           scales->temp_path());
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
    const auto run = [&, i] {
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
    };
    try {
      stream_threads.push_back(start_thread(run));
    } catch (const Error&) {
      // The threads already started stop claiming; those never started count as ready.
      abort = true;
      stream_engines_ready.count_down(static_cast<std::ptrdiff_t>(streams - i));
      for (auto& t : stream_threads) t.join();
      kept_->drop_engines();
      throw;
    }
  }
  if (devices.cpu && work_left) {
    stream_engines_ready.wait();
    try {
      run_pinned_workers(kept_->cpu_plan, [&](const WorkerPlan& worker) {
        run_cpu_worker(job, worker, kept_->cpu_engines.at(worker.index), engines_built);
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
      keep_for_resume(*journal, *embeddings, *scales);
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
          {"scan_seconds", s.scan_seconds},
          {"embeddings", s.embeddings_path},
          {"scales", s.scales_path}};
}

}  // namespace tessera
