// The placement planner on the shipped 2-socket EPYC 9965 (24 NUMA nodes x 16 cores, SMT 2),
// on small synthetic machines, and on this machine against /sys.

#include "tessera/topology/placement.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "sys_cpulist.h"
#include "tessera/common/error.h"

namespace tessera {
namespace {

const MachineInfo& epyc() {
  static const MachineInfo info =
      Topology::from_xml(std::string(TESSERA_SOURCE_DIR) + "/data/topologies/epyc-9965-2s.xml")
          .info();
  return info;
}

std::vector<int> iota(int first, int count) {
  std::vector<int> out;
  for (int i = 0; i < count; ++i) out.push_back(first + i);
  return out;
}

void expect_usage_error(const MachineInfo& m, const std::string& layout,
                        const std::string& message) {
  try {
    plan_layout(m, layout, MemoryPolicy::kLocal);
    FAIL() << "layout '" << layout << "' was accepted";
  } catch (const UsageError& e) {
    EXPECT_EQ(e.what(), message);
  }
}

TEST(Placement, SharesSplitTheCoresWithAllTheirPus) {
  // 2 cores of 2 PUs each (hwloc numbers the PUs 0-3 in core order).
  const MachineInfo smt = Topology::from_synthetic("pack:1 numa:1 core:2 pu:2").info();
  EXPECT_EQ(cpus_of_share(smt, 0, 2), (std::vector<int>{0, 1}));
  EXPECT_EQ(cpus_of_share(smt, 1, 2), (std::vector<int>{2, 3}));
  EXPECT_EQ(cpus_of_share(smt, 0, 1), (std::vector<int>{0, 1, 2, 3}));
  // 384 cores of 2 PUs (siblings numbered 384 above) in 3 shares of 128 cores.
  std::vector<int> last = iota(256, 128), siblings = iota(640, 128);
  last.insert(last.end(), siblings.begin(), siblings.end());
  EXPECT_EQ(cpus_of_share(epyc(), 2, 3), last);
  EXPECT_THROW(cpus_of_share(smt, 0, 3), Error);
}

TEST(Placement, LayoutNamesAreKnownWithoutAMachine) {
  for (const char* name : {"single", "single:4", "numa", "numa:2", "l3", "core", "16x1", "2x8"}) {
    EXPECT_TRUE(is_layout_name(name)) << name;
  }
  for (const char* name : {"", "bogus", "single:", "single:0", "numa:x", "0x1", "2x", "x2", "l3:2",
                           "core:1", "2x2x2"}) {
    EXPECT_FALSE(is_layout_name(name)) << name;
  }
}

TEST(Placement, NumaOnePinnedWorkerPerNode) {
  const Plan plan = plan_layout(epyc(), "numa", MemoryPolicy::kLocal);
  EXPECT_EQ(plan.layout, "numa");
  ASSERT_EQ(plan.workers.size(), 24u);
  for (int n = 0; n < 24; ++n) {
    const WorkerPlan& w = plan.workers[n];
    EXPECT_EQ(w.index, n);
    EXPECT_EQ(w.threads, 16);
    EXPECT_EQ(w.cpus, iota(16 * n, 16));  // first PU of each core, never the SMT sibling
    EXPECT_EQ(w.memory_nodes, std::vector<int>{n});
    const auto& node_cpus = epyc().numa_nodes[n].cpus;
    for (int cpu : w.cpus) {
      EXPECT_NE(std::find(node_cpus.begin(), node_cpus.end(), cpu), node_cpus.end());
    }
  }
}

TEST(Placement, NumaPairsStayOnOneSocket) {
  const Plan plan = plan_layout(epyc(), "numa:2", MemoryPolicy::kInterleave);
  EXPECT_EQ(plan.policy, MemoryPolicy::kInterleave);
  ASSERT_EQ(plan.workers.size(), 12u);
  std::set<int> covered;
  for (const auto& w : plan.workers) {
    ASSERT_EQ(w.memory_nodes.size(), 2u);
    EXPECT_EQ(w.threads, 32);
    const int a = w.memory_nodes[0];
    const int b = w.memory_nodes[1];
    EXPECT_EQ(epyc().distances[a][b], 11);
    EXPECT_EQ(a / 12, b / 12);
    covered.insert(a);
    covered.insert(b);
    std::vector<int> cpus = iota(16 * a, 16);
    for (int c : iota(16 * b, 16)) cpus.push_back(c);
    EXPECT_EQ(w.cpus, cpus);
  }
  EXPECT_EQ(covered.size(), 24u);

  const Plan sockets = plan_layout(epyc(), "numa:12", MemoryPolicy::kLocal);
  ASSERT_EQ(sockets.workers.size(), 2u);
  EXPECT_EQ(sockets.workers[0].memory_nodes, iota(0, 12));
  EXPECT_EQ(sockets.workers[1].memory_nodes, iota(12, 12));
  EXPECT_EQ(sockets.workers[1].cpus, iota(192, 192));
  EXPECT_EQ(plan_layout(epyc(), "numa:3", MemoryPolicy::kLocal).workers.size(), 8u);
  expect_usage_error(epyc(), "numa:5",
                     "layout 'numa:5': 5 does not divide the 12 NUMA nodes of package 0");
  expect_usage_error(epyc(), "numa:24",
                     "layout 'numa:24': 24 does not divide the 12 NUMA nodes of package 0");
}

TEST(Placement, NumaGroupsFollowDistancesNotNumbering) {
  // One package, 4 nodes: 0 is close to 2, 1 is close to 3.
  Topology t = Topology::from_synthetic("pack:1 numa:4 core:2 pu:1");
  t.set_numa_distances({{10, 20, 12, 20}, {20, 10, 20, 12}, {12, 20, 10, 20}, {20, 12, 20, 10}});
  const Plan plan = plan_layout(t.info(), "numa:2", MemoryPolicy::kLocal);
  ASSERT_EQ(plan.workers.size(), 2u);
  EXPECT_EQ(plan.workers[0].memory_nodes, (std::vector<int>{0, 2}));
  EXPECT_EQ(plan.workers[0].cpus, (std::vector<int>{0, 1, 4, 5}));
  EXPECT_EQ(plan.workers[1].memory_nodes, (std::vector<int>{1, 3}));

  // Even when the matrix says a node of the other socket is closer, groups stay on a socket.
  Topology two = Topology::from_synthetic("pack:2 numa:2 core:1 pu:1");
  two.set_numa_distances({{10, 30, 11, 30}, {30, 10, 30, 11}, {11, 30, 10, 30}, {30, 11, 30, 10}});
  const Plan sockets = plan_layout(two.info(), "numa:2", MemoryPolicy::kLocal);
  ASSERT_EQ(sockets.workers.size(), 2u);
  EXPECT_EQ(sockets.workers[0].memory_nodes, (std::vector<int>{0, 1}));
  EXPECT_EQ(sockets.workers[1].memory_nodes, (std::vector<int>{2, 3}));
}

TEST(Placement, SingleCoreL3AndJobsByThreads) {
  const Plan all = plan_layout(epyc(), "single", MemoryPolicy::kLocal);
  ASSERT_EQ(all.workers.size(), 1u);
  EXPECT_EQ(all.workers[0].threads, 384);
  EXPECT_EQ(all.workers[0].cpus, iota(0, 384));
  EXPECT_EQ(all.workers[0].memory_nodes, iota(0, 24));

  const Plan twenty = plan_layout(epyc(), "single:20", MemoryPolicy::kLocal);
  ASSERT_EQ(twenty.workers.size(), 1u);
  EXPECT_EQ(twenty.workers[0].cpus, iota(0, 20));
  EXPECT_EQ(twenty.workers[0].memory_nodes, (std::vector<int>{0, 1}));
  EXPECT_EQ(twenty.workers[0].threads, 20);

  const Plan cores = plan_layout(epyc(), "core", MemoryPolicy::kLocal);
  ASSERT_EQ(cores.workers.size(), 384u);
  for (int c = 0; c < 384; ++c) {
    EXPECT_EQ(cores.workers[c].cpus, std::vector<int>{c});
    EXPECT_EQ(cores.workers[c].memory_nodes, std::vector<int>{c / 16});
    EXPECT_EQ(cores.workers[c].threads, 1);
  }

  const Plan l3 = plan_layout(epyc(), "l3", MemoryPolicy::kLocal);
  const Plan numa = plan_layout(epyc(), "numa", MemoryPolicy::kLocal);
  const Plan jobs = plan_layout(epyc(), "24x16", MemoryPolicy::kLocal);
  ASSERT_EQ(l3.workers.size(), 24u);
  ASSERT_EQ(jobs.workers.size(), 24u);
  for (int w = 0; w < 24; ++w) {
    EXPECT_EQ(l3.workers[w].cpus, numa.workers[w].cpus);
    EXPECT_EQ(jobs.workers[w].cpus, numa.workers[w].cpus);
    EXPECT_EQ(jobs.workers[w].memory_nodes, numa.workers[w].memory_nodes);
  }

  const Plan four = plan_layout(epyc(), "4x2", MemoryPolicy::kLocal);
  ASSERT_EQ(four.workers.size(), 4u);
  for (int w = 0; w < 4; ++w) {
    EXPECT_EQ(four.workers[w].cpus, iota(2 * w, 2));
    EXPECT_EQ(four.workers[w].threads, 2);
    EXPECT_EQ(four.workers[w].memory_nodes, std::vector<int>{0});
  }
  const Plan straddle = plan_layout(epyc(), "3x12", MemoryPolicy::kLocal);
  EXPECT_EQ(straddle.workers[1].memory_nodes, (std::vector<int>{0, 1}));
}

TEST(Placement, ReservedCpusComeOffTheBackOfThePlan) {
  // core: the last two single-PU workers become the reserved PUs, on their own nodes.
  Plan cores = plan_layout(epyc(), "core", MemoryPolicy::kLocal);
  const std::vector<WorkerPlan> two = reserve_cpus(cores, 2);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].cpus, std::vector<int>{383});
  EXPECT_EQ(two[1].cpus, std::vector<int>{382});
  EXPECT_EQ(two[0].memory_nodes, std::vector<int>{23});
  EXPECT_EQ(two[1].threads, 1);
  EXPECT_EQ(cores.workers.size(), 382u);
  EXPECT_EQ(cores.workers.back().cpus, std::vector<int>{381});

