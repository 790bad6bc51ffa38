#include "tessera/runtime/stream_worker.h"

#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "tessera/common/clock.h"
#include "tessera/common/error.h"
#include "tessera/common/threads.h"
#include "tessera/engine/engine_spec.h"
#include "tessera/pipeline/input_preparer.h"
#include "tessera/pipeline/quantiser.h"
#include "tessera/runtime/device_list.h"
#include "tessera/topology/binding.h"

namespace tessera {
namespace {

// Consecutive pixels of a slot whose batches have one shape: one engine run (or one series of
// sub-batches). Its inputs start at s2 + s2_at and s1 + s1_at, its outputs at out + first rows.
struct Segment {
  int64_t first = 0, count = 0;
  StepCounts steps;
  int64_t s2_at = 0, s1_at = 0;
};

// One chunk of consecutive batches on its way through a streaming worker: prepared by a
// helper thread, run by the engine thread, then quantised by the same helper.
struct Slot {
  std::vector<int64_t> pixels;    // the chunk's not-yet-done pixels, batch after batch
  std::vector<int64_t> batches;   // their batch numbers
  std::vector<Segment> segments;  // the pixels in runs of one shape
  float *s2 = nullptr, *s1 = nullptr, *out = nullptr;  // StreamEngine::buffers
  std::vector<float> mean;
  int64_t count = 0;
  bool done = false;  // the engine has filled `out` for the submitted pass
};

// One streaming worker's run over a tile: its engine, its two slots and the handshake between
// the helper threads and the engine thread (one mutex and condition variable). The helpers push
// their slot onto `ready_` and wait for `slot.done`; the engine thread pops, runs, sets it. The
// first error is kept in `error_`, sets job.abort and wakes everyone.
class StreamWorker {
 public:
  StreamWorker(const TileJob& job, const EngineFactory& factory, const EngineSpec& spec,
               StreamEngine& kept, const WorkerPlan* helper_cpus, MemoryPolicy policy,
               std::atomic<int>& engines_built)
      : job_(job),
        options_(job.options),
        factory_(factory),
        spec_(spec),
        kept_(kept),
        helper_cpus_(helper_cpus),
        policy_(policy),
        engines_built_(engines_built),
        device_(spec.device.name()),
        valid_(static_cast<int64_t>(job.plan.pixels.size())) {}

  StreamStats run(const std::function<void()>& engine_ready);

 private:
  void build(int64_t max_batch);
  void build_engine_halving_chunk();
  void allocate_slots(int64_t slot_pixels);
  void start_helpers_and_run_engine();
  void fail(std::exception_ptr e);
  // Helper threads.
  void helper_loop(Slot& slot);
  bool claim_chunk(Slot& slot, bool& taking_over);
  void cut_segments(Slot& slot) const;
  const float* compute_chunk(Slot& slot, InputPreparer& preparer);
  void finish_chunk(const Slot& slot, const float* result, bool taking_over);
  // The engine thread.
  void engine_loop();
  Slot* next_ready_slot();
  void run_slot(Slot& slot);
  void rebuild_at_half_capacity();
  void say_reduced(int64_t pixels_per_run) const;
  double gpu_busy_seconds() const { return kept_.engine->busy_seconds(); }

