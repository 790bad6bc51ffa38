#include "tessera/runtime/device_batches.h"

#include <algorithm>

#include "tessera/common/error.h"
#include "tessera/common/power_of_two.h"
#include "tessera/engine/engine.h"

namespace tessera {

BatchCounter::Range BatchCounter::claim(int64_t count) {
  const int64_t first = next_.fetch_add(std::max<int64_t>(count, 1));
  if (first >= batches_) return {batches_, batches_};
  return {first, std::min(first + std::max<int64_t>(count, 1), batches_)};
}

BatchFinishes::BatchFinishes(int64_t batches, size_t cpu_workers)
    : finished_(static_cast<size_t>(batches), 0),
      taken_over_(static_cast<size_t>(batches), 0),
      workers_(cpu_workers) {}

int64_t BatchFinishes::claim_and_start(size_t worker, BatchCounter& counter, Engine& engine,
                                       const std::function<bool(int64_t)>& done) {
  std::lock_guard lock(mutex_);
  for (;;) {
    const int64_t b = counter.claim(1).first;
    if (b >= counter.batches()) return -1;
    if (finished_.at(b) || done(b)) continue;
    workers_.at(worker) = {b, &engine};
    engine.allow_runs();  // under the lock: an interrupt for b can only come after this
    return b;
  }
}

void BatchFinishes::stop(size_t worker) {
  std::lock_guard lock(mutex_);
  workers_.at(worker) = {};
}

std::vector<int64_t> BatchFinishes::take_over(int64_t count) {
  std::lock_guard lock(mutex_);
  std::vector<int64_t> batches;
  for (const InFlight& w : workers_) {
    if (static_cast<int64_t>(batches.size()) >= count) break;
    if (w.batch < 0 || finished_[w.batch] || taken_over_[w.batch]) continue;
    taken_over_[w.batch] = 1;
    batches.push_back(w.batch);
  }
  std::sort(batches.begin(), batches.end());
  return batches;
}

bool BatchFinishes::finish(int64_t b) {
  std::lock_guard lock(mutex_);
  if (finished_.at(b)) return false;
  finished_[b] = 1;
  for (const InFlight& w : workers_) {
    if (w.batch == b) w.engine->interrupt();
  }
  return true;
}

bool BatchFinishes::finished(int64_t b) const {
  std::lock_guard lock(mutex_);
  return finished_.at(b) != 0;
}

bool leave_to_streams(double stream_pixels_per_second, int64_t unclaimed_pixels,
                      double cpu_batch_seconds) {
  if (stream_pixels_per_second <= 0 || cpu_batch_seconds <= 0) return false;
  return static_cast<double>(unclaimed_pixels) / stream_pixels_per_second < cpu_batch_seconds;
}

int64_t streaming_engine_capacity(int64_t chunk, int64_t batch, int64_t valid,
                                  int64_t memory_ceiling) {
  const int64_t wanted = std::min(chunk * batch, power_of_two_at_least(valid));
  return memory_ceiling > 0 ? std::min(wanted, memory_ceiling) : wanted;
}

void run_in_sub_batches(Engine& engine, const float* s2, const float* s1, int64_t count, float* out,
                        int64_t* limit, const std::function<void(int64_t)>& on_halve) {
  const ModelShape& shape = engine.shape();
  int64_t done = 0;
  while (done < count) {
    const int64_t n =
        std::min({count - done, limit ? *limit : engine.max_batch(), engine.max_batch()});
    try {
      engine.run_from(s2 + done * engine.s2_pixel_floats(), s1 + done * engine.s1_pixel_floats(), n,
                      out + done * shape.output_dim);
    } catch (const OutOfMemoryError&) {
      if (!limit || n <= 1) throw;
      *limit = n / 2;
      if (on_halve) on_halve(*limit);
      continue;
    }
    done += n;
  }
}

}  // namespace tessera
