#pragma once
// Helpers shared by the C++ tests: catching a tessera::Error's message, and a temporary
// directory of the test process's own.

#include <unistd.h>

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

// TESSERA_TEST_TMP/<name>_<pid>, removed when the object is destroyed (at exit, for a global).
// ctest runs every test case as its own process, in parallel: cases of one file that write the
// same fixtures need a directory each.
class ProcessTestDir {
 public:
  explicit ProcessTestDir(const std::string& name)
      : path_(std::string(TESSERA_TEST_TMP) + "/" + name + "_" + std::to_string(::getpid())) {}
  ~ProcessTestDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ProcessTestDir(const ProcessTestDir&) = delete;
  ProcessTestDir& operator=(const ProcessTestDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace tessera::testing