  // single:20: one worker gives up its last PU and one thread.
  Plan twenty = plan_layout(epyc(), "single:20", MemoryPolicy::kLocal);
  const std::vector<WorkerPlan> one = reserve_cpus(twenty, 1);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].cpus, std::vector<int>{19});
  EXPECT_EQ(one[0].memory_nodes, (std::vector<int>{0, 1}));
  ASSERT_EQ(twenty.workers.size(), 1u);
  EXPECT_EQ(twenty.workers[0].cpus, iota(0, 19));
  EXPECT_EQ(twenty.workers[0].threads, 19);

  // Never the plan's last PU: a 2-PU plan gives one, a 1-PU plan none.
  Plan pair = plan_layout(epyc(), "single:2", MemoryPolicy::kLocal);
  EXPECT_TRUE(reserve_cpus(pair, 2).empty());
  EXPECT_EQ(reserve_cpus(pair, 1).size(), 1u);
  EXPECT_EQ(pair.workers[0].cpus, std::vector<int>{0});
  EXPECT_TRUE(reserve_cpus(pair, 1).empty());
  EXPECT_EQ(pair.workers[0].threads, 1);
}

TEST(Placement, FeederCpusComeFromIdleCoresFirst) {
  // 4x1 leaves 380 cores idle: the feeders get the next two, the plan keeps its 4 workers.
  Plan four = plan_layout(epyc(), "4x1", MemoryPolicy::kLocal);
  const std::vector<WorkerPlan> idle = reserve_feeder_cpus(epyc(), four, 2);
  ASSERT_EQ(idle.size(), 2u);
  EXPECT_EQ(idle[0].cpus, std::vector<int>{4});
  EXPECT_EQ(idle[1].cpus, std::vector<int>{5});
  EXPECT_EQ(idle[1].index, 1);
  EXPECT_EQ(idle[0].memory_nodes, std::vector<int>{0});
  EXPECT_EQ(four.workers.size(), 4u);

  // single:383 leaves one core: that one, then one PU off the plan's end.
  Plan most = plan_layout(epyc(), "single:383", MemoryPolicy::kLocal);
  const std::vector<WorkerPlan> mixed = reserve_feeder_cpus(epyc(), most, 2);
  ASSERT_EQ(mixed.size(), 2u);
  EXPECT_EQ(mixed[0].cpus, std::vector<int>{383});
  EXPECT_EQ(mixed[0].memory_nodes, std::vector<int>{23});
  EXPECT_EQ(mixed[1].cpus, std::vector<int>{382});
  EXPECT_EQ(mixed[1].index, 1);
  EXPECT_EQ(most.workers[0].threads, 382);

  // All or nothing: two cores in the plan cannot give two feeders, and keep both.
  const MachineInfo pair = Topology::from_synthetic("pack:1 numa:1 core:2 pu:1").info();
  Plan cores = plan_layout(pair, "core", MemoryPolicy::kLocal);
  EXPECT_TRUE(reserve_feeder_cpus(pair, cores, 2).empty());
  EXPECT_EQ(cores.workers.size(), 2u);
  const std::vector<WorkerPlan> one = reserve_feeder_cpus(pair, cores, 1);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(cores.workers.size(), 1u);
  EXPECT_NE(one[0].cpus, cores.workers[0].cpus);

  // A PU taken off a worker that spans two nodes: memory where each PU now is.
  const MachineInfo two_nodes = Topology::from_synthetic("pack:1 numa:2 core:1 pu:1").info();
  Plan spanning = plan_layout(two_nodes, "single", MemoryPolicy::kLocal);
  ASSERT_EQ(spanning.workers[0].memory_nodes, (std::vector<int>{0, 1}));
  const std::vector<WorkerPlan> taken = reserve_feeder_cpus(two_nodes, spanning, 1);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].cpus, std::vector<int>{1});
  EXPECT_EQ(taken[0].memory_nodes, std::vector<int>{1});
  EXPECT_EQ(spanning.workers[0].cpus, std::vector<int>{0});
  EXPECT_EQ(spanning.workers[0].memory_nodes, std::vector<int>{0});
}

