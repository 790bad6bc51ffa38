// Topology discovery: the shipped EPYC 9965 description, synthetic topologies, distances,
// errors, and this machine against the kernel's own /sys view.

#include "tessera/topology/topology.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "sys_cpulist.h"
#include "tessera/common/error.h"
#include "tessera/topology/placement.h"

namespace tessera {
namespace {

const std::string kEpycXml = std::string(TESSERA_SOURCE_DIR) + "/data/topologies/epyc-9965-2s.xml";
const std::string kEpycSynthetic =
    "pack:2 numa:12(memory=128GiB) l3:1(size=32MiB) core:16 pu:2(indexes=2*384:1*2)";
constexpr std::uint64_t kGiB = 1024ull * 1024 * 1024;

using testing::parse_sys_list;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

template <typename F>
void expect_error(F&& f, const std::string& message) {
  try {
    f();
    FAIL() << "expected an error: " << message;
  } catch (const Error& e) {
    EXPECT_EQ(e.what(), message);
  }
}

TEST(Topology, ShippedEpycDescription) {
  const MachineInfo m = Topology::from_xml(kEpycXml).info();
  EXPECT_EQ(m.cpu_model, "AMD EPYC 9965 192-Core Processor");
  EXPECT_EQ(m.packages, 2);
  EXPECT_EQ(m.cores, 384);
  EXPECT_EQ(m.pus, 768);
  ASSERT_EQ(m.numa_nodes.size(), 24u);
  EXPECT_EQ(m.l3_domains.size(), 24u);
  EXPECT_EQ(m.memory_bytes(), 24 * 128 * kGiB);
  EXPECT_TRUE(m.gpus.empty());
  for (int n = 0; n < 24; ++n) {
    const NumaNodeInfo& node = m.numa_nodes[n];
    EXPECT_EQ(node.os_index, n);
    EXPECT_EQ(node.package, n / 12);
    EXPECT_EQ(node.cores, 16);
    EXPECT_EQ(node.memory_bytes, 128 * kGiB);
    std::vector<int> cpus;  // Linux numbering: core c has PUs c and c + 384
    for (int c = 16 * n; c < 16 * n + 16; ++c) cpus.push_back(c);
    for (int c = 16 * n; c < 16 * n + 16; ++c) cpus.push_back(c + 384);
    EXPECT_EQ(node.cpus, cpus) << "node " << n;
    EXPECT_EQ(m.l3_domains[n].cpus, cpus) << "L3 " << n;
  }
  for (int c = 0; c < 384; ++c) {
    const CoreInfo& core = m.core_list[c];
    EXPECT_EQ(core.pus, (std::vector<int>{c, c + 384}));
    EXPECT_EQ(core.node, c / 16);
    EXPECT_EQ(core.l3, c / 16);
    EXPECT_EQ(core.package, c / 192);
  }
  ASSERT_EQ(m.distances.size(), 24u);
  for (int i = 0; i < 24; ++i) {
    ASSERT_EQ(m.distances[i].size(), 24u);
    for (int j = 0; j < 24; ++j) {
      const int expected = i == j ? 10 : (i / 12 == j / 12 ? 11 : 32);
      EXPECT_EQ(m.distances[i][j], expected) << i << "," << j;
    }
  }
}

void expect_same_machine(const MachineInfo& a, const MachineInfo& b) {
  EXPECT_EQ(a.cpu_model, b.cpu_model);
  EXPECT_EQ(a.packages, b.packages);
  EXPECT_EQ(a.cores, b.cores);
  EXPECT_EQ(a.pus, b.pus);
  EXPECT_EQ(a.distances, b.distances);
  EXPECT_EQ(a.gpus, b.gpus);
  ASSERT_EQ(a.numa_nodes.size(), b.numa_nodes.size());
  for (std::size_t i = 0; i < a.numa_nodes.size(); ++i) {
    EXPECT_EQ(a.numa_nodes[i].os_index, b.numa_nodes[i].os_index);
    EXPECT_EQ(a.numa_nodes[i].package, b.numa_nodes[i].package);
    EXPECT_EQ(a.numa_nodes[i].cpus, b.numa_nodes[i].cpus);
    EXPECT_EQ(a.numa_nodes[i].cores, b.numa_nodes[i].cores);
    EXPECT_EQ(a.numa_nodes[i].memory_bytes, b.numa_nodes[i].memory_bytes);
  }
  ASSERT_EQ(a.l3_domains.size(), b.l3_domains.size());
  for (std::size_t i = 0; i < a.l3_domains.size(); ++i) {
    EXPECT_EQ(a.l3_domains[i].cpus, b.l3_domains[i].cpus);
  }
  ASSERT_EQ(a.core_list.size(), b.core_list.size());
  for (std::size_t i = 0; i < a.core_list.size(); ++i) {
    EXPECT_EQ(a.core_list[i].pus, b.core_list[i].pus);
    EXPECT_EQ(a.core_list[i].node, b.core_list[i].node);
  }
}

TEST(Topology, ShippedEpycXmlIsRegeneratedFromItsSyntheticDescription) {
  Topology synthetic = Topology::from_synthetic(kEpycSynthetic);
  synthetic.set_numa_distances(parse_distances("10,11,32", synthetic.info()));
  synthetic.set_cpu_model("AMD EPYC 9965 192-Core Processor");
  const std::string path = std::string(TESSERA_TEST_TMP) + "/epyc-regenerated.xml";
  { std::ofstream(path) << synthetic.xml(); }
  const MachineInfo shipped = Topology::from_xml(kEpycXml).info();
  expect_same_machine(Topology::from_xml(path).info(), shipped);
  expect_same_machine(synthetic.info(), shipped);
  std::filesystem::remove(path);
}

TEST(Topology, SyntheticDistances) {
  // Several nodes and no distances: unknown, not invented.
  EXPECT_TRUE(Topology::from_synthetic("pack:2 numa:2 core:2 pu:1").info().distances.empty());
  // One node: local distance only.
  EXPECT_EQ(Topology::from_synthetic("pack:1 numa:1 core:2 pu:1").info().distances,
            (std::vector<std::vector<int>>{{10}}));
  Topology t = Topology::from_synthetic("pack:1 numa:3 core:1 pu:1");
  const std::vector<std::vector<int>> matrix = {{10, 12, 14}, {12, 10, 16}, {14, 16, 10}};
  EXPECT_EQ(parse_distances("10,12,14; 12,10,16; 14,16,10", t.info()), matrix);
  t.set_numa_distances(matrix);
  EXPECT_EQ(t.info().distances, matrix);
  // Three numbers are always the local/same-package/cross-package rule.
  EXPECT_EQ(parse_distances("10,11,32", t.info()),
            (std::vector<std::vector<int>>{{10, 11, 11}, {11, 10, 11}, {11, 11, 10}}));
}

TEST(Topology, Errors) {
  const std::string missing = std::string(TESSERA_TEST_TMP) + "/no-such-topology.xml";
  expect_error([&] { Topology::from_xml(missing); }, missing + ": cannot read topology XML file");
  const std::string garbage = std::string(TESSERA_TEST_TMP) + "/garbage-topology.xml";
  std::ofstream(garbage) << "this is not xml\n";
  expect_error([&] { Topology::from_xml(garbage); },
               garbage + ": not a valid hwloc topology XML file");
  std::filesystem::remove(garbage);
  expect_error([] { Topology::from_synthetic("pack:two core:2"); },
               "invalid synthetic topology 'pack:two core:2' (expected hwloc syntax, e.g. "
               "'pack:2 numa:12 l3:1 core:16 pu:2')");

  Topology t = Topology::from_synthetic("pack:2 numa:1 core:1 pu:1");
  const MachineInfo m = t.info();
  expect_error([&] { parse_distances("10,abc,32", m); },
               "invalid distances '10,abc,32' (expected 'LOCAL,SAME_PACKAGE,CROSS_PACKAGE' or "
               "rows 'a,b;c,d')");
  expect_error([&] { parse_distances("10,20;20,10;1,1", m); },
               "distances '10,20;20,10;1,1' are not a 2x2 matrix (the topology has 2 NUMA nodes)");
  expect_error(
      [&] {
        t.set_numa_distances({{10, 20}});
      },
      "distance matrix has 1 rows, the topology has 2 NUMA nodes");
}

TEST(Topology, MovedFromOwnsNothing) {
  Topology a = Topology::from_synthetic("pack:1 numa:1 core:4 pu:1");
  Topology b = std::move(a);
  EXPECT_EQ(b.info().cores, 4);
  EXPECT_THROW(a.info(), std::logic_error);  // NOLINT(bugprone-use-after-move)
  a = Topology::from_synthetic("pack:1 numa:1 core:2 pu:1");
  EXPECT_EQ(a.info().cores, 2);
}

// This machine, as hwloc sees it, against what the kernel says in /sys.
TEST(Topology, ThisMachineMatchesSysfs) {
  const MachineInfo m = Topology::this_machine().info();

  cpu_set_t allowed;
  ASSERT_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  std::set<int> usable;  // online and allowed for this process
  for (int cpu : parse_sys_list(slurp("/sys/devices/system/cpu/online"))) {
    if (CPU_ISSET(cpu, &allowed)) usable.insert(cpu);
  }
  EXPECT_EQ(m.pus, static_cast<int>(usable.size()));

  std::set<std::pair<int, int>> cores;  // (package id, core id)
  for (int cpu : usable) {
    const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    cores.insert(
        {std::stoi(slurp(dir + "physical_package_id")), std::stoi(slurp(dir + "core_id"))});
  }
  EXPECT_EQ(m.cores, static_cast<int>(cores.size()));

  std::set<int> sys_nodes_with_cpus;
  for (const auto& entry : std::filesystem::directory_iterator("/sys/devices/system/node")) {
    const std::string name = entry.path().filename();
    if (name.rfind("node", 0) != 0 || name.size() == 4 || !isdigit(name[4])) continue;
    const int node = std::stoi(name.substr(4));
    std::set<int> node_usable;
    for (int cpu : parse_sys_list(slurp(entry.path().string() + "/cpulist"))) {
      if (usable.count(cpu)) node_usable.insert(cpu);
    }
    if (node_usable.empty()) continue;
    sys_nodes_with_cpus.insert(node);
    const int position = m.node_position(node);
    ASSERT_GE(position, 0) << "node " << node;
    const auto& cpus = m.numa_nodes[position].cpus;
    EXPECT_EQ(std::set<int>(cpus.begin(), cpus.end()), node_usable) << "node " << node;
  }
  std::set<int> hwloc_nodes_with_cpus;
  for (const auto& node : m.numa_nodes) {
    if (node.cores > 0) hwloc_nodes_with_cpus.insert(node.os_index);
  }
  EXPECT_EQ(hwloc_nodes_with_cpus, sys_nodes_with_cpus);
  ASSERT_EQ(m.distances.size(), m.numa_nodes.size());
  for (std::size_t i = 0; i < m.distances.size(); ++i) EXPECT_EQ(m.distances[i][i], 10);
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

// Started under `taskset -c N` (or mpirun --bind-to core), the process sees only its CPUs.
TEST(ThisMachine, HonoursTheProcessCpuBinding) {
  cpu_set_t original;
  ASSERT_EQ(sched_getaffinity(0, sizeof(original), &original), 0);
  int first = -1;
  for (int cpu = 0; cpu < CPU_SETSIZE && first < 0; ++cpu) {
    if (CPU_ISSET(cpu, &original)) first = cpu;
  }
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  const MachineInfo info = Topology::this_machine().info();
  ASSERT_EQ(sched_setaffinity(0, sizeof(original), &original), 0);
  EXPECT_EQ(info.pus, 1);
  EXPECT_EQ(info.cores, 1);
  ASSERT_EQ(info.core_list.size(), 1u);
  EXPECT_EQ(info.core_list[0].pus, std::vector<int>{first});
  EXPECT_EQ(plan_layout(info, "core", MemoryPolicy::kLocal).workers.size(), 1u);
}

}  // namespace
}  // namespace tessera
