#pragma once
// Runs the built `tessera` binary as a user would and captures what it printed.

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace tessera::testing {

struct CliResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// `args` is appended to the binary path as-is (shell syntax; quote paths yourself).
// Runs `tessera ARGS` (in directory `cwd` when given) and returns its exit code and output.
inline CliResult run_cli(const std::string& args, const std::string& cwd = "") {
  static int counter = 0;
  const std::string base = std::string(TESSERA_TEST_TMP) + "/cli_" + std::to_string(::getpid()) +
                           "_" + std::to_string(counter++);
  const std::string command = (cwd.empty() ? std::string() : "cd '" + cwd + "' && ") +
                              std::string(TESSERA_BIN) + " " + args + " >" + base + ".out 2>" +
                              base + ".err </dev/null";
  const int status = std::system(command.c_str());
  CliResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  auto slurp = [](const std::string& path) {
    std::ifstream in(path);
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
  };
  result.out = slurp(base + ".out");
  result.err = slurp(base + ".err");
  std::remove((base + ".out").c_str());
  std::remove((base + ".err").c_str());
  return result;
}

}  // namespace tessera::testing