TEST(Placement, BadLayouts) {
  const std::string expected = " (expected single, single:T, numa, numa:K, l3, core or JxT)";
  for (const std::string layout :
       {"", "foo", "numa:", "numa:0", "numa:-2", "single:x", "single:0", "2x", "x2", "0x4", "4x0",
        "numa:2x", "4x2x1", "Single", "core:2", "+2x1"}) {
    expect_usage_error(epyc(), layout, "unknown layout '" + layout + "'" + expected);
  }
  expect_usage_error(epyc(), "single:385",
                     "layout 'single:385': 385 threads but the machine has 384 cores");
  expect_usage_error(epyc(), "25x16",
                     "layout '25x16': 25 workers x 16 threads need 400 cores, the machine has 384");
  expect_usage_error(Topology::from_synthetic("pack:1 numa:1 core:2 pu:1").info(), "l3",
                     "layout 'l3': the topology has no L3 cache information");
}

TEST(Placement, ListsStringsAndTables) {
  EXPECT_EQ(split_layout_list("single:2,2x1"), (std::vector<std::string>{"single:2", "2x1"}));
  EXPECT_EQ(split_layout_list(",numa,, core ,"), (std::vector<std::string>{"numa", "core"}));
  EXPECT_TRUE(split_layout_list("").empty());

  EXPECT_EQ(cpu_list_string({0, 1, 2, 3, 8}), "0-3,8");
  EXPECT_EQ(cpu_list_string({5, 3, 4, 4}), "3-5");
  EXPECT_EQ(cpu_list_string({1, 3}), "1,3");
  EXPECT_EQ(parse_cpu_list("0-3,8"), (std::vector<int>{0, 1, 2, 3, 8}));
  EXPECT_EQ(parse_cpu_list(cpu_list_string({7, 1, 2, 3})), (std::vector<int>{1, 2, 3, 7}));
  EXPECT_EQ(parse_cpu_list(""), std::vector<int>{});
  for (const char* bad : {"x", "3-1", "1-", "1,,2", "-2"}) {
    try {
      parse_cpu_list(bad);
      ADD_FAILURE() << bad;
    } catch (const UsageError& e) {
      EXPECT_EQ(std::string(e.what()),
                std::string("bad cpu list '") + bad + "' (expected e.g. 0-3,8)");
    }
  }
  EXPECT_EQ(cpu_list_string({}), "");
  EXPECT_EQ(cpu_list_string(epyc().numa_nodes[23].cpus), "368-383,752-767");

  EXPECT_EQ(parse_memory_policy("local"), MemoryPolicy::kLocal);
  EXPECT_EQ(parse_memory_policy("interleave"), MemoryPolicy::kInterleave);
  EXPECT_EQ(memory_policy_name(MemoryPolicy::kInterleave), "interleave");
  try {
    parse_memory_policy("remote");
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_STREQ(e.what(), "unknown memory policy 'remote' (expected local or interleave)");
  }

  EXPECT_EQ(plan_table(plan_layout(epyc(), "2x2", MemoryPolicy::kLocal)).to_csv(),
            "worker,cpus,memory_nodes,threads\n0,0-1,0,2\n1,2-3,0,2\n");
  EXPECT_EQ(plan_table(plan_layout(epyc(), "numa:12", MemoryPolicy::kLocal)).to_csv(),
            "worker,cpus,memory_nodes,threads\n0,0-191,0-11,192\n1,192-383,12-23,192\n");
}

