#pragma once
// Batch bookkeeping shared by CPU workers and streaming (GPU) workers of one tile.
//
// BatchCounter hands out the tile's batch numbers 0..batches-1, each exactly once, to any
// number of threads. A CPU worker claims one batch at a time; a GPU worker claims a chunk of
// G consecutive batches and runs them as one large GPU batch (one run per shape when the
// batches are length buckets). Batches stay the fixed units of the journal (TilePlan), so
// chunking changes neither the journal nor which pixels a batch holds.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "tessera/engine/engine.h"

namespace tessera {

class BatchCounter {
 public:
  explicit BatchCounter(int64_t batches) : batches_(batches) {}

  // Batches [first, end) now belong to the caller; first == end when none are left.
  struct Range {
    int64_t first = 0, end = 0;
    bool empty() const { return first >= end; }
  };
  // Claims up to `count` (>= 1) consecutive batches.
  Range claim(int64_t count);

  int64_t batches() const { return batches_; }
  // Batches nobody has claimed yet.
  int64_t unclaimed() const { return std::max<int64_t>(0, batches_ - next_.load()); }

 private:
  const int64_t batches_;
  std::atomic<int64_t> next_{0};
};

// Who finishes each batch of a tile. At the tile's end a streaming worker with nothing left to
// claim computes again the batches that CPU workers are still running (take_over); whoever
// finishes a batch first writes it (finish is true once per batch), and a CPU worker still
// running it is interrupted, so the tile does not wait for a CPU worker's last batch.
// Thread-safe; one mutex guards everything (calls are per batch, not per pixel).
class BatchFinishes {
 public:
  BatchFinishes(int64_t batches, size_t cpu_workers);

  // CPU worker `worker` claims its next batch from `counter`, passing over batches for which
  // `done(b)` is true (journaled by an earlier run) or that are finished, and starts it on
  // `engine` (allowing the engine's runs again). Claim and start are one step under the lock,
  // so take_over never misses a batch that is claimed but not yet started. Returns the batch,
  // or -1 when none is left.
  int64_t claim_and_start(size_t worker, BatchCounter& counter, Engine& engine,
                          const std::function<bool(int64_t)>& done);
  // CPU worker `worker` has no batch in flight any more.
  void stop(size_t worker);
  // Up to `count` batches in flight on CPU workers, unfinished, in no earlier answer.
  std::vector<int64_t> take_over(int64_t count);
  // True for the first call for batch b, whose caller then writes it; a CPU worker running b
  // is interrupted. False for every later call.
  bool finish(int64_t b);
  bool finished(int64_t b) const;

 private:
  struct InFlight {
    int64_t batch = -1;
    Engine* engine = nullptr;
  };
  mutable std::mutex mutex_;
  std::vector<uint8_t> finished_, taken_over_;  // by batch
  std::vector<InFlight> workers_;               // by CPU worker
};

// The rule that keeps a tile from ending on a slow CPU worker: true when streaming (GPU)
// workers going at `stream_pixels_per_second` together would finish the `unclaimed_pixels`
// in less time than a CPU worker needs for its next batch (`cpu_batch_seconds`, its last).
// False while either rate is unknown (0).
bool leave_to_streams(double stream_pixels_per_second, int64_t unclaimed_pixels,
                      double cpu_batch_seconds);

// The max_batch of a streaming worker's engine for a tile of `valid` pixels: the chunk
// (`chunk` batches of `batch` pixels), or less for a smaller tile (its size rounded up to a
// power of two, so that tiles of varying sizes below the chunk rebuild the engine rarely), and
// never above `memory_ceiling` when that is not 0 (a size that ran out of memory was above it).
int64_t streaming_engine_capacity(int64_t chunk, int64_t batch, int64_t valid,
                                  int64_t memory_ceiling);

// Runs `count` pixels of model inputs (row-major, the layout of a batch tensor) through
// `engine` in sub-batches of at most *limit pixels (and at most engine.max_batch()), each with
// engine.run_from, writing their outputs to `out`. When a sub-batch fails
// with OutOfMemoryError, *limit is halved, `on_halve(new
// limit)` is called, and the sub-batch is retried; at a limit of 1 the error is rethrown.
// *limit keeps the reduced value for later calls. Other errors are rethrown unchanged. With
// `limit` null, sub-batches are engine.max_batch() and every error is rethrown.
void run_in_sub_batches(Engine& engine, const float* s2, const float* s1, int64_t count, float* out,
                        int64_t* limit, const std::function<void(int64_t)>& on_halve = nullptr);

}  // namespace tessera
