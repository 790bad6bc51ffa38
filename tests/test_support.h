#pragma once
// Helpers shared by the C++ tests: catching a tessera::Error's message, and writing the small
// models most engine tests run.

#include <filesystem>
#include <functional>
#include <string>

#include "tessera/common/error.h"

namespace tessera::testing {

// The message of the tessera::Error that `f` throws, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace tessera::testing
