#pragma once
// Runs the built `tessera` binary as a user would and captures what it printed.

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
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

// The tiny model (d_model 32, one layer of 2 heads, FFN 64) made by `tessera make-model` at
// dir/small.onnx, as the CLI tests use it.
inline std::string make_small_model(const std::string& dir) {
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/small.onnx";
  const auto r =
      run_cli("make-model --force -o " + path + " --d-model 32 --layers 1 --heads 2 --ffn 64");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return path;
}

// A tiny v2 model (symbolic step axes: latent 4, one layer of 2 heads, FFN 16) made by
// `tessera make-model` at dir/v2.onnx.
inline std::string make_tiny_v2_model(const std::string& dir) {
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/v2.onnx";
  const auto r =
      run_cli("make-model --force --arch v2 --latent 4 --layers 1 --heads 2 --ffn 16 -o " + path);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return path;
}

// A fresh 6 x 5 synthetic tile made by `tessera synth` at dir/tiles/<name>.
inline std::string make_small_tile(const std::string& dir, const std::string& name) {
  const std::string tile = dir + "/tiles/" + name;
  std::filesystem::remove_all(tile);
  const auto r = run_cli("synth -o " + tile + " --size 6x5 --s2-steps 12 --s1-steps 4/4 --seed 2");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return tile;
}

}  // namespace tessera::testing
