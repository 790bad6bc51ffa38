// make-model --arch and import as a user runs them: option mistakes are one-line usage errors
// that write nothing; import refuses a missing checkpoint and an existing output before reading.

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "run_cli.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using testing::run_cli;

std::string dir() {
  static const std::string path = [] {
    const fs::path p = fs::path(TESSERA_TEST_TMP) / ("family_cli_" + std::to_string(::getpid()));
    fs::remove_all(p);
    fs::create_directories(p);
    return p.string();
  }();
  return path;
}

int lines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

TEST(MakeModelArchCli, OptionMistakesAreOneLineUsageErrorsAndWriteNothing) {
  const std::string out = dir() + "/m.onnx";
  const std::pair<std::string, std::string> cases[] = {
      {"--arch v3", "unknown architecture 'v3' (v1.0-early, v1.0, v1.1, v2)"},
      {"--arch v2 --d-model 64", "--arch v2 takes --latent (d_model = 4 x latent), not --d-model"},
      {"--arch v1.1 --s2-steps 8", "--s2-steps and --s1-steps apply to v1.0 only"},
      {"--arch v1.0 --qk-norm", "--qk-norm and --stats do not apply to --arch v1.0"},
      {"--arch v1.1 --stats gcp", "--stats must be mpc or aws, not 'gcp'"},
      {"--arch v1.0-early --stats mpc", "--stats applies to --arch v1.1 only"},
      {"--arch v1.1 --qk-norm", "--qk-norm applies to --arch v2 only"},
  };
  for (const auto& [args, message] : cases) {
    const auto r = run_cli("make-model -o " + out + " " + args);
    EXPECT_EQ(r.exit_code, 2) << args;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << ": " << r.err;
    EXPECT_EQ(lines(r.err), 1) << r.err;
    EXPECT_FALSE(fs::exists(out)) << args;
  }
}

TEST(MakeModelArchCli, WritesEachArchitectureAndNamesIt) {
  const std::string out = dir() + "/v2.onnx";
  const auto r = run_cli("make-model --arch v2 --latent 8 --layers 1 --heads 2 --ffn 16 -o " + out);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("wrote " + out + ": v2, ", 0), 0u) << r.out;
  const auto again = run_cli("make-model --arch v2 --latent 8 -o " + out);
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("already exists (use --force to overwrite)"), std::string::npos);
  const auto no_path = run_cli("make-model --arch v1.1 --stats mpc");
  EXPECT_EQ(no_path.exit_code, 2);
  EXPECT_NE(no_path.err.find("needs -o PATH"), std::string::npos) << no_path.err;
  // A v1.1 model without its statistics set could never be run: refused before it is written.
  const std::string v11 = dir() + "/v1_1.onnx";
  const auto no_stats = run_cli("make-model --arch v1.1 -o " + v11);
  EXPECT_EQ(no_stats.exit_code, 2);
  EXPECT_EQ(no_stats.err,
            "tessera: make-model: --arch v1.1 needs --stats mpc or aws (the statistics set its "
            "tiles are standardised with)\n");
  EXPECT_FALSE(fs::exists(v11));
}

TEST(ImportCli, RefusesAMissingCheckpointAndAnExistingOutputBeforeReading) {
  const std::string out = dir() + "/imported.onnx";
  auto r = run_cli("import " + dir() + "/none.pt -o " + out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + dir() + "/none.pt: no such file\n");
  const std::string ckpt = dir() + "/some.pt";
  std::ofstream(ckpt) << "not read";
  std::ofstream(out) << "keep";
  r = run_cli("import " + ckpt + " -o " + out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + out + ": already exists (use --force to overwrite)\n");
  r = run_cli("import " + ckpt + " -o " + ckpt + " --force");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + ckpt + ": is also an input of this command\n");
  std::ifstream in(out);
  std::string kept;
  in >> kept;
  EXPECT_EQ(kept, "keep");
}

TEST(ImportCli, RefusesHeadsBelowOneAsAUsageError) {
  const std::string ckpt = dir() + "/heads.pt";
  std::ofstream(ckpt) << "not read";
  const std::string out = dir() + "/heads.onnx";
  for (const std::string value : {"0", "-1"}) {
    const auto r = run_cli("import " + ckpt + " -o " + out + " --heads " + value);
    EXPECT_EQ(r.exit_code, 2) << value;
    EXPECT_EQ(r.err, "tessera: --heads: need a whole number from 1 to 4096, got '" + value +
                         "' (see tessera import --help)\n");
    EXPECT_FALSE(fs::exists(out));
  }
}

TEST(InferCli, RefusesDimZeroAsAUsageError) {
  const auto r = run_cli("infer " + dir() + "/no-tile -m " + dir() + "/none.onnx -o " + dir() +
                         "/emb --dim 0");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "tessera: --dim: --dim must be 16, 32, 64 or 128, not 0 (leave --dim out for all) "
            "(see tessera infer --help)\n");
  EXPECT_FALSE(fs::exists(dir() + "/emb"));
}

}  // namespace
}  // namespace tessera
