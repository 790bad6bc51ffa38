// Partial outputs are never written through anything planted at their names, and write
// failures name their real cause.

#include "tessera/io/safe_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/test_tiles.h"
#include "tessera/io/atomic_file.h"
#include "tessera/io/npy.h"
#include "test_support.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using testing::error_of;
using testing::slurp;

const std::string kLinkRefused =
    ": is a symbolic link; tessera never writes through one (remove it and run again)";

// A link at "<out>.partial" to a file outside the output directory: today's code truncated
// the file and committed the link as the output. Both ways of opening refuse it, naming it, and
// leave the file and the link as they were.
TEST(SafeFile, PartialThatIsASymlinkIsRefusedAndNeverFollowed) {
  const std::string root = testing::test_dir("safe_link");
  const std::string outside = root + "/precious.txt";
  std::ofstream(outside) << "precious";
  fs::create_directories(root + "/out");
  const std::string final_path = root + "/out/grid.npy";
  fs::create_symlink(outside, final_path + ".partial");
  for (const bool keep_existing : {false, true}) {
    EXPECT_EQ(error_of([&] { AtomicFile f(final_path, keep_existing); }),
              final_path + ".partial" + kLinkRefused);
    EXPECT_EQ(error_of([&] {
                NpyWriter w(final_path, DType::kInt8, {4, 4}, keep_existing);
              }),
              final_path + ".partial" + kLinkRefused);
  }
  EXPECT_EQ(slurp(outside), "precious");
  EXPECT_TRUE(fs::is_symlink(final_path + ".partial"));
  EXPECT_FALSE(fs::exists(fs::symlink_status(final_path)));
  // A dangling link would have been created through, too.
  fs::remove(final_path + ".partial");
  fs::create_symlink(root + "/would_appear", final_path + ".partial");
  EXPECT_EQ(error_of([&] { AtomicFile f(final_path); }), final_path + ".partial" + kLinkRefused);
  EXPECT_FALSE(fs::exists(root + "/would_appear"));
}

TEST(SafeFile, PartialThatIsNotAPlainFileIsRefusedNamingWhatItIs) {
  const std::string root = testing::test_dir("safe_kinds");
  const std::string final_path = root + "/grid.npy";
  fs::create_directories(final_path + ".partial");
  for (const bool keep_existing : {false, true}) {
    EXPECT_EQ(
        error_of([&] { AtomicFile f(final_path, keep_existing); }),
        final_path + ".partial: is a directory, not a regular file (remove it and run again)");
  }
  fs::remove(final_path + ".partial");
  ASSERT_EQ(::mkfifo((final_path + ".partial").c_str(), 0600), 0);
  for (const bool keep_existing : {false, true}) {
    EXPECT_EQ(error_of([&] { AtomicFile f(final_path, keep_existing); }),
              final_path + ".partial: is a FIFO, not a regular file (remove it and run again)");
  }
  fs::remove(final_path + ".partial");
  // A hard link to another file would write into that file.
  std::ofstream(root + "/other") << "other";
  fs::create_hard_link(root + "/other", final_path + ".partial");
  for (const bool keep_existing : {false, true}) {
    EXPECT_EQ(error_of([&] { AtomicFile f(final_path, keep_existing); }),
              final_path +
                  ".partial: has 2 links; tessera writes only files of its own (remove it and run "
                  "again)");
  }
  EXPECT_EQ(slurp(root + "/other"), "other");
}

// What resume needs keeps working: a stale partial of an earlier run is replaced, or reopened
// as it is with keep_existing.
TEST(SafeFile, StalePartialIsReplacedOrReopened) {
  const std::string root = testing::test_dir("safe_stale");
  const std::string final_path = root + "/grid.npy";
  std::ofstream(final_path + ".partial") << "stale";
  {
    AtomicFile f(final_path, true);
    EXPECT_TRUE(f.reused());
    char buffer[5] = {};
    ASSERT_EQ(::pread(f.fd(), buffer, 5, 0), 5);
    EXPECT_EQ(std::string(buffer, 5), "stale");
    f.keep();
  }
  EXPECT_EQ(slurp(final_path + ".partial"), "stale");  // keep() leaves it on disk
  {
    AtomicFile f(final_path);
    EXPECT_FALSE(f.reused());
    f.write("new", 3);
    f.commit();
  }
  EXPECT_EQ(slurp(final_path), "new");
  EXPECT_FALSE(fs::exists(final_path + ".partial"));
}

// A full device: the real cause, never "Success".
TEST(SafeFile, WriteFailuresNameTheirCause) {
  const int fd = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(error_of([&] { write_fully(fd, "abcd", 4, "/dev/full", "cannot write journal"); }),
            "/dev/full: cannot write journal: No space left on device");
  ::close(fd);
}

}  // namespace
}  // namespace tessera
