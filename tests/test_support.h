#pragma once
// Helpers shared by the C++ tests: catching a tessera::Error's message, a file's bytes, and a
// temporary directory of the test process's own.

#include <regex.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
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

// Whether all of `text` matches the POSIX extended regular expression `pattern` (regex.h: GCC 12's
// <regex> trips -Wmaybe-uninitialized in the sanitizer builds).
inline bool matches_whole(const std::string& text, const std::string& pattern) {
  regex_t compiled;
  if (::regcomp(&compiled, ("^(" + pattern + ")$").c_str(), REG_EXTENDED | REG_NOSUB) != 0)
    return false;
  const bool matched = ::regexec(&compiled, text.c_str(), 0, nullptr, 0) == 0;
  ::regfree(&compiled);
  return matched;
}

// The whole content of the file at `path` ("" when it cannot be read).
inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// TESSERA_TEST_TMP/<name>_<pid>, made empty (whatever an earlier run left is removed first).
inline std::string fresh_test_dir(const std::string& name) {
  const std::string dir =
      std::string(TESSERA_TEST_TMP) + "/" + name + "_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
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
