// `tessera project` as a user runs it: -o is the file the table goes to, --format its format,
// and the old `-o FORMAT` spelling still works with one deprecation line.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "run_cli.h"
#include "test_support.h"

namespace {

using tessera::testing::run_cli;

const tessera::testing::ProcessTestDir kTestDir("project_cli");
const std::string& kDir = kTestDir.path();

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(ProjectCli, FormatToStdoutOrAFile) {
  std::filesystem::create_directories(kDir);
  auto r = run_cli("project --ms-per-pixel 0.5 --format json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const auto rows = nlohmann::json::parse(r.out);
  ASSERT_EQ(rows.size(), 1u);
  const std::string printed = r.out;
  // The same table in a file: its extension picks the format; nothing on stdout.
  r = run_cli("project --ms-per-pixel 0.5 -o " + kDir + "/p.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(slurp(kDir + "/p.json"), printed);
  r = run_cli("project --ms-per-pixel 0.5 --output " + kDir + "/p.txt");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(slurp(kDir + "/p.txt").find("| Configuration"), std::string::npos);
  r = run_cli("project --ms-per-pixel 0.5 --format csv -o " + kDir + "/p.md");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(slurp(kDir + "/p.md").find('|'), std::string::npos);
}

TEST(ProjectCli, OutputAsAFormatIsDeprecatedButStillWorks) {
  auto r = run_cli("project --ms-per-pixel 0.5 -o json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "tessera project: '-o json' is deprecated, use '--format json'\n");
  EXPECT_EQ(nlohmann::json::parse(r.out).size(), 1u);
  // An unknown format is the usage error it always was.
  r = run_cli("project --ms-per-pixel 0.5 -o jsonl");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "tessera: project: jsonl is not a format of tessera; use --format json (one JSON "
            "document with every row)\n");
  r = run_cli("project --ms-per-pixel 0.5 --format yaml");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: unknown output format 'yaml' (expected md, csv or json)\n");
}

TEST(ProjectCli, NeverWritesOverItsInput) {
  std::filesystem::create_directories(kDir);
  const std::string bench = kDir + "/bench.json";
  std::ofstream(bench) << R"({"rows": []})";
  const std::string before = slurp(bench);
  const auto r = run_cli("project --ms-per-pixel 0.5 --from " + bench + " -o " + bench);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + bench + ": is also an input of this command\n");
  EXPECT_EQ(slurp(bench), before);
}

}  // namespace
