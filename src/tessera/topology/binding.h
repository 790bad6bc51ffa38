#pragma once
// Binding the calling thread to a worker's CPUs and memory nodes, and reading back what the
// kernel applied (for tests and diagnostics).
//
// A worker binds itself before it allocates anything (weights, buffers, ORT session), so that
// first-touch puts its pages on its own nodes. Binding uses hwloc on a topology of this
// machine loaded once per process.

#include <vector>

#include "tessera/topology/placement.h"

namespace tessera {

// Binds the calling thread's cpuset to worker.cpus (all of them: the thread may run on any of
// the worker's CPUs) and its memory policy to worker.memory_nodes: BIND for kLocal, INTERLEAVE
// for kInterleave. Where the OS cannot bind (no support), prints one warning per process to
// stderr and continues unbound; a plan that does not fit this machine throws Error.
// kLocal is strict (MPOL_BIND, like `numactl --membind`): allocations never spill to other
// nodes. Without STRICT, hwloc would ask for MPOL_PREFERRED_MANY.
void bind_current_thread(const WorkerPlan& worker, MemoryPolicy policy);

// A worker's own thread (the one that calls its engine): bound as bind_current_thread, then
// pinned to worker.cpus[0]; the engine's helper threads belong on the worker's other CPUs.
void bind_worker_thread(const WorkerPlan& worker, MemoryPolicy policy);

// Binds every thread of this process to `cpus` (what `taskset -p` does), so that
// Topology::this_machine() and threads started later see only them. False when this system
// cannot bind (as bind_current_thread, ENOSYS / EPERM); throws Error for other refusals.
bool bind_this_process(const std::vector<int>& cpus);

// Narrows the calling thread's CPU affinity to the one PU `cpu` (memory policy unchanged).
// Throws Error if the kernel refuses.
void pin_current_thread(int cpu);

// Sets the calling thread's CPU affinity to exactly `cpus` (memory policy unchanged). Throws
// Error if the kernel refuses.
void set_current_thread_cpus(const std::vector<int>& cpus);

// The calling thread's CPU affinity (sched_getaffinity), ascending.
std::vector<int> current_thread_cpus();

// The calling thread's memory policy as the kernel reports it (get_mempolicy, no flags).
struct ThreadMemoryPolicy {
  int mode = 0;            // MPOL_DEFAULT, MPOL_BIND, MPOL_INTERLEAVE, ... (linux/mempolicy.h)
  std::vector<int> nodes;  // node os indexes in the policy's mask, ascending
};
ThreadMemoryPolicy current_thread_memory_policy();

// The node whose memory backs `address` (get_mempolicy MPOL_F_NODE | MPOL_F_ADDR); the page
// must have been touched. Throws Error if the kernel cannot tell.
int memory_node_of(const void* address);

}  // namespace tessera
