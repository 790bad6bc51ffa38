// `tessera infer` never damages what a user has: nothing planted in the output directory is
// written through, and bad values or lists end with one line naming the file.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

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

// The first line of a run with the default engine on this machine.
const std::string kEngineLine =
    "tessera: engine: native fp32 (default: fastest fp32 engine here)\n";

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
    EXPECT_EQ(r.err, kEngineLine + "tessera: " + out + "/" + name +
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
  EXPECT_EQ(r.err, kEngineLine + "tessera: " + tile + ": pixel 1,2: the model (" + small_model() +
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

// Writes float32 inputs of shape [b, t, f] with numpy: values from a fixed seed, then
// `poison` (Python on the array `a`, e.g. "a[1, 2, 3] = np.nan").
void write_input(const std::string& path, int b, int t, int f, const std::string& poison = "") {
  const std::string script = "import numpy as np; a = np.random.default_rng(3).random((" +
                             std::to_string(b) + ", " + std::to_string(t) + ", " +
                             std::to_string(f) + "), dtype=np.float32); " +
                             (poison.empty() ? "" : poison + "; ") + "np.save('" + path + "', a)";
  ASSERT_EQ(std::system((std::string(TESSERA_PYTHON3) + " -c \"" + script + "\"").c_str()), 0);
}

// run-model of a model with symbolic steps sets the steps on the engine: it writes no temporary
// model (none appears in its TMPDIR), and a link planted at the name the temporary model once
// had (TMPDIR/tessera-run-model-<pid>.onnx.tmp.<pid>) is neither followed nor removed.
TEST(TrustCli, RunModelWritesNoTemporaryModel) {
  const std::string dir = kDir + "/run_model_tmp";
  fs::remove_all(dir);
  fs::create_directories(dir + "/tmp");
  const std::string model = dir + "/v2.onnx";
  ASSERT_EQ(run_cli("make-model --arch v2 --latent 4 --layers 1 --heads 2 --ffn 16 -o " + model)
                .exit_code,
            0);
  write_input(dir + "/s2.npy", 3, 5, 11);
  write_input(dir + "/s1.npy", 3, 2, 3);
  std::ofstream(dir + "/precious.txt") << "precious";
  // exec keeps the shell's pid, so $$ is the pid run-model has.
  const std::string command =
      "cd '" + dir + "' && TMPDIR='" + dir +
      "/tmp' sh -c 'ln -s ../precious.txt \"$TMPDIR/tessera-run-model-$$.onnx.tmp.$$\" && exec " +
      TESSERA_BIN + " run-model -m v2.onnx --s2 s2.npy --s1 s1.npy -o out.npy' 2>" + dir +
      "/err.txt";
  const int status = std::system(command.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << slurp(dir + "/err.txt");
  EXPECT_EQ(slurp(dir + "/precious.txt"), "precious");
  // Libraries leave logs of their own there (mat-debug-<pid>.log); tessera leaves nothing.
  std::vector<std::string> left;
  for (const auto& entry : fs::directory_iterator(dir + "/tmp")) {
    const std::string name = entry.path().filename().string();
    if (name.find("tessera") != std::string::npos || name.find(".onnx") != std::string::npos)
      left.push_back(name);
  }
  ASSERT_EQ(left.size(), 1u);  // the planted link, and nothing else
  EXPECT_TRUE(fs::is_symlink(dir + "/tmp/" + left[0]));
  EXPECT_EQ(left[0].rfind("tessera-run-model-", 0), 0u) << left[0];
  EXPECT_EQ(fs::file_size(dir + "/out.npy"), 128u + 3 * 128 * 4);  // header + 3 x 128 floats
}

// A NaN or infinite input is one line naming the file and the element, on both engines, and
// no output is written (ORT gave NaN outputs, the native engine finite numbers).
TEST(TrustCli, RunModelRefusesNonFiniteInputs) {
  const std::string dir = kDir + "/run_model_nan";
  fs::remove_all(dir);
  fs::create_directories(dir);
  write_input(dir + "/s2.npy", 2, 40, 11, "a[1, 2, 3] = np.nan");
  write_input(dir + "/s1.npy", 2, 40, 3);
  write_input(dir + "/s2_ok.npy", 2, 40, 11);
  write_input(dir + "/s1_inf.npy", 2, 40, 3, "a[0, 5, 2] = -np.inf");
  for (const std::string engine : {"ort", "native"}) {
    const std::string run = "run-model --engine " + engine + " -m " + small_model() + " -o " + dir +
                            "/out.npy --s2 " + dir;
    auto r = run_cli(run + "/s2.npy --s1 " + dir + "/s1.npy");
    EXPECT_EQ(r.exit_code, 1) << engine;
    EXPECT_EQ(r.err,
              "tessera: " + dir + "/s2.npy: element [1, 2, 3] is NaN; inputs must be finite\n")
        << engine;
    r = run_cli(run + "/s2_ok.npy --s1 " + dir + "/s1_inf.npy");
    EXPECT_EQ(r.exit_code, 1) << engine;
    EXPECT_EQ(r.err,
              "tessera: " + dir + "/s1_inf.npy: element [0, 5, 2] is -Inf; inputs must be finite\n")
        << engine;
    EXPECT_FALSE(fs::exists(dir + "/out.npy")) << engine;
  }
}

// One tile's outputs never land on another listed tile's inputs: a flat tile tB holds
// masks.npy, which is where a tile named "masks" writes its embeddings with -o tB. Refused
// before any tile runs, naming both tiles; tB is left as it was.
TEST(TrustCli, OneTilesOutputNeverReplacesAnotherTilesInput) {
  const std::string masks = make_tile("masks");
  const std::string flat = kDir + "/flat/tB";
  fs::remove_all(flat);
  ASSERT_EQ(run_cli("synth -o " + flat + " --size 6x5 --s2-steps 12 --s1-steps 4/4 --layout flat")
                .exit_code,
            0);
  const std::string before = slurp(flat + "/masks.npy");
  const auto r = run_cli("infer " + masks + " " + flat + " -o " + flat + " -m " + small_model() +
                         " --layout 1x1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + masks + ": the output " + flat + "/masks.npy would replace tile " +
                       flat + "'s input file\n");
  EXPECT_EQ(slurp(flat + "/masks.npy"), before);
  EXPECT_FALSE(fs::exists(flat + "/masks_scales.npy"));
  EXPECT_FALSE(fs::exists(flat + "/tB.npy"));  // no tile ran
}

// A float16 model (convert-model) computes in float16 whatever precision is asked for: on the
// CPU it is refused with one line, never run and recorded as fp32.
TEST(TrustCli, AFloat16ModelIsRefusedOnTheCpu) {
  const std::string fp16 = kDir + "/small_fp16.onnx";
  fs::remove(fp16);
  ASSERT_EQ(run_cli("convert-model -m " + small_model() + " -o " + fp16).exit_code, 0);
  const std::string tile = make_tile("grid_9.05_9.05");
  const std::string out = kDir + "/out_fp16";
  fs::remove_all(out);
  auto r = run_cli("infer " + tile + " -o " + out + " -m " + fp16 + " --layout 1x1 --summary " +
                   kDir + "/fp16_summary.json --force --engine ort");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: engine: ort fp32 (--engine)\ntessera: " + fp16 +
                       ": a float16 model (as tessera convert-model writes); ort fp32 on cpu needs "
                       "the float32 model\n");
  EXPECT_FALSE(fs::exists(out + "/grid_9.05_9.05.npy"));
  write_input(kDir + "/fp16_s2.npy", 1, 40, 11);
  write_input(kDir + "/fp16_s1.npy", 1, 40, 3);
  r = run_cli("run-model --engine native -m " + fp16 + " --s2 " + kDir + "/fp16_s2.npy --s1 " +
              kDir + "/fp16_s1.npy -o " + kDir + "/fp16_out.npy");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + fp16 +
                       ": a float16 model (as tessera convert-model writes); native fp32 on cpu "
                       "needs the float32 model\n");
}

}  // namespace
