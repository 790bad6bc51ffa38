#pragma once
// Starting threads: a thread the system cannot start (EAGAIN under a process or memory limit) is
// a tessera::Error, which callers meet like any other: they stop and join the threads they
// started, and the user gets one line instead of std::terminate.

#include <functional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "tessera/common/error.h"

namespace tessera {

// std::thread(f, args...), or Error "cannot start a thread: <reason>".
template <class F, class... Args>
std::thread start_thread(F&& f, Args&&... args) {
  try {
    return std::thread(std::forward<F>(f), std::forward<Args>(args)...);
  } catch (const std::system_error& e) {
    throw Error(std::string("cannot start a thread: ") + e.what());
  }
}

// Threads started one after the other and joined together: start, and on a failed start, stop
// the ones already running, join them and rethrow. Each user keeps its own rule for the errors
// its threads throw (first by time, by index, ...); the group only starts and joins.
// Invariant: after join(), or after start() has thrown, no thread of the group is running.
class ThreadGroup {
 public:
  ThreadGroup() = default;
  ThreadGroup(const ThreadGroup&) = delete;
  ThreadGroup& operator=(const ThreadGroup&) = delete;
  ~ThreadGroup() { join(); }

  void reserve(size_t count) { threads_.reserve(count); }

  // Starts `f` on a new thread. When the thread cannot be started, calls `stop_started` (still
  // inside the handler, so std::current_exception() is the Error), which must make the threads
  // already started end; then joins them and rethrows the Error.
  template <class F>
  void start(F&& f, const std::function<void()>& stop_started) {
    try {
      threads_.push_back(start_thread(std::forward<F>(f)));
    } catch (const Error&) {
      if (stop_started) stop_started();
      join();
      throw;
    }
  }

  // Waits for every thread started so far.
  void join() {
    for (auto& thread : threads_) thread.join();
    threads_.clear();
  }

 private:
  std::vector<std::thread> threads_;
};

}  // namespace tessera
