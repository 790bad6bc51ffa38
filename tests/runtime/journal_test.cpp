// The batch journal: never through a link, and a failed write keeps what is already on disk.

#include "tessera/runtime/journal.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "test_support.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using testing::error_of;
using testing::slurp;

const testing::ProcessTestDir kDir("journal_test");

std::string fresh_dir(const std::string& name) {
  const std::string dir = kDir.path() + "/" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TEST(Journal, ASymlinkAtItsPathIsRefusedAndNeverFollowed) {
  const std::string dir = fresh_dir("link");
  const std::string outside = dir + "/precious.txt";
  std::ofstream(outside) << "key\nprecious";
  const std::string path = dir + "/grid.journal";
  fs::create_symlink(outside, path);
  // Whether the target would resume (it starts with the key) or not, nothing is read or written.
  for (const std::string key : {"key", "other"}) {
    EXPECT_EQ(error_of([&] { BatchJournal j(path, key, 4); }),
              path +
                  ": is a symbolic link; tessera never writes through one (remove it and run "
                  "again)");
  }
  EXPECT_EQ(slurp(outside), "key\nprecious");
  EXPECT_TRUE(fs::is_symlink(path));
  fs::remove(path);
  fs::create_directories(path);
  EXPECT_EQ(error_of([&] { BatchJournal j(path, "key", 4); }),
            path + ": is a directory, not a regular file (remove it and run again)");
}

TEST(Journal, ResumesFromAJournalLeftOnDisk) {
  const std::string dir = fresh_dir("resume");
  const std::string path = dir + "/grid.journal";
  {
    BatchJournal j(path, "key", 4);
    EXPECT_FALSE(j.resumed());
    j.mark_done(1);
    j.mark_done(3);
    j.keep();  // as after a kill: the file stays
  }
  {
    BatchJournal j(path, "key", 4);
    EXPECT_TRUE(j.resumed());
    EXPECT_EQ(j.done_count(), 2);
    EXPECT_TRUE(j.done(1) && j.done(3) && !j.done(0));
  }
  EXPECT_FALSE(fs::exists(path));  // an orderly end removes it
  BatchJournal other(path, "key", 4);
  other.mark_done(2);
  other.keep();
  BatchJournal j(path, "another key", 4);  // another run's journal starts over
  EXPECT_FALSE(j.resumed());
  EXPECT_EQ(slurp(path), "another key\n");
}

// A write that fails partway (here: the file size limit, which makes write() short and then
// fail with EFBIG, like a disk that fills up) names its cause, never "Success", and keeps the
// journal: the batches recorded before it are resumed by the next run.
TEST(Journal, AFailedWriteNamesItsCauseAndKeepsTheBatchesBefore) {
  const std::string dir = fresh_dir("full");
  const std::string path = dir + "/grid.journal";
  const std::string message_file = dir + "/message";
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{4 + 2 * 4 + 2, RLIM_INFINITY};  // "key\n", 2 records and half of one
    ::setrlimit(RLIMIT_FSIZE, &limit);
    std::string message = "(no error)";
    {
      BatchJournal j(path, "key", 4);
      j.mark_done(0);
      j.mark_done(2);
      message = error_of([&] { j.mark_done(3); });
    }
    limit.rlim_cur = RLIM_INFINITY;
    ::setrlimit(RLIMIT_FSIZE, &limit);
    std::ofstream(message_file) << message;
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(slurp(message_file), path + ": cannot write journal: File too large");
  BatchJournal j(path, "key", 4);
  EXPECT_TRUE(j.resumed());
  EXPECT_EQ(j.done_count(), 2);
  EXPECT_TRUE(j.done(0) && j.done(2) && !j.done(3));
}

}  // namespace
}  // namespace tessera
