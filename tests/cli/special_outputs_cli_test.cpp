// Outputs are only ever regular files: a device node, a FIFO, a socket, or a symbolic link to
// one, at an output's name is refused by every command, even with --force, naming what it is,
// and is still there, unchanged in kind, afterwards.

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "run_cli.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using tessera::testing::run_cli;

const tessera::testing::ProcessTestDir kTestDir("special_outputs_cli");
const std::string& kDir = kTestDir.path();

const std::string& small_model() {
  static const std::string path = tessera::testing::make_small_model(kDir);
  return path;
}

// A node of one kind that is not a regular file, and how the refusal names it.
struct Special {
  std::string kind;     // "character device", "FIFO", "socket", "link to a FIFO"
  mode_t type;          // S_IFCHR, ...: what lstat (or stat, through the link) sees
  std::string message;  // after "<path>"
};

const std::string kOnlyRegular = ", not a regular file: tessera writes only regular files";

std::vector<Special> specials() {
  return {{"character device", S_IFCHR, ": is a character device" + kOnlyRegular},
          {"FIFO", S_IFIFO, ": is a FIFO" + kOnlyRegular},
          {"socket", S_IFSOCK, ": is a socket" + kOnlyRegular},
          {"link to a FIFO", S_IFIFO, ": is a symbolic link to a FIFO" + kOnlyRegular}};
}

// Makes `special` at `path`; false (with `why`) where this system does not let us (mknod
// without the privilege).
bool make_special(const Special& special, const std::string& path, std::string& why) {
  fs::create_directories(fs::path(path).parent_path());
  fs::remove(path);
  if (special.kind == "character device") {
    if (::mknod(path.c_str(), S_IFCHR | 0666, ::makedev(1, 3)) == 0) return true;  // like null
    why = std::string("mknod: ") + std::strerror(errno);
    return false;
  }
  if (special.kind == "FIFO") return ::mkfifo(path.c_str(), 0666) == 0;
  if (special.kind == "link to a FIFO") {
    const std::string fifo = path + ".target";
    fs::remove(fifo);
    if (::mkfifo(fifo.c_str(), 0666) != 0) return false;
    fs::create_symlink(fs::path(fifo).filename(), path);
    return true;
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) return false;
  std::strcpy(address.sun_path, path.c_str());
  const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return bound;
}

// Whether `path` still holds `special` (through the link for a link).
bool still_there(const Special& special, const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return false;
  if (special.kind == "link to a FIFO") {
    if (!S_ISLNK(st.st_mode) || ::stat(path.c_str(), &st) != 0) return false;
  }
  return (st.st_mode & S_IFMT) == special.type;
}

// `command` with " --force -o <node>" (or `flag` for -o) is refused for every kind of node with
// exit code 1 and one line naming it; the node is still what it was.
void expect_every_special_refused(const std::string& name, const std::string& command,
                                  const std::string& flag = "-o") {
  for (const Special& special : specials()) {
    const std::string path = kDir + "/" + name + "_" + std::to_string(special.type) +
                             (special.kind == "link to a FIFO" ? "_link" : "");
    std::string why;
    if (!make_special(special, path, why)) {
      std::cout << "[ SKIPPED  ] " << special.kind << ": " << why << "\n";
      continue;
    }
    const auto r = run_cli(command + " --force " + flag + " " + path);
    EXPECT_EQ(r.exit_code, 1) << name << ", " << special.kind << ": " << r.err;
    EXPECT_EQ(r.err, "tessera: " + path + special.message + "\n") << name << ", " << special.kind;
    EXPECT_TRUE(still_there(special, path)) << name << ", " << special.kind;
  }
}

TEST(SpecialOutputsCli, MakeModelNeverReplacesANodeEvenWithForce) {
  expect_every_special_refused("make_model",
                               "make-model --d-model 32 --layers 1 --heads 2 --ffn 64");
}

TEST(SpecialOutputsCli, RunModelNeverReplacesANodeEvenWithForce) {
  // The check comes before the inputs are read: these need not exist.
  expect_every_special_refused("run_model", "run-model -m " + small_model() + " --s2 " + kDir +
                                                "/none_s2.npy --s1 " + kDir + "/none_s1.npy");
}

TEST(SpecialOutputsCli, InferSummaryNeverReplacesANodeEvenWithForce) {
  const std::string tile = tessera::testing::make_small_tile(kDir, "grid_1.00_2.00");
  expect_every_special_refused(
      "summary", "infer " + tile + " -o " + kDir + "/out -m " + small_model() + " --layout 1x1",
      "--summary");
  EXPECT_FALSE(fs::exists(kDir + "/out/grid_1.00_2.00.npy"));  // refused before any tile
}

TEST(SpecialOutputsCli, CompareTableNeverReplacesANodeEvenWithForce) {
  fs::create_directories(kDir + "/run_a");
  fs::create_directories(kDir + "/run_b");
  expect_every_special_refused("compare", "compare " + kDir + "/run_a " + kDir + "/run_b");
}

TEST(SpecialOutputsCli, ProjectTableNeverReplacesANodeEvenWithForce) {
  expect_every_special_refused("project", "project --ms-per-pixel 0.5");
}

TEST(SpecialOutputsCli, WithoutForceTheMessageDoesNotSuggestIt) {
  const Special fifo = specials()[1];
  const std::string path = kDir + "/plain_fifo";
  std::string why;
  ASSERT_TRUE(make_special(fifo, path, why));
  const auto r = run_cli("project --ms-per-pixel 0.5 -o " + path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + path + fifo.message + "\n");
  EXPECT_TRUE(still_there(fifo, path));
}

// A tile's own outputs (embeddings, scales, their partial files, journal, lock) that are a node
// refuse that tile with one line; the node stays.
TEST(SpecialOutputsCli, InferNeverReplacesANodeAtATilesOutput) {
  const std::string tile = tessera::testing::make_small_tile(kDir, "grid_3.00_4.00");
  const Special fifo = specials()[1];
  for (const std::string suffix : {".npy", "_scales.npy", ".npy.partial", ".journal", ".lock"}) {
    const std::string out = kDir + "/tile_out" + suffix;
    fs::remove_all(out);
    const std::string path = out + "/grid_3.00_4.00" + suffix;
    std::string why;
    ASSERT_TRUE(make_special(fifo, path, why));
    const auto r =
        run_cli("infer " + tile + " -o " + out + " -m " + small_model() + " --layout 1x1 --force");
    EXPECT_EQ(r.exit_code, 1) << suffix << ": " << r.err;
    EXPECT_NE(r.err.find(path + fifo.message + "\n"), std::string::npos) << suffix << ": " << r.err;
    EXPECT_TRUE(still_there(fifo, path)) << suffix;
  }
}

}  // namespace