  const TileJob& job_;
  const InferOptions& options_;
  const EngineFactory& factory_;
  const EngineSpec& spec_;
  StreamEngine& kept_;
  const WorkerPlan* helper_cpus_;
  MemoryPolicy policy_;
  std::atomic<int>& engines_built_;
  const std::string device_;
  const int64_t valid_;
  // An engine that computes its whole capacity at every run (a CUDA graph): running out of
  // memory there needs a smaller engine, not smaller runs.
  bool whole_capacity_ = false;
  // GPU time of engines this call replaced for memory (busy_seconds counts per engine).
  double busy_of_replaced_ = 0;
  bool shrunk_ = false;
  Slot slots_[2];

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Slot*> ready_;              // guarded by mutex_
  int helpers_left_ = 2;                 // guarded by mutex_
  int64_t pixels_ = 0, taken_over_ = 0;  // guarded by mutex_
  std::exception_ptr error_;             // guarded by mutex_
};

void StreamWorker::build(int64_t max_batch) {
  kept_.engine.reset();  // free the old one's memory first
  EngineSpec sized = spec_;
  sized.max_batch = max_batch;
  kept_.engine = factory_(options_.model_path, sized);
  ++engines_built_;
  kept_.capacity = max_batch;
  kept_.limit = max_batch;
}

// Builds the engine unless the kept one is large enough, halving the chunk while building runs
// out of memory.
void StreamWorker::build_engine_halving_chunk() {
  if (kept_.chunk == 0) kept_.chunk = std::max<int64_t>(1, options_.gpu_batch / options_.batch);
  int64_t& chunk = kept_.chunk;
  const auto wanted_capacity = [&] {
    return streaming_engine_capacity(chunk, options_.batch, valid_, kept_.memory_ceiling);
  };
  if (kept_.engine && kept_.capacity >= std::min(wanted_capacity(), valid_)) return;
  for (;;) {
    try {
      build(wanted_capacity());
      return;
    } catch (const OutOfMemoryError&) {
      if (chunk == 1) throw;
      chunk /= 2;
    }
  }
}

// Allocated before the helpers start: the engine thread may replace the engine later.
void StreamWorker::allocate_slots(int64_t slot_pixels) {
  if (kept_.buffer_capacity < slot_pixels) {
    for (auto& b : kept_.buffers) b = {};  // free the smaller ones first
    for (auto& b : kept_.buffers) {
      b.s2 = kept_.engine->allocate_host(slot_pixels * job_.shape.s2_pixel_floats());
      b.s1 = kept_.engine->allocate_host(slot_pixels * job_.shape.s1_pixel_floats());
      b.out = kept_.engine->allocate_host(slot_pixels * job_.latent());
    }
    kept_.buffer_capacity = slot_pixels;
  }
  for (int i = 0; i < 2; ++i) {
    slots_[i].s2 = kept_.buffers[i].s2.get();
    slots_[i].s1 = kept_.buffers[i].s1.get();
    slots_[i].out = kept_.buffers[i].out.get();
    if (options_.repeat > 1) slots_[i].mean.resize(slot_pixels * job_.latent());
  }
}

void StreamWorker::fail(std::exception_ptr e) {
  {
    std::lock_guard lock(mutex_);
    if (!error_) error_ = e;
  }
  job_.abort = true;
  wake_.notify_all();
}

void StreamWorker::helper_loop(Slot& slot) {
  try {
    if (helper_cpus_) bind_current_thread(*helper_cpus_, policy_);
    const std::unique_ptr<InputPreparer> preparer = make_input_preparer(job_.tile, job_.pipeline);
    while (!job_.abort) {
      bool taking_over = false;
      if (!claim_chunk(slot, taking_over)) break;
      if (slot.count == 0) continue;
      const float* result = compute_chunk(slot, *preparer);
      if (!result) return;  // another thread failed; the engine thread has stopped waiting
      finish_chunk(slot, result, taking_over);
    }
  } catch (...) {
    fail(std::current_exception());
  }
  std::lock_guard lock(mutex_);
  --helpers_left_;
  wake_.notify_all();
}

// Claims the next chunk into `slot`: its batches the journal does not have, and their pixels.
// With nothing left to claim, the batches CPU workers are still running (`taking_over`); false
// when there are none either.
bool StreamWorker::claim_chunk(Slot& slot, bool& taking_over) {
  const BatchCounter::Range range = job_.counter.claim(kept_.chunk);
  slot.batches.clear();
  taking_over = range.empty();
  if (taking_over) {
    slot.batches = job_.finishes.take_over(kept_.chunk);
    if (slot.batches.empty()) return false;
  }
  for (int64_t b = range.first; b < range.end; ++b) {
    if (!job_.journal.done(b)) slot.batches.push_back(b);
  }
  slot.pixels.clear();
  for (const int64_t b : slot.batches) {
    slot.pixels.insert(slot.pixels.end(), job_.pixels(b), job_.pixels(b) + job_.count(b));
  }
  slot.count = static_cast<int64_t>(slot.pixels.size());
  cut_segments(slot);
  return true;
}

// Splits the slot's pixels where the step counts of its batches change, and places each
// segment's inputs one after another in the slot's buffers.
void StreamWorker::cut_segments(Slot& slot) const {
  slot.segments.clear();
  int64_t first = 0, s2_at = 0, s1_at = 0;
  for (const int64_t b : slot.batches) {
    const StepCounts steps = job_.steps(b);
    if (slot.segments.empty() || !(slot.segments.back().steps == steps)) {
      slot.segments.push_back({first, 0, steps, s2_at, s1_at});
    }
    const int64_t n = job_.count(b);
    slot.segments.back().count += n;
    first += n;
    s2_at += n * steps.s2 * job_.shape.s2_features;
    s1_at += n * steps.s1 * job_.shape.s1_features;
  }
}

// Prepares each pass of the chunk and hands it to the engine thread. Returns the embeddings
// (the passes' mean with repeat > 1), or null when a thread failed meanwhile.
const float* StreamWorker::compute_chunk(Slot& slot, InputPreparer& preparer) {
  const int64_t floats = slot.count * job_.latent();
  if (options_.repeat > 1) std::fill(slot.mean.begin(), slot.mean.begin() + floats, 0.0f);
  for (int r = 0; r < options_.repeat; ++r) {
    for (const Segment& s : slot.segments) {
      preparer.prepare_batch(slot.pixels.data() + s.first, s.count, r, s.steps, slot.s2 + s.s2_at,
                             slot.s1 + s.s1_at);
    }
    std::unique_lock lock(mutex_);
    slot.done = false;
    ready_.push_back(&slot);
    wake_.notify_all();
    wake_.wait(lock, [&] { return slot.done || error_; });
    if (error_) return nullptr;
    lock.unlock();
    if (options_.repeat > 1) accumulate(slot.out, floats, slot.mean.data());
  }
  if (options_.repeat == 1) return slot.out;
  divide_by(floats, options_.repeat, slot.mean.data());
  return slot.mean.data();
}

// Quantises and writes each batch of the chunk that no one finished first (TileJob::finish).
void StreamWorker::finish_chunk(const Slot& slot, const float* result, bool taking_over) {
  int64_t offset = 0, written = 0, won = 0;
  for (const int64_t b : slot.batches) {
    if (job_.finish(b, result + offset * job_.latent())) {
      written += job_.count(b);
      ++won;
    }
    offset += job_.count(b);
  }
  std::lock_guard lock(mutex_);
  pixels_ += written;
  if (taking_over) taken_over_ += won;
}

void StreamWorker::engine_loop() {
  for (;;) {
    Slot* slot = next_ready_slot();
    if (!slot) break;
    job_.pace.started();
    try {
      run_slot(*slot);
    } catch (...) {
      fail(std::current_exception());
      break;
    }
    job_.pace.ran(slot->count);
    std::lock_guard lock(mutex_);
    slot->done = true;
    wake_.notify_all();
  }
}

// The next slot a helper handed over; null after an error or once both helpers have left.
Slot* StreamWorker::next_ready_slot() {
  std::unique_lock lock(mutex_);
  wake_.wait(lock, [&] { return error_ || !ready_.empty() || helpers_left_ == 0; });
  if (error_ || ready_.empty()) return nullptr;
  Slot* slot = ready_.front();
  ready_.pop_front();
  return slot;
}

void StreamWorker::run_slot(Slot& slot) {
  for (;;) {
    try {
      for (const Segment& s : slot.segments) {
        kept_.engine->set_steps(s.steps.s2, s.steps.s1);
        run_in_sub_batches(*kept_.engine, slot.s2 + s.s2_at, slot.s1 + s.s1_at, s.count,
                           slot.out + s.first * job_.latent(),
                           whole_capacity_ ? nullptr : &kept_.limit,
                           [this](int64_t reduced) { say_reduced(reduced); });
      }
      return;
    } catch (const OutOfMemoryError&) {
      if (!whole_capacity_ || kept_.capacity == 1) throw;
      rebuild_at_half_capacity();
      say_reduced(kept_.capacity);
    }
  }
}

// A whole-capacity engine that ran out of memory: rebuilt at half its capacity (and again while
// that does not fit); memory_ceiling keeps later tiles from building the larger one again.
void StreamWorker::rebuild_at_half_capacity() {
  busy_of_replaced_ += gpu_busy_seconds();
  shrunk_ = true;
  for (int64_t next = kept_.capacity / 2;; next /= 2) {
    try {
      build(next);
      break;
    } catch (const OutOfMemoryError&) {
      if (next == 1) throw;
    }
  }
  kept_.memory_ceiling = kept_.capacity;
}

void StreamWorker::say_reduced(int64_t pixels_per_run) const {
  fmt::print(stderr, "tessera: {}: out of memory, continuing with {} pixels per run\n", device_,
             pixels_per_run);
}

void StreamWorker::start_helpers_and_run_engine() {
  ThreadGroup helpers;
  helpers.start([this] { helper_loop(slots_[0]); }, nullptr);
  // The first helper stops at once when the second cannot start.
  helpers.start([this] { helper_loop(slots_[1]); }, [this] { fail(std::current_exception()); });
  engine_loop();
  helpers.join();
}

StreamStats StreamWorker::run(const std::function<void()>& engine_ready) {
  build_engine_halving_chunk();
  whole_capacity_ = kept_.engine->caps().computes_whole_capacity;
  const bool gpu = kept_.engine->caps().measures_busy_time;
  const double busy_before = gpu_busy_seconds();
  engine_ready();
  // Pixels a slot holds: a whole chunk (at most `chunk` batches), which runs in sub-batches
  // when it is more than the engine's capacity. Fixed for this call even if the engine shrinks.
  const int64_t slot_pixels =
      std::max(kept_.capacity, std::min(kept_.chunk * options_.batch, valid_));
  const auto start = Clock::now();
  allocate_slots(slot_pixels);
  start_helpers_and_run_engine();
  // An engine shrunk for memory (graph path) takes smaller chunks from the next tile on, so
  // that the next tile does not build the larger one again.
  if (shrunk_) {
    kept_.chunk = std::max<int64_t>(1, std::min(kept_.chunk, kept_.capacity / options_.batch));
  }
  if (error_) std::rethrow_exception(error_);
  StreamStats stats;
  stats.wall_seconds = seconds_since(start);
  stats.pixels_per_run = whole_capacity_ ? kept_.capacity : kept_.limit;
  stats.pixels = pixels_;
  stats.batches_taken_over = taken_over_;
  if (gpu) {
    stats.gpu = true;
    stats.busy_seconds = busy_of_replaced_ + gpu_busy_seconds() - busy_before;
  }
  return stats;
}

}  // namespace

StreamStats run_stream_worker(const TileJob& job, const EngineFactory& factory,
                              const EngineSpec& spec, StreamEngine& kept,
                              const WorkerPlan* helper_cpus, MemoryPolicy policy,
                              const std::function<void()>& engine_ready,
                              std::atomic<int>& engines_built) {
  return StreamWorker(job, factory, spec, kept, helper_cpus, policy, engines_built)
      .run(engine_ready);
}

}  // namespace tessera
