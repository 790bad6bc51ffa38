#pragma once
// Starting threads: a thread the system cannot start (EAGAIN under a process or memory limit) is
// a tessera::Error, which callers meet like any other: they stop and join the threads they
// started, and the user gets one line instead of std::terminate.

#include <string>
#include <system_error>
#include <thread>
#include <utility>

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

}  // namespace tessera
