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
#include "tessera/pipeline/preparer.h"
#include "tessera/pipeline/quantiser.h"
#include "tessera/runtime/device_list.h"
#include "tessera/topology/binding.h"

namespace tessera {
namespace {

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

}  // namespace

StreamStats run_stream_worker(const TileJob& job, const EngineFactory& factory,
                              const EngineSpec& spec, StreamEngine& kept,
                              const WorkerPlan* helper_cpus, MemoryPolicy policy,
                              const std::function<void()>& engine_ready,
                              std::atomic<int>& engines_built) {
  const InferOptions& options = job.options;
  const std::string device = spec.device();
  const int64_t valid = static_cast<int64_t>(job.valid.size());
  if (kept.chunk == 0) kept.chunk = std::max<int64_t>(1, options.gpu_batch / options.batch);
  int64_t& chunk = kept.chunk;
  // GPU time of engines this call replaced for memory (busy_seconds counts per engine).
  double busy_of_replaced = 0;
  bool shrunk = false;
  const auto build = [&](int64_t max_batch) {
    kept.engine.reset();  // free the old one's memory first
    EngineSpec sized = spec;
    sized.max_batch = max_batch;
    kept.engine = factory(options.model_path, sized);
    ++engines_built;
    kept.capacity = max_batch;
    kept.limit = max_batch;
  };
  const auto wanted_capacity = [&] {
    return streaming_engine_capacity(chunk, options.batch, valid, kept.memory_ceiling);
  };
  if (!kept.engine || kept.capacity < std::min(wanted_capacity(), valid)) {
    for (;;) {
      try {
        build(wanted_capacity());
        break;
      } catch (const OutOfMemoryError&) {
        if (chunk == 1) throw;
        chunk /= 2;
      }
    }
  }
  // An engine that computes its whole capacity at every run (a CUDA graph): running out of
  // memory there needs a smaller engine, not smaller runs.
  const bool whole_capacity = kept.engine->caps().computes_whole_capacity;
  const bool gpu = kept.engine->caps().measures_busy_time;
  const auto gpu_busy_seconds = [&] { return kept.engine->busy_seconds(); };
  const double busy_before = gpu_busy_seconds();
  engine_ready();
  // Pixels a slot holds: a whole chunk (at most `chunk` batches), which runs in sub-batches
  // when it is more than the engine's capacity. Fixed for this call even if the engine shrinks.
  const int64_t slot_pixels = std::max(kept.capacity, std::min(chunk * options.batch, valid));
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
  if (kept.buffer_capacity < slot_pixels) {
    for (auto& b : kept.buffers) b = {};  // free the smaller ones first
    for (auto& b : kept.buffers) {
      b.s2 = kept.engine->allocate_host(slot_pixels * job.shape.s2_pixel_floats());
      b.s1 = kept.engine->allocate_host(slot_pixels * job.shape.s1_pixel_floats());
      b.out = kept.engine->allocate_host(slot_pixels * job.latent());
    }
    kept.buffer_capacity = slot_pixels;
  }
  Slot slots[2];
  for (int i = 0; i < 2; ++i) {
    slots[i].s2 = kept.buffers[i].s2.get();
    slots[i].s1 = kept.buffers[i].s1.get();
    slots[i].out = kept.buffers[i].out.get();
    if (options.repeat > 1) slots[i].mean.resize(slot_pixels * job.latent());
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
  std::thread helpers[2];
  helpers[0] = start_thread(helper, std::ref(slots[0]));
  try {
    helpers[1] = start_thread(helper, std::ref(slots[1]));
  } catch (const Error&) {
    fail(std::current_exception());  // the first helper stops at once
    helpers[0].join();
    throw;
  }
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
        } catch (const OutOfMemoryError&) {
          if (!whole_capacity || kept.capacity == 1) throw;
          busy_of_replaced += gpu_busy_seconds();
          shrunk = true;
          for (int64_t next = kept.capacity / 2;; next /= 2) {
            try {
              build(next);
              break;
            } catch (const OutOfMemoryError&) {
              if (next == 1) throw;
            }
          }
          kept.memory_ceiling = kept.capacity;
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

}  // namespace tessera
