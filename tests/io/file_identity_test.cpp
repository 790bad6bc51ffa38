// A file is identified by the SHA-256 of its bytes, and any rewrite or replacement of it is seen.

#include "tessera/io/file_identity.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <utime.h>

#include <filesystem>
#include <fstream>

#include "io/test_tiles.h"
#include "test_support.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using testing::error_of;

void write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Sets the file's access and modification times to 2024-01-01, as `cp -p` or an archive would.
void date_2024(const std::string& path) {
  const utimbuf times{1704067200, 1704067200};
  ASSERT_EQ(::utime(path.c_str(), &times), 0);
}

TEST(FileIdentity, DigestIsTheStandardSha256) {
  const std::string root = testing::test_dir("identity_digest");
  write(root + "/abc", "abc");
  // FIPS 180-2's example digest of "abc", and that of the empty message.
  EXPECT_EQ(identify_file(root + "/abc").sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  write(root + "/empty", "");
  EXPECT_EQ(identify_file(root + "/empty").sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(FileIdentity, LookAlikesDifferAndRewritesAreSeen) {
  const std::string root = testing::test_dir("identity_look_alike");
  const std::string a = root + "/a.onnx", b = root + "/b.onnx";
  write(a, "weights of seed 42");
  write(b, "weights of seed 43");
  date_2024(a);
  date_2024(b);
  const FileIdentity first = identify_file(a);
  EXPECT_NE(first.sha256, identify_file(b).sha256);
  EXPECT_TRUE(file_unchanged(first));
  // Rewritten in place with bytes of the same size, and its time set back: the change time moves.
  write(a, "weights of seed 43");
  date_2024(a);
  EXPECT_FALSE(file_unchanged(first));
  // Replaced at its path by another file.
  const FileIdentity second = identify_file(a);
  fs::copy_file(b, root + "/c.onnx");
  fs::rename(root + "/c.onnx", a);
  EXPECT_FALSE(file_unchanged(second));
  fs::remove(a);
  EXPECT_FALSE(file_unchanged(second));
}

TEST(FileIdentity, UnreadableFilesAreOneLine) {
  const std::string root = testing::test_dir("identity_errors");
  EXPECT_EQ(error_of([&] { identify_file(root + "/none.onnx"); }),
            root + "/none.onnx: No such file or directory");
  EXPECT_EQ(error_of([&] { identify_file(root); }), root + ": is not a regular file");
}

}  // namespace
}  // namespace tessera
