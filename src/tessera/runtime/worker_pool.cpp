#include "tessera/runtime/worker_pool.h"

#include <condition_variable>
#include <exception>
#include <mutex>

#include "tessera/common/threads.h"
#include "tessera/topology/binding.h"

namespace tessera {

void run_pinned_workers(const Plan& plan, const std::function<void(const WorkerPlan&)>& body,
                        bool bind) {
  std::mutex mutex;
  std::condition_variable wake;
  // The workers begin only once every thread exists: a thread that cannot be started cancels
  // them all before any has done work that the failure would throw away.
  enum class Start { kWaiting, kGo, kCancelled } start = Start::kWaiting;
  std::exception_ptr first_error;
  ThreadGroup threads;
  threads.reserve(plan.workers.size());
  const auto cancel = [&] {
    {
      std::lock_guard lock(mutex);
      start = Start::kCancelled;
    }
    wake.notify_all();
  };
  for (const WorkerPlan& worker : plan.workers) {
    const auto run = [&, worker] {
      {
        std::unique_lock lock(mutex);
        wake.wait(lock, [&] { return start != Start::kWaiting; });
        if (start == Start::kCancelled) return;
      }
      try {
        if (bind) bind_worker_thread(worker, plan.policy);
        body(worker);
      } catch (...) {
        std::lock_guard lock(mutex);
        if (!first_error) first_error = std::current_exception();
      }
    };
    threads.start(run, cancel);
  }
  {
    std::lock_guard lock(mutex);
    start = Start::kGo;
  }
  wake.notify_all();
  threads.join();
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace tessera
