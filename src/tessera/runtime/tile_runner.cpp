#include "tessera/runtime/tile_runner.h"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include "tessera/common/error.h"
#include "tessera/io/npy.h"
#include "tessera/io/tile.h"
#include "tessera/model/ort_engine.h"
#include "tessera/pipeline/preparer.h"
#include "tessera/pipeline/quantiser.h"
#include "tessera/runtime/journal.h"
#include "tessera/runtime/worker_pool.h"

namespace tessera {
namespace {

using Clock = std::chrono::steady_clock;
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
std::string journal_key(const Tile& tile, const InferOptions& options, int64_t latent,
                        int64_t valid) {
  std::error_code ec;
  const auto model_bytes = fs::file_size(options.model_path, ec);
  const auto model_time = fs::last_write_time(options.model_path, ec).time_since_epoch().count();
  return fmt::format(
      "tessera-journal v1 grid={} hw={}x{} valid={} latent={} batch={} repeat={} device={} "
      "model_bytes={} model_time={}",
      tile.grid, tile.height, tile.width, valid, latent, options.batch, options.repeat,
      options.device, model_bytes, model_time);
}

// Periodically reports progress from a monitor thread until stopped.
class ProgressMonitor {
 public:
  ProgressMonitor(const ProgressCallback& callback, const std::atomic<int64_t>& done, int64_t total)
      : callback_(callback), done_(done), total_(total), start_(Clock::now()) {
    if (callback_) thread_ = std::thread([this] { loop(); });
  }
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
      callback_(done_.load(), total_, std::chrono::duration<double>(Clock::now() - start_).count());
    }
  }
  const ProgressCallback& callback_;
  const std::atomic<int64_t>& done_;
  int64_t total_;
  Clock::time_point start_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace

TileSummary run_tile(const std::string& tile_dir, const InferOptions& options, const Plan& plan,
                     const ProgressCallback& progress) {
  if (options.batch < 1)
    throw UsageError(fmt::format("batch size must be at least 1 (got {})", options.batch));
  if (options.repeat < 1)
    throw UsageError(fmt::format("--repeat must be at least 1 (got {})", options.repeat));
  const auto start = Clock::now();
  const Tile tile = open_tile(tile_dir);
  TileSummary summary;
  summary.tile = tile_dir;
  summary.grid = tile.grid;
  summary.pixels_total = tile.pixels();
  summary.embeddings_path = (fs::path(options.out_dir) / (tile.grid + ".npy")).string();
  summary.scales_path = (fs::path(options.out_dir) / (tile.grid + "_scales.npy")).string();
  std::error_code ec;
  if (!options.force && fs::exists(summary.embeddings_path, ec) &&
      fs::exists(summary.scales_path, ec)) {
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
  OrtEngineOptions probe_options;
  probe_options.max_batch = 1;
  probe_options.optimization_level = 0;
  const ModelShape shape = OrtEngine(options.model_path, probe_options).shape();
  if (shape.s2_features != kS2Bands + 1 || shape.s1_features != kS1Bands + 1) {
    throw Error(fmt::format("{}: model takes {} + {} features per step, tiles give {} + {}",
                            options.model_path, shape.s2_features, shape.s1_features, kS2Bands + 1,
                            kS1Bands + 1));
  }
  const int64_t latent = shape.output_dim;

  const std::string journal_path = (fs::path(options.out_dir) / (tile.grid + ".journal")).string();
  const std::string key = journal_key(tile, options, latent, summary.pixels_valid);
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
  std::atomic<int64_t> next_batch{0};
  std::atomic<int64_t> pixels_done{0};
  for (int64_t b = 0; b < summary.batches; ++b) {
    if (journal->done(b))
      pixels_done += std::min(options.batch, summary.pixels_valid - b * options.batch);
  }
  const int64_t pixels_resumed = pixels_done.load();
  ProgressMonitor monitor(progress, pixels_done, summary.pixels_valid);

  run_pinned_workers(plan, [&](const WorkerPlan& worker) {
    OrtEngineOptions engine_options;
    engine_options.device = options.device;
    engine_options.intra_op_threads = worker.threads;
    engine_options.spinning = options.spinning;
    engine_options.max_batch = options.batch;
    if (parse_device(options.device) < 0)
      engine_options.thread_affinities = ort_thread_affinities(worker);
    OrtEngine engine(options.model_path, engine_options);
    PixelPreparer preparer(tile, static_cast<int>(shape.s2_steps),
                           static_cast<int>(shape.s1_steps));
    std::vector<float> mean(options.repeat > 1 ? options.batch * latent : 0);
    for (int64_t b = next_batch++; b < summary.batches; b = next_batch++) {
      if (journal->done(b)) continue;
      const int64_t first = b * options.batch;
      const int64_t count = std::min(options.batch, summary.pixels_valid - first);
      const int64_t* pixels = valid.data() + first;
      const float* result = engine.output();
      if (options.repeat > 1) std::fill(mean.begin(), mean.begin() + count * latent, 0.0f);
      for (int r = 0; r < options.repeat; ++r) {
        preparer.prepare_batch(pixels, count, r, engine.s2_input(), engine.s1_input());
        engine.run(count);
        if (options.repeat > 1) accumulate(engine.output(), count * latent, mean.data());
      }
      if (options.repeat > 1) {
        divide_by(count * latent, options.repeat, mean.data());
        result = mean.data();
      }
      for (int64_t k = 0; k < count; ++k) {
        quantize_embedding(result + k * latent, static_cast<int>(latent),
                           embedding_rows + pixels[k] * latent, scale_values + pixels[k]);
      }
      sync_range(embedding_rows + pixels[0] * latent,
                 embedding_rows + (pixels[count - 1] + 1) * latent);
      sync_range(scale_values + pixels[0], scale_values + pixels[count - 1] + 1);
      journal->mark_done(b);
      pixels_done += count;
    }
  });
  monitor.stop();
  if (progress) {
    progress(pixels_done.load(), summary.pixels_valid,
             std::chrono::duration<double>(Clock::now() - start).count());
  }

  embeddings->commit();
  scales->commit();
  journal->remove();
  summary.status = "done";
  summary.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const int64_t computed = pixels_done.load() - pixels_resumed;
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
          {"seconds", s.seconds},
          {"ms_per_pixel", s.ms_per_pixel},
          {"embeddings", s.embeddings_path},
          {"scales", s.scales_path}};
}

}  // namespace tessera
