#include "tessera/runtime/worker_pool.h"

#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "tessera/common/error.h"
#include "tessera/topology/binding.h"

namespace tessera {

void run_pinned_workers(const Plan& plan, const std::function<void(const WorkerPlan&)>& body,
                        bool bind) {
  std::mutex mutex;
  std::exception_ptr first_error;
  std::vector<std::thread> threads;
  threads.reserve(plan.workers.size());
  for (const WorkerPlan& worker : plan.workers) {
    const auto run = [&, worker] {
      try {
        if (bind) {
          bind_current_thread(worker, plan.policy);
          if (!worker.cpus.empty()) pin_current_thread(worker.cpus.front());
        }
        body(worker);
      } catch (...) {
        std::lock_guard lock(mutex);
        if (!first_error) first_error = std::current_exception();
      }
    };
    try {
      threads.emplace_back(run);
    } catch (const std::system_error& e) {
      for (auto& thread : threads) thread.join();  // the workers already started finish first
      throw Error(std::string("cannot start a thread: ") + e.what());
    }
  }
  for (auto& thread : threads) thread.join();
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace tessera
