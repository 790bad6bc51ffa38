// BenchPool: a layout's workers as threads that stay bound and keep their engines between
// measurements (bench.h), and run_worker_phases, the barrier discipline that lets no worker
// wait forever for one that failed.

#include <fmt/format.h>

#include <algorithm>
#include <barrier>
#include <condition_variable>
#include <mutex>
#include <set>

#include "tessera/bench/bench_case.h"
#include "tessera/common/error.h"
#include "tessera/common/threads.h"
#include "tessera/topology/binding.h"

namespace tessera {

std::string run_worker_phases(int phases, std::barrier<>& meet, std::atomic<bool>& failed,
                              const std::function<void(const std::function<bool()>&)>& body,
                              bool* out_of_memory) {
  int arrived = 0;
  const auto next_phase = [&] {
    meet.arrive_and_wait();
    ++arrived;
    return !failed.load();
  };
  std::string error;
  try {
    body(next_phase);
  } catch (const std::exception& e) {
    failed = true;
    error = e.what();
    if (out_of_memory) *out_of_memory = dynamic_cast<const OutOfMemoryError*>(&e) != nullptr;
  }
  while (arrived < phases) next_phase();
  return error;
}

// Worker threads that stay bound and keep their engines between measurements. A measurement
// is a "generation": every worker runs it through one shared barrier (1 + reps phases,
// run_worker_phases), so no worker waits forever for one that failed or stopped.
struct BenchPool::State {
  BenchOptions options;
  EngineSpec engine;
  std::string layout;
  Plan plan;
  int64_t max_batch = 0;
  double session_s = 0;
  ThreadGroup threads;
  std::unique_ptr<std::barrier<>> sync;
  std::mutex mutex;
  std::condition_variable wake;
  int ready = 0;            // workers whose engine build has ended (built or not)
  CaseError build_error;    // the first failed build
  uint64_t generation = 0;  // of the measurement asked for last
  bool stopping = false;
  Case job;  // the measurement asked for
  int warmup = 0;
  int done = 0;  // workers finished with the current generation
  std::atomic<bool> failed{false};
  CaseError first_error;
  std::vector<WorkerTimes> times;
  std::set<int64_t> warmed;  // batch sizes every engine has run

  void work(const WorkerPlan& worker) {
    std::unique_ptr<Engine> built;
    try {
      if (options.pin) bind_worker_thread(worker, plan.policy);
      double built_s = 0;
      built = build_worker_engine(options, engine, worker, max_batch, &built_s);
      std::lock_guard lock(mutex);
      session_s = std::max(session_s, built_s);
    } catch (const std::exception& e) {
      std::lock_guard lock(mutex);
      if (!build_error.failed())
        build_error = {e.what(), dynamic_cast<const OutOfMemoryError*>(&e) != nullptr};
    }
    {
      std::lock_guard lock(mutex);
      ++ready;
    }
    wake.notify_all();
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock lock(mutex);
        wake.wait(lock, [&] { return stopping || generation != seen; });
        if (stopping) return;
        seen = generation;
      }
      WorkerTimes mine;
      bool out_of_memory = false;
      const std::string error = run_worker_phases(
          1 + options.reps, *sync, failed,
          [&](const std::function<bool()>& next_phase) {
            time_worker(options, job, worker, *built, warmup, next_phase, mine);
          },
          &out_of_memory);
      {
        std::lock_guard lock(mutex);
        times[worker.index] = std::move(mine);
        if (!error.empty() && !first_error.failed()) first_error = {error, out_of_memory};
        ++done;
      }
      wake.notify_all();
    }
  }

  // Asks every worker to leave (each does once its engine build has ended).
  void ask_to_stop() {
    {
      std::lock_guard lock(mutex);
      stopping = true;
    }
    wake.notify_all();
  }

  void stop() {
    ask_to_stop();
    threads.join();
  }
};

BenchPool::BenchPool(const BenchOptions& options, const MachineInfo& machine,
                     const EngineSpec& engine, const std::string& layout, int64_t max_batch)
    : state_(std::make_unique<State>()) {
  validate(options);
  if (options.spawn != "thread") throw UsageError("a bench pool runs its workers as threads");
  State& s = *state_;
  s.options = options;
  s.engine = engine;
  s.layout = layout;
  s.max_batch = max_batch;
  s.plan = plan_layout(machine, layout, parse_memory_policy(options.membind));
  s.sync = std::make_unique<std::barrier<>>(static_cast<std::ptrdiff_t>(s.plan.workers.size()));
  for (const WorkerPlan& worker : s.plan.workers) {
    s.threads.start([&s, worker] { s.work(worker); }, [&s] { s.ask_to_stop(); });
  }
  std::unique_lock lock(s.mutex);
  s.wake.wait(lock, [&] { return s.ready == static_cast<int>(s.plan.workers.size()); });
  if (s.build_error.failed()) {
    const CaseError error = s.build_error;
    lock.unlock();
    s.stop();
    if (error.out_of_memory) throw OutOfMemoryError(error.message);
    throw Error(error.message);
  }
}

BenchPool::~BenchPool() {
  state_->stop();
}

const std::string& BenchPool::layout() const {
  return state_->layout;
}

int64_t BenchPool::max_batch() const {
  return state_->max_batch;
}

double BenchPool::session_s() const {
  return state_->session_s;
}

BenchRow BenchPool::measure(int64_t batch, int batches, int warmup) {
  State& s = *state_;
  if (batch < 1 || batch > s.max_batch) {
    throw UsageError(fmt::format("batch {} is outside this pool's 1..{}", batch, s.max_batch));
  }
  if (batches < 1) throw UsageError(fmt::format("--batches must be at least 1 (got {})", batches));
  BenchOptions options = s.options;
  options.batches = batches;
  {
    std::lock_guard lock(s.mutex);
    s.options.batches = batches;
    s.job = Case{s.engine, s.layout, batch};
    s.warmup = s.warmed.count(batch) ? 0 : warmup;
    s.done = 0;
    s.failed = false;
    s.first_error = {};
    s.times.assign(s.plan.workers.size(), WorkerTimes{});
    ++s.generation;
  }
  s.wake.notify_all();
  std::unique_lock lock(s.mutex);
  s.wake.wait(lock, [&] { return s.done == static_cast<int>(s.plan.workers.size()); });
  if (!s.first_error.failed()) s.warmed.insert(batch);
  return make_row(options, s.job, s.plan, s.first_error, s.times);
}

}  // namespace tessera