TEST(Placement, OrtAffinitiesAreOneBasedAndSkipTheCallingThread) {
  EXPECT_EQ(ort_thread_affinities({16, 17, 18, 19}, 4), "18;19;20");
  EXPECT_EQ(ort_thread_affinities({0, 1, 2, 3}, 2), "2");
  EXPECT_EQ(ort_thread_affinities({7}, 1), "");
  EXPECT_EQ(ort_thread_affinities({}, 0), "");
  EXPECT_THROW(ort_thread_affinities({0, 1}, 3), std::invalid_argument);
  const Plan numa = plan_layout(epyc(), "numa", MemoryPolicy::kLocal);
  // Worker 1 owns cpus 16-31: the calling thread takes 16, the 15 pool threads 17..31
  // (1-based 18..32).
  std::string expected;
  for (int id = 18; id <= 32; ++id) {
    if (id > 18) expected += ';';
    expected += std::to_string(id);
  }
  EXPECT_EQ(ort_thread_affinities(numa.workers[1]), expected);
  EXPECT_EQ(ort_thread_affinities(plan_layout(epyc(), "core", MemoryPolicy::kLocal).workers[5]),
            "");
}

// The numa plan of this machine against the kernel's view in /sys.
std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

using testing::parse_sys_list;

TEST(Placement, ThisMachineNumaPlanMatchesSysfs) {
  const Plan plan = plan_layout(Topology::this_machine().info(), "numa", MemoryPolicy::kLocal);
  cpu_set_t allowed;
  ASSERT_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  const std::vector<int> online = parse_sys_list(slurp("/sys/devices/system/cpu/online"));
  std::size_t workers = 0;
  for (int node = 0; node < 4096; ++node) {
    const std::string list =
        slurp("/sys/devices/system/node/node" + std::to_string(node) + "/cpulist");
    if (list.empty()) continue;
    // The node's usable cores: one (package, core id) per core, first usable sibling.
    std::set<std::pair<int, int>> cores;
    std::set<int> usable;
    for (int cpu : parse_sys_list(list)) {
      if (!CPU_ISSET(cpu, &allowed) ||
          std::find(online.begin(), online.end(), cpu) == online.end()) {
        continue;
      }
      usable.insert(cpu);
      const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
      cores.insert(
          {std::stoi(slurp(dir + "physical_package_id")), std::stoi(slurp(dir + "core_id"))});
    }
    if (cores.empty()) continue;
    const auto it =
        std::find_if(plan.workers.begin(), plan.workers.end(),
                     [&](const WorkerPlan& w) { return w.memory_nodes == std::vector<int>{node}; });
    ASSERT_NE(it, plan.workers.end()) << "no worker for node " << node;
    const WorkerPlan& w = *it;
    ++workers;
    EXPECT_EQ(w.threads, static_cast<int>(cores.size()));
    for (int cpu : w.cpus) EXPECT_TRUE(usable.count(cpu)) << "cpu " << cpu << " node " << node;
  }
  EXPECT_EQ(workers, plan.workers.size());
}

}  // namespace
}  // namespace tessera
