// `tessera infer` never damages what a user has: nothing planted in the output directory is
// written through, and bad values or lists end with one line naming the file.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "run_cli.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using tessera::testing::run_cli;
using tessera::testing::slurp;

const tessera::testing::ProcessTestDir kTestDir("trust_cli");
const std::string& kDir = kTestDir.path();

const std::string& small_model() {
  static const std::string path = tessera::testing::make_small_model(kDir);
  return path;
}

std::string make_tile(const std::string& name) {
  return tessera::testing::make_small_tile(kDir, name);
}

// A link planted at a partial output or at the journal, pointing outside the output directory:
// infer refuses it, naming it, and the file it points to and the link stay as they were.
TEST(TrustCli, LinksPlantedInTheOutputDirectoryAreNeverFollowed) {
  const std::string tile = make_tile("grid_3.05_4.05");
  const std::string outside = kDir + "/precious.txt";
  for (const std::string name : {"grid_3.05_4.05.npy.partial", "grid_3.05_4.05_scales.npy.partial",
                                 "grid_3.05_4.05.journal"}) {
    const std::string out = kDir + "/out_link";
    fs::remove_all(out);
    fs::create_directories(out);
    std::ofstream(outside) << "precious";
    fs::create_symlink(outside, out + "/" + name);
    const auto r =
        run_cli("infer " + tile + " -o " + out + " -m " + small_model() + " --layout 1x1 -b 8");
    EXPECT_EQ(r.exit_code, 1) << name;
    EXPECT_EQ(r.err, "tessera: " + out + "/" + name +
                         ": is a symbolic link; tessera never writes through one (remove it and "
                         "run again)\n");
    EXPECT_EQ(slurp(outside), "precious") << name;
    EXPECT_TRUE(fs::is_symlink(out + "/" + name)) << name;
    EXPECT_FALSE(fs::exists(fs::symlink_status(out + "/grid_3.05_4.05.npy"))) << name;
    EXPECT_FALSE(fs::exists(fs::symlink_status(out + "/grid_3.05_4.05_scales.npy"))) << name;
  }
}

TEST(TrustCli, AnEmptyTileListSaysSo) {
  const std::string list = kDir + "/empty.txt";
  fs::create_directories(kDir);
  std::ofstream(list) << "# nothing yet\n\n";
  const auto r =
      run_cli("infer --tiles " + list + " -o " + kDir + "/out_empty -m " + small_model());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + list + ": the tile list is empty (no tile directory in it)\n");
}

TEST(TrustCli, ATileThatIsALoopOfLinksGetsAMessageOfItsOwn) {
  const std::string loop = kDir + "/loop";
  fs::create_directories(kDir);
  fs::remove(loop);
  fs::create_symlink("loop", loop);
  const auto r = run_cli("infer " + loop + " -o " + kDir + "/out_loop -m " + small_model());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "tessera: " + loop + ": a loop of symbolic links (it never reaches a directory)\n");
}

// A finite float32 input (3e38) that makes the model overflow: the run fails naming the tile,
// the pixel and the model, and writes no output (it used to write a scale of inf or NaN rows
// as zeros).
TEST(TrustCli, ANonFiniteModelOutputNamesTilePixelAndModel) {
  const std::string tile = make_tile("grid_5.05_6.05");
  const std::string bands = tile + "/s2/bands.npy";
  const std::string script = "import numpy as np; b = np.load('" + bands +
                             "').astype(np.float32); b[:, 1, 2, :] = 3e38; np.save('" + bands +
                             "', b)";
  ASSERT_EQ(std::system((std::string(TESSERA_PYTHON3) + " -c \"" + script + "\"").c_str()), 0);
  const std::string out = kDir + "/out_nan";
  fs::remove_all(out);
  const auto r =
      run_cli("infer " + tile + " -o " + out + " -m " + small_model() + " --layout 1x1 -b 4");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + tile + ": pixel 1,2: the model (" + small_model() +
                       ") produced a non-finite output (nan in element 0)\n");
  EXPECT_FALSE(fs::exists(out + "/grid_5.05_6.05.npy"));
  EXPECT_FALSE(fs::exists(out + "/grid_5.05_6.05.npy.partial"));
  EXPECT_FALSE(fs::exists(out + "/grid_5.05_6.05.journal"));
}

// A disk that fills up while the journal grows: the run fails naming the real cause, keeps the
// journal and the partial outputs, and the same command, once there is room, resumes from the
// batches on disk and ends byte-identical to an uninterrupted run. The disk is a tmpfs sized to
// the two outputs plus one page for the journal, mounted in a private mount namespace (needs
// root or user namespaces; skipped where neither is there).
TEST(TrustCli, AFullDiskKeepsTheJournalAndTheNextRunResumes) {
  const std::string dir = kDir + "/full_disk";
  fs::remove_all(dir);
  fs::create_directories(dir + "/mnt");
  const std::string tile = dir + "/grid_7.05_8.05";
  ASSERT_EQ(
      run_cli("synth -o " + tile + " --size 64x64 --s2-steps 12 --s1-steps 4/4 --seed 2").exit_code,
      0);
  const std::string infer = std::string(TESSERA_BIN) + " infer " + tile + " -m " + small_model() +
                            " --layout 1x1 -b 1 -o ";
  ASSERT_EQ(std::system((infer + dir + "/reference >/dev/null 2>&1").c_str()), 0);
  const auto pages = [](int64_t bytes) { return (bytes + 4095) / 4096; };
  const int64_t size = 4096 * (pages(128 + 64 * 64 * 128) + pages(128 + 64 * 64 * 4) + 1);
  const std::string mnt = dir + "/mnt", out = mnt + "/out";
  const std::string script = "mount -t tmpfs -o size=" + std::to_string(size) + " tessera-test " +
                             mnt + " || exit 77\n" + infer + out + " >" + dir + "/first.out 2>" +
                             dir + "/first.err\n" + "echo $? >" + dir + "/first.rc\nls " + out +
                             " >" + dir + "/left\nmount -o remount,size=4m " + mnt + "\n" + infer +
                             out + " --summary " + dir + "/second.json >/dev/null 2>" + dir +
                             "/second.err || exit 1\ncp " + out + "/*.npy " + dir + "/\n";
  std::ofstream(dir + "/run.sh") << script;
  const int status = std::system(("unshare -m sh " + dir + "/run.sh").c_str());
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) GTEST_SKIP() << "cannot mount a tmpfs here";
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << slurp(dir + "/second.err");
  EXPECT_EQ(slurp(dir + "/first.rc"), "1\n");
  // The last line (a slow machine prints progress lines before it).
  const std::string first_err = slurp(dir + "/first.err");
  const size_t line = first_err.rfind('\n', first_err.size() - 2);
  EXPECT_EQ(line == std::string::npos ? first_err : first_err.substr(line + 1),
            "tessera: " + out +
                "/grid_7.05_8.05.journal: cannot write journal: No space left on "
                "device\n");
  EXPECT_EQ(slurp(dir + "/left"),
            "grid_7.05_8.05.journal\ngrid_7.05_8.05.lock\ngrid_7.05_8.05.npy.partial\n"
            "grid_7.05_8.05_scales.npy.partial\n");
  const auto summary = nlohmann::json::parse(slurp(dir + "/second.json"));
  EXPECT_GT(summary["tiles"][0]["batches_resumed"].get<int64_t>(), 900) << summary.dump();
  for (const std::string name : {"grid_7.05_8.05.npy", "grid_7.05_8.05_scales.npy"}) {
    EXPECT_EQ(slurp(dir + "/" + name), slurp(dir + "/reference/" + name)) << name;
  }
}

}  // namespace
