// Binding verified from inside: a fresh thread binds itself to a worker of this machine's
// plan, then asks the kernel what it got (sched_getaffinity, get_mempolicy) and where the
// pages of a buffer it allocated and touched afterwards live.

#include "tessera/topology/binding.h"

#include <gtest/gtest.h>
#include <linux/mempolicy.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <set>
#include <thread>

#include "tessera/common/error.h"

namespace tessera {
namespace {

struct Observed {
  std::vector<int> cpus;
  ThreadMemoryPolicy policy;
  std::vector<int> page_nodes;  // node of every page of a fresh 8 MiB buffer
  std::string error;
};

Observed bind_and_observe(const WorkerPlan& worker, MemoryPolicy policy) {
  Observed seen;
  std::thread thread([&] {
    try {
      bind_current_thread(worker, policy);
      seen.cpus = current_thread_cpus();
      seen.policy = current_thread_memory_policy();
      const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
      const std::size_t bytes = 8u << 20;
      std::unique_ptr<char[]> buffer(new char[bytes]);
      std::memset(buffer.get(), 1, bytes);  // first touch, after binding
      for (std::size_t offset = 0; offset < bytes; offset += page) {
        seen.page_nodes.push_back(memory_node_of(buffer.get() + offset));
      }
    } catch (const std::exception& e) {
      seen.error = e.what();
    }
  });
  thread.join();
  return seen;
}

bool contains(const std::vector<int>& set, int value) {
  return std::find(set.begin(), set.end(), value) != set.end();
}

TEST(Binding, LocalPolicyBindsCpusAndMemory) {
  const Plan plan = plan_layout(Topology::this_machine().info(), "numa", MemoryPolicy::kLocal);
  for (const WorkerPlan& worker : plan.workers) {
    const Observed seen = bind_and_observe(worker, MemoryPolicy::kLocal);
    ASSERT_EQ(seen.error, "");
    EXPECT_EQ(seen.cpus, worker.cpus);
    EXPECT_EQ(seen.policy.mode, MPOL_BIND);
    EXPECT_EQ(seen.policy.nodes, worker.memory_nodes);
    for (int node : seen.page_nodes) ASSERT_TRUE(contains(worker.memory_nodes, node)) << node;
  }
}

TEST(Binding, InterleavePolicyOverTheWorkersNodes) {
  const Plan plan =
      plan_layout(Topology::this_machine().info(), "single", MemoryPolicy::kInterleave);
  ASSERT_EQ(plan.workers.size(), 1u);
  const WorkerPlan& worker = plan.workers[0];
  const Observed seen = bind_and_observe(worker, MemoryPolicy::kInterleave);
  ASSERT_EQ(seen.error, "");
  EXPECT_EQ(seen.cpus, worker.cpus);
  EXPECT_EQ(seen.policy.mode, MPOL_INTERLEAVE);
  EXPECT_EQ(seen.policy.nodes, worker.memory_nodes);
  std::set<int> used(seen.page_nodes.begin(), seen.page_nodes.end());
  for (int node : used) EXPECT_TRUE(contains(worker.memory_nodes, node)) << node;
  // Interleaving over several nodes spreads 2048 pages over all of them.
  EXPECT_EQ(used.size(), worker.memory_nodes.size());
}

TEST(Binding, OneCorePerThread) {
  const Plan plan = plan_layout(Topology::this_machine().info(), "core", MemoryPolicy::kLocal);
  for (const WorkerPlan& worker : plan.workers) {
    const Observed seen = bind_and_observe(worker, MemoryPolicy::kLocal);
    ASSERT_EQ(seen.error, "");
    ASSERT_EQ(seen.cpus.size(), 1u);
    EXPECT_EQ(seen.cpus, worker.cpus);
  }
}

TEST(Binding, ThreadsStartUnboundAndBindingIsPerThread) {
  const std::vector<int> before = current_thread_cpus();
  const Plan plan = plan_layout(Topology::this_machine().info(), "core", MemoryPolicy::kLocal);
  bind_and_observe(plan.workers.back(), MemoryPolicy::kLocal);
  EXPECT_EQ(current_thread_cpus(), before);
  EXPECT_EQ(current_thread_memory_policy().mode, MPOL_DEFAULT);
}

TEST(Binding, APlanForAnotherMachineIsAnError) {
  WorkerPlan worker;
  worker.index = 3;
  worker.cpus = {4000};
  worker.memory_nodes = {0};
  worker.threads = 1;
  const Observed seen = bind_and_observe(worker, MemoryPolicy::kLocal);
  EXPECT_EQ(seen.error, "worker 3: cannot bind thread to cpus 4000: Invalid argument");
}

}  // namespace
}  // namespace tessera
