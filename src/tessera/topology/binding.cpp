#include "tessera/topology/binding.h"

#include <fmt/format.h>
#include <hwloc.h>
#include <linux/mempolicy.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "tessera/common/error.h"
#include "tessera/topology/topology.h"

namespace tessera {

namespace {

// Bits in the node masks we pass to get_mempolicy: more than any kernel's MAX_NUMNODES.
constexpr unsigned long kMaxNodes = 4096;
constexpr unsigned long kBitsPerWord = 8 * sizeof(unsigned long);

const Topology& machine_topology() {
  static const Topology topology = Topology::this_machine();
  return topology;
}

void warn_once(const std::string& what) {
  static std::once_flag once;
  std::call_once(once, [&] {
    std::fprintf(stderr, "tessera: warning: %s; workers run unbound\n", what.c_str());
  });
}

// Errors that mean "this OS/container cannot bind", as opposed to a plan that does not fit.
bool binding_unsupported(int error) {
  return error == ENOSYS || error == EPERM;
}

long get_mempolicy_call(int* mode, unsigned long* mask, const void* address, unsigned long flags) {
  return syscall(SYS_get_mempolicy, mode, mask, mask == nullptr ? 0 : kMaxNodes, address, flags);
}

}  // namespace

bool bind_this_process(const std::vector<int>& cpus) {
  // Not this_machine(), which stops at the current binding: the new one may be wider.
  const Topology topology = Topology::whole_machine();
  hwloc_bitmap_t set = hwloc_bitmap_alloc();
  for (int cpu : cpus) hwloc_bitmap_set(set, static_cast<unsigned>(cpu));
  const int result = hwloc_set_cpubind(topology.handle(), set, HWLOC_CPUBIND_PROCESS);
  const int error = errno;
  hwloc_bitmap_free(set);
  if (result == 0) return true;
  if (binding_unsupported(error)) return false;
  throw Error(fmt::format("cannot bind this process to cpus {}: {}", cpu_list_string(cpus),
                          std::strerror(error)));
}

void bind_worker_thread(const WorkerPlan& worker, MemoryPolicy policy) {
  bind_current_thread(worker, policy);
  if (!worker.cpus.empty()) pin_current_thread(worker.cpus.front());
}

void pin_current_thread(int cpu) {
  set_current_thread_cpus({cpu});
}

void set_current_thread_cpus(const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (const int cpu : cpus) CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) {
    throw Error(fmt::format("cannot pin thread to cpus {}: {}", cpu_list_string(cpus),
                            std::strerror(errno)));
  }
}

void bind_current_thread(const WorkerPlan& worker, MemoryPolicy policy) {
  hwloc_topology_t topology = machine_topology().handle();
  const hwloc_topology_support* support = hwloc_topology_get_support(topology);

  hwloc_bitmap_t cpus = hwloc_bitmap_alloc();
  for (int cpu : worker.cpus) hwloc_bitmap_set(cpus, static_cast<unsigned>(cpu));
  hwloc_bitmap_t nodes = hwloc_bitmap_alloc();
  for (int node : worker.memory_nodes) hwloc_bitmap_set(nodes, static_cast<unsigned>(node));
  std::string failure;
  bool unsupported = false;

  if (!support->cpubind->set_thisthread_cpubind) {
    unsupported = true;
    failure = "this system cannot bind threads to CPUs";
  } else if (hwloc_set_cpubind(topology, cpus, HWLOC_CPUBIND_THREAD) != 0) {
    unsupported = binding_unsupported(errno);
    failure = fmt::format("cannot bind thread to cpus {}: {}", cpu_list_string(worker.cpus),
                          std::strerror(errno));
  }

  const bool interleave = policy == MemoryPolicy::kInterleave;
  const bool policy_supported =
      interleave ? support->membind->interleave_membind != 0 : support->membind->bind_membind != 0;
  if (!failure.empty() || worker.memory_nodes.empty()) {
    // nothing more to do (or nothing to bind memory to)
  } else if (!support->membind->set_thisthread_membind || !policy_supported) {
    unsupported = true;
    failure = "this system cannot bind thread memory to NUMA nodes";
  } else if (hwloc_set_membind(
                 topology, nodes, interleave ? HWLOC_MEMBIND_INTERLEAVE : HWLOC_MEMBIND_BIND,
                 HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_STRICT) != 0) {
    unsupported = binding_unsupported(errno);
    failure = fmt::format("cannot bind thread memory to nodes {}: {}",
                          cpu_list_string(worker.memory_nodes), std::strerror(errno));
  }
  hwloc_bitmap_free(cpus);
  hwloc_bitmap_free(nodes);

  if (failure.empty()) return;
  if (unsupported) {
    warn_once(failure);
    return;
  }
  throw Error(fmt::format("worker {}: {}", worker.index, failure));
}

std::vector<int> current_thread_cpus() {
  cpu_set_t* set = CPU_ALLOC(kMaxNodes);
  const std::size_t size = CPU_ALLOC_SIZE(kMaxNodes);
  CPU_ZERO_S(size, set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, size, set) != 0) {
    CPU_FREE(set);
    throw Error(std::string("sched_getaffinity: ") + std::strerror(errno));
  }
  for (int cpu = 0; cpu < static_cast<int>(kMaxNodes); ++cpu) {
    if (CPU_ISSET_S(cpu, size, set)) cpus.push_back(cpu);
  }
  CPU_FREE(set);
  return cpus;
}

ThreadMemoryPolicy current_thread_memory_policy() {
  std::vector<unsigned long> mask(kMaxNodes / kBitsPerWord, 0);
  ThreadMemoryPolicy policy;
  if (get_mempolicy_call(&policy.mode, mask.data(), nullptr, 0) != 0) {
    throw Error(std::string("get_mempolicy: ") + std::strerror(errno));
  }
  for (unsigned long bit = 0; bit < kMaxNodes; ++bit) {
    if (mask[bit / kBitsPerWord] & (1UL << (bit % kBitsPerWord))) {
      policy.nodes.push_back(static_cast<int>(bit));
    }
  }
  return policy;
}

int memory_node_of(const void* address) {
  int node = -1;
  if (get_mempolicy_call(&node, nullptr, address, MPOL_F_NODE | MPOL_F_ADDR) != 0) {
    throw Error(fmt::format("get_mempolicy: cannot tell the node of address {}: {}", address,
                            std::strerror(errno)));
  }
  return node;
}

}  // namespace tessera
