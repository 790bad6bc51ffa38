// The lock of one tile's outputs: one holder at a time, released on destruction, never taken
// through a link.

#include "tessera/io/output_lock.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "io/test_tiles.h"
#include "test_support.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using testing::error_of;

TEST(OutputLock, SecondLockerIsRefusedUntilTheFirstIsDestroyed) {
  const std::string root = testing::test_dir("output_lock_second");
  const std::string path = root + "/grid_1_2.lock";
  {
    const std::optional<OutputLock> first = OutputLock::try_lock(path);
    ASSERT_TRUE(first.has_value());
    EXPECT_EQ(first->path(), path);
    // Another open file description (as another process would have) is refused.
    EXPECT_FALSE(OutputLock::try_lock(path).has_value());
    EXPECT_EQ(lock_held_line("grid_1_2", path),
              "grid_1_2: skipped, another tessera run is writing it (lock " + path + " held)");
  }
  // Released on destruction; the file stays, empty.
  EXPECT_TRUE(OutputLock::try_lock(path).has_value());
  EXPECT_TRUE(fs::is_regular_file(path));
  EXPECT_EQ(fs::file_size(path), 0u);
}

TEST(OutputLock, MovedLockStaysHeld) {
  const std::string path = testing::test_dir("output_lock_moved") + "/g.lock";
  std::optional<OutputLock> first = OutputLock::try_lock(path);
  ASSERT_TRUE(first.has_value());
  const OutputLock moved(std::move(*first));
  first.reset();  // the moved-from lock closes nothing
  EXPECT_FALSE(OutputLock::try_lock(path).has_value());
}

TEST(OutputLock, SymlinkAtTheLockPathIsRefusedAndNotFollowed) {
  const std::string root = testing::test_dir("output_lock_link");
  const std::string target = root + "/precious.txt";
  std::ofstream(target) << "precious";
  const std::string path = root + "/grid.lock";
  fs::create_symlink(target, path);
  EXPECT_EQ(error_of([&] { OutputLock::try_lock(path); }),
            path +
                ": is a symbolic link; tessera never writes through one (remove it and run "
                "again)");
  fs::remove(target);  // a dangling link is refused the same way, and nothing is created
  EXPECT_EQ(error_of([&] { OutputLock::try_lock(path); }),
            path +
                ": is a symbolic link; tessera never writes through one (remove it and run "
                "again)");
  EXPECT_FALSE(fs::exists(target));
}

// An earlier run's lock file is locked where it is, never removed and created again (a run
// holding the old file would then not exclude one holding the new).
TEST(OutputLock, ExistingLockFileIsLockedInPlace) {
  const std::string path = testing::test_dir("output_lock_kept") + "/g.lock";
  std::ofstream(path) << "";
  const auto inode = [&] {
    struct stat st {};
    ::stat(path.c_str(), &st);
    return st.st_ino;
  };
  const auto before = inode();
  EXPECT_TRUE(OutputLock::try_lock(path).has_value());
  EXPECT_EQ(inode(), before);
}

}  // namespace
}  // namespace tessera
