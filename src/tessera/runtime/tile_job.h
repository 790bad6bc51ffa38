#pragma once
// What the workers of one tile share while it runs (tile_runner.cpp's CPU workers and the
// streaming workers of stream_worker.h): the batch counter and finishing rules, the mapped
// outputs, and the committer that makes finished batches durable.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "tessera/common/clock.h"
#include "tessera/common/error.h"
#include "tessera/engine/engine.h"
#include "tessera/io/tile.h"
#include "tessera/pipeline/quantiser.h"
#include "tessera/pipeline/tile_pipeline.h"
#include "tessera/pipeline/tile_plan.h"
#include "tessera/runtime/device_batches.h"
#include "tessera/runtime/journal.h"
#include "tessera/runtime/tile_runner.h"

namespace tessera {

// Writes back the pages of [begin, end) of a MAP_SHARED mapping of `file` and waits for the
// disk; throws Error naming `file` when that fails.
void sync_range(void* begin, void* end, const std::string& file);

// After a failed run: when the journal is kept (a write failed, journal.h), keeps the partial
// outputs it describes too, so that the next run resumes from the batches already on disk;
// otherwise does nothing (the destructors remove all three).
void keep_for_resume(const BatchJournal& journal, NpyWriter& embeddings, NpyWriter& scales);

// "<tile>: pixel <row>,<col>: the model (<model>) produced a non-finite output (nan in element
// 3)": the one-line error for a NonFiniteOutput of the quantiser at flat pixel `pixel`.
Error non_finite_output_error(const Tile& tile, const std::string& model_path, int64_t pixel,
                              const NonFiniteOutput& e);

// Makes finished batches durable off the workers' critical path: one thread writes each
// batch's output rows back to disk (msync) and only then appends the batch to the journal,
// so the invariant "journaled => on disk" holds while workers go on computing. When that
// fails, nothing more is journaled, `abort` is set, so that the workers stop claiming, and the
// journal is kept (the batches journaled so far are on disk: the next run resumes from them).
class BatchCommitter {
 public:
  BatchCommitter(BatchJournal& journal, std::atomic<int64_t>& pixels_done, std::atomic<bool>& abort,
                 std::string rows_file, std::string scales_file)
      : journal_(journal),
        pixels_done_(pixels_done),
        abort_(abort),
        rows_file_(std::move(rows_file)),
        scales_file_(std::move(scales_file)),
        thread_([this] { loop(); }) {}
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
        sync_range(item.rows_begin, item.rows_end, rows_file_);
        sync_range(item.scales_begin, item.scales_end, scales_file_);
        journal_.mark_done(item.batch);
        pixels_done_ += item.pixels;
      } catch (...) {
        error_ = std::current_exception();
        journal_.keep();
        abort_ = true;
      }
    }
  }
  BatchJournal& journal_;
  std::atomic<int64_t>& pixels_done_;
  std::atomic<bool>& abort_;
  const std::string rows_file_, scales_file_;
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

// What every worker of one tile shares. Batch b holds plan.pixels_of(b) at plan.steps[b].
struct TileJob {
  const Tile& tile;
  const InferOptions& options;
  const TilePipeline& pipeline;
  const TilePlan& plan;
  const ModelShape& shape;
  BatchJournal& journal;
  BatchCommitter& committer;
  int8_t* embedding_rows;  // [H * W][pipeline.output_dim]
  float* scale_values;     // [H * W]
  BatchCounter& counter;
  std::atomic<int64_t>& pixels_done;
  std::atomic<bool>& abort;  // set when any worker failed: the others stop claiming
  StreamPace& pace;
  BatchFinishes& finishes;
  // One profile per CPU worker (by WorkerPlan::index) with InferOptions::profile_stages, else
  // null.
  std::vector<StageProfile>* worker_stages = nullptr;

  // Floats of one pixel's model output (the engines' output rows).
  int64_t latent() const { return shape.output_dim; }

  // True when the streaming workers alone would finish every unclaimed batch in less time
  // than a CPU worker needs for one (`cpu_batch_seconds`, its last): that worker stops, so
  // the tile does not end waiting for it. Always false without streaming workers.
  bool streams_finish_first(double cpu_batch_seconds) const {
    return leave_to_streams(pace.pixels_per_second(), counter.unclaimed() * options.batch,
                            cpu_batch_seconds);
  }
  const int64_t* pixels(int64_t b) const { return plan.pixels_of(b); }
  int64_t count(int64_t b) const { return plan.count(b); }
  StepCounts steps(int64_t b) const { return plan.steps[static_cast<std::size_t>(b)]; }

  // Unless another worker finished batch b first (then false, nothing written): quantises its
  // float outputs (count(b) x latent, in the batch's pixel order; the first
  // pipeline.output_dim of each row) into the mapped outputs and hands the batch to the
  // committer (write-back, then journal). A batch's pixels ascend, so its rows lie in
  // [first pixel, last pixel] of the outputs.
  // The quantisation's and the hand-over's time go to `profile` (when not null).
  bool finish(int64_t b, const float* result, StageProfile* profile = nullptr) const {
    if (!finishes.finish(b)) return false;
    std::optional<StageTimer> timer(std::in_place, profile, Stage::kEmbeddingQuantisation);
    const int64_t n = count(b);
    const int64_t* p = pixels(b);
    const int64_t d = pipeline.output_dim;
    const auto quantize =
        pipeline.quant == QuantRule::kV2 ? quantize_embedding_v2 : quantize_embedding;
    for (int64_t k = 0; k < n; ++k) {
      try {
        quantize(result + k * latent(), static_cast<int>(d), embedding_rows + p[k] * d,
                 scale_values + p[k]);
      } catch (const NonFiniteOutput& e) {
        throw non_finite_output_error(tile, options.model_path, p[k], e);
      }
    }
    timer.emplace(profile, Stage::kWriting);
    committer.commit(b, n, embedding_rows + p[0] * d, embedding_rows + (p[n - 1] + 1) * d,
                     scale_values + p[0], scale_values + p[n - 1] + 1);
    return true;
  }
};

}  // namespace tessera
