// Every file a command writes is checked like an output: never one of its inputs (not even with
// --force), and an existing file only with --force. One case per command; each refusal leaves
// the file as it was and comes before any work.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "run_cli.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using tessera::testing::run_cli;
using tessera::testing::slurp;

const tessera::testing::ProcessTestDir kTestDir("existing_outputs_cli");
const std::string& kDir = kTestDir.path();

// A file of the user's at kDir/<name>.
std::string users_file(const std::string& name) {
  fs::create_directories(kDir);
  const std::string path = kDir + "/" + name;
  std::ofstream(path) << "the user's";
  return path;
}

const std::string& small_model() {
  static const std::string path = tessera::testing::make_small_model(kDir);
  return path;
}

// `command` + " -o <file>" (or `flag` instead of -o) is refused with `message` after <file>,
// exit code `code`, and leaves the file as it was.
void expect_refused(const std::string& command, const std::string& file, const std::string& message,
                    int code = 1, const std::string& flag = "-o") {
  const std::string before = slurp(file);
  const auto r = run_cli(command + " " + flag + " " + file);
  EXPECT_EQ(r.exit_code, code) << command;
  EXPECT_EQ(r.err, "tessera: " + file + message + "\n") << command;
  EXPECT_EQ(slurp(file), before) << command;
}

const std::string kExists = ": already exists (use --force to overwrite)";
const std::string kInput = ": is also an input of this command";

TEST(ExistingOutputsCli, BenchTableNeedsForce) {
  const std::string args = "bench -m " + small_model() + " -t 1 -b 4 --batches 1 -r 1";
  const std::string table = users_file("bench.md");
  expect_refused(args, table, kExists);
  const auto r = run_cli(args + " --force -o " + table);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(slurp(table).find("| device"), std::string::npos);
}

TEST(ExistingOutputsCli, ProjectTableNeedsForce) {
  const std::string table = users_file("project.md");
  expect_refused("project --ms-per-pixel 0.5", table, kExists);
  const auto r = run_cli("project --ms-per-pixel 0.5 --force -o " + table);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(slurp(table).find("| Configuration"), std::string::npos);
}

TEST(ExistingOutputsCli, CompareTableNeedsForceAndNeverReplacesAFileOfARun) {
  const std::string a = kDir + "/run_a", b = kDir + "/run_b";
  fs::create_directories(a);
  fs::create_directories(b);
  const std::string table = users_file("compare.md");
  expect_refused("compare " + a + " " + b, table, kExists);
  // A file inside one of the runs compared is an input, even with --force.
  std::ofstream(a + "/grid_1_1.npy") << "embeddings";
  expect_refused("compare --force " + a + " " + b, a + "/grid_1_1.npy", kInput);
}

TEST(ExistingOutputsCli, TopoTableAndExportNeedForceAndAreNotOneFile) {
  const std::string args = "topo --synthetic 'pack:1 numa:1 core:2 pu:1'";
  const std::string table = users_file("topo.md");
  expect_refused(args, table, kExists);
  const std::string xml = users_file("topo.xml");
  expect_refused(args, xml, kExists, 1, "--export");
  // The table would replace the export written just before it.
  const std::string both = kDir + "/both.xml";
  auto r = run_cli(args + " --export " + both + " -o " + both);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: topo: " + both + " is both the --export file and the -o file\n");
  EXPECT_FALSE(fs::exists(both));
  r = run_cli(args + " --force -o " + table + " --export " + xml);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(slurp(table).find("NUMA"), std::string::npos) << slurp(table);
  EXPECT_NE(slurp(xml).find("<topology"), std::string::npos);
}

TEST(ExistingOutputsCli, TuneProfileNeedsForceAndNeverReplacesTheModel) {
  const std::string args = "tune -m " + small_model() + " --budget 1s -b 4 --layouts single";
  const std::string profile = users_file("profile.json");
  expect_refused(args, profile, kExists);
  expect_refused(args + " --force", small_model(), kInput);
}

TEST(ExistingOutputsCli, ReportNeedsForceAndNeverReplacesABenchFile) {
  const std::string bench = kDir + "/bench.json";
  fs::create_directories(kDir);
  auto r = run_cli("bench -m " + small_model() + " -t 1 -b 4 --batches 1 -r 1 --force -o " + bench);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string report = users_file("report.md");
  expect_refused("report --from " + bench, report, kExists);
  expect_refused("report --force --from " + bench, bench, kInput);
  r = run_cli("report --force --from " + bench + " -o " + report);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(slurp(report).find("|"), std::string::npos);
}

}  // namespace
