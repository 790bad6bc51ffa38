// `tessera topo` as a user runs it: the shipped EPYC description as JSON and Markdown, a plan,
// a synthetic machine exported to XML and read back, and bad flags.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "run_cli.h"
#include "test_support.h"

namespace {

using tessera::testing::run_cli;

const std::string kEpyc =
    std::string("--topology '") + TESSERA_SOURCE_DIR + "/data/topologies/epyc-9965-2s.xml'";

TEST(TopoCli, EpycJsonHasTheDistanceMatrix) {
  const auto r = run_cli("topo --format json " + kEpyc);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["cpu_model"], "AMD EPYC 9965 192-Core Processor");
  EXPECT_EQ(j["packages"], 2);
  EXPECT_EQ(j["cores"], 384);
  EXPECT_EQ(j["pus"], 768);
  EXPECT_EQ(j["l3_domains"], 24);
  EXPECT_EQ(j["memory_bytes"].get<std::uint64_t>(), 24ull * 128 * 1024 * 1024 * 1024);
  ASSERT_EQ(j["numa_nodes"].size(), 24u);
  EXPECT_EQ(j["numa_nodes"][13]["package"], 1);
  EXPECT_EQ(j["numa_nodes"][13]["cores"], 16);
  EXPECT_EQ(j["numa_nodes"][13]["cpus"][0], 208);
  EXPECT_EQ(j["numa_nodes"][13]["cpus"][16], 592);
  const auto& d = j["distances"];
  ASSERT_EQ(d.size(), 24u);
  for (int a = 0; a < 24; ++a) {
    ASSERT_EQ(d[a].size(), 24u);
    for (int b = 0; b < 24; ++b) {
      EXPECT_EQ(d[a][b], a == b ? 10 : (a / 12 == b / 12 ? 11 : 32)) << a << "," << b;
    }
  }
  EXPECT_FALSE(j.contains("plan"));
}

TEST(TopoCli, EpycPlanAsJson) {
  const auto r = run_cli("topo --format json --plan numa:2 --membind interleave " + kEpyc);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto plan = nlohmann::json::parse(r.out)["plan"];
  EXPECT_EQ(plan["layout"], "numa:2");
  EXPECT_EQ(plan["membind"], "interleave");
  ASSERT_EQ(plan["workers"].size(), 12u);
  for (const auto& w : plan["workers"]) {
    ASSERT_EQ(w["memory_nodes"].size(), 2u);
    EXPECT_EQ(w["memory_nodes"][0].get<int>() / 12, w["memory_nodes"][1].get<int>() / 12);
    EXPECT_EQ(w["threads"], 32);
    EXPECT_EQ(w["cpus"].size(), 32u);
  }
  const auto& first = plan["workers"][0];
  EXPECT_EQ(first["memory_nodes"], nlohmann::json::parse("[0, 1]"));
  std::string affinities;  // cpus 1..31 for the pool threads, 1-based
  for (int id = 2; id <= 32; ++id) {
    if (id > 2) affinities += ';';
    affinities += std::to_string(id);
  }
  EXPECT_EQ(first["ort_thread_affinities"], affinities);
}

TEST(TopoCli, EpycMarkdown) {
  const auto r = run_cli("topo --plan 2x4 " + kEpyc);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| CPU model  | AMD EPYC 9965 192-Core Processor |"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("| NUMA nodes | 24 "), std::string::npos);
  EXPECT_NE(r.out.find("|   23 |       1 |    16 | 368-383,752-767 |      128.0 |"),
            std::string::npos);
  EXPECT_NE(r.out.find("node   0   1   2"), std::string::npos);
  EXPECT_NE(r.out.find(" 12:  32  32"), std::string::npos);
  EXPECT_NE(r.out.find("## Plan: 2x4 (2 workers, memory local)"), std::string::npos);
  EXPECT_NE(r.out.find("|      1 | 4-7  | 0            |       4 |"), std::string::npos) << r.out;
}

TEST(TopoCli, SyntheticWithDistancesExportsAndReadsBack) {
  const std::string xml = std::string(TESSERA_TEST_TMP) + "/topo_cli_synthetic.xml";
  std::remove(xml.c_str());
  auto r = run_cli(
      "topo --format json --synthetic 'pack:2 numa:2 core:4 pu:1' --distances 10,12,20 "
      "--cpu-model 'Test CPU' --export '" +
      xml + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli("topo --format json --topology '" + xml + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["cpu_model"], "Test CPU");
  EXPECT_EQ(j["cores"], 16);
  EXPECT_EQ(j["distances"],
            nlohmann::json::parse("[[10,12,20,20],[12,10,20,20],[20,20,10,12],[20,20,12,10]]"));
  // An existing file is replaced only with --force; a bad option writes nothing.
  const std::string again = "topo --synthetic 'pack:1 core:2 pu:1' --export '" + xml + "'";
  r = run_cli(again);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + xml + ": already exists (use --force to overwrite)\n");
  r = run_cli(again + " --force --plan bogus");
  EXPECT_EQ(r.exit_code, 2);
  r = run_cli("topo --format json --topology '" + xml + "'");
  EXPECT_EQ(nlohmann::json::parse(r.out)["cores"], 16) << "the bad run replaced the export";
  r = run_cli(again + " --force");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli("topo --format json --topology '" + xml + "'");
  EXPECT_EQ(nlohmann::json::parse(r.out)["cores"], 2);
  std::remove(xml.c_str());
}

TEST(TopoCli, ThisMachine) {
  const auto r = run_cli("topo --format json --plan numa");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_GE(j["cores"].get<int>(), 1);
  EXPECT_EQ(j["distances"].size(), j["numa_nodes"].size());
  int threads = 0;
  for (const auto& w : j["plan"]["workers"]) threads += w["threads"].get<int>();
  EXPECT_EQ(threads, j["cores"].get<int>());
}

TEST(TopoCli, OutputIsAPathAndTheOldFormatSpellingIsDeprecated) {
  const tessera::testing::ProcessTestDir dir("topo_cli_output");
  std::filesystem::create_directories(dir.path());
  // A path: the extension picks the format; a format name written as a path is a file.
  const std::string json = dir.path() + "/epyc.json", named = dir.path() + "/json";
  auto r = run_cli("topo -o '" + json + "' " + kEpyc);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
  std::ifstream in(json);
  EXPECT_EQ(nlohmann::json::parse(in)["packages"], 2);
  r = run_cli("topo --output '" + named + "' " + kEpyc);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_TRUE(std::filesystem::exists(named));
  // The old meaning of -o (a format) still works, with one line on stderr.
  r = run_cli("topo -o json " + kEpyc);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "tessera topo: '-o json' is deprecated, use '--format json'\n");
  EXPECT_EQ(nlohmann::json::parse(r.out)["packages"], 2);
  r = run_cli("topo -o csv " + kEpyc);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "tessera topo: '-o csv' is deprecated, use '--format csv'\n"
            "tessera: topo: output format csv is not supported (use md or json)\n");
  // Never the topology file it reads.
  const std::string xml = dir.path() + "/machine.xml";
  r = run_cli("topo --synthetic 'pack:1 numa:1 core:2 pu:1' --export '" + xml + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli("topo --topology '" + xml + "' -o '" + xml + "'");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + xml + ": is also an input of this command\n");
}

TEST(TopoCli, BadFlags) {
  auto r = run_cli("topo --plan 3y " + kEpyc);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "tessera: unknown layout '3y' (expected single, single:T, numa, numa:K, l3, core or "
            "JxT)\n");
  r = run_cli("topo --membind near");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: unknown memory policy 'near' (expected local or interleave)\n");
  r = run_cli("topo --format csv");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: topo: output format csv is not supported (use md or json)\n");
  r = run_cli("topo --topology /nonexistent/machine.xml");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: /nonexistent/machine.xml: cannot read topology XML file\n");
  r = run_cli("topo --synthetic 'pack:2 numa:2 core:1 pu:1' --distances 10,20");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "tessera: distances '10,20' are not a 4x4 matrix (the topology has 4 NUMA nodes)\n");
  r = run_cli("topo --synthetic 'pack:1 core:1 pu:1' --topology /tmp/x.xml");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--topology excludes --synthetic"), std::string::npos) << r.err;
}

TEST(TopoCli, BadOrtLogLevelIsAUsageErrorOfEveryCommand) {
  ::setenv("TESSERA_ORT_LOG", "loud", 1);
  const auto r = run_cli("topo " + kEpyc);
  const auto help = run_cli("topo --help");
  ::unsetenv("TESSERA_ORT_LOG");
  EXPECT_EQ(help.exit_code, 0) << help.err;
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "tessera: TESSERA_ORT_LOG: unknown log level 'loud' (expected verbose, info, warning, "
            "error or fatal)\n");
  EXPECT_EQ(r.out, "");
}

}  // namespace

namespace {

// The words of /proc/cpuinfo's first "flags" line, read here independently of tessera.
std::set<std::string> kernel_cpu_flags() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::set<std::string> flags;
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string word; words >> word;) flags.insert(word);
    break;
  }
  return flags;
}

// The features that decide which precisions run are shown for this machine, and only for it.
TEST(TopoCli, ThisMachineShowsTheCpuFeaturesThatDecidePrecisions) {
  const std::set<std::string> flags = kernel_cpu_flags();
  if (flags.empty()) GTEST_SKIP() << "no flags in /proc/cpuinfo";
  const auto r = run_cli("topo --format json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto features = nlohmann::json::parse(r.out)["cpu_features"];
  const std::pair<const char*, const char*> expected[] = {{"avx512f", "AVX-512"},
                                                          {"avx512_vnni", "AVX512_VNNI"},
                                                          {"avx512_bf16", "AVX512_BF16"},
                                                          {"amx_bf16", "AMX-BF16"},
                                                          {"amx_int8", "AMX-INT8"}};
  for (const auto& [flag, name] : expected) {
    const bool shown = std::find(features.begin(), features.end(), name) != features.end();
    EXPECT_EQ(shown, flags.count(flag) > 0) << name;
  }
  const auto table = run_cli("topo");
  if (flags.count("avx512_bf16") > 0) {
    EXPECT_NE(table.out.find("AVX512_BF16 (bf16)"), std::string::npos) << table.out;
  }
  // A described machine is not this one: its features are unknown, not this CPU's.
  const auto epyc = run_cli("topo --format json " + kEpyc);
  EXPECT_TRUE(nlohmann::json::parse(epyc.out)["cpu_features"].empty());
}

}  // namespace
