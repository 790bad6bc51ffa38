#pragma once
// The placement planner: turns a layout name ("numa", "4x2", ...) into workers, each with the
// CPUs its threads run on and the NUMA nodes its memory comes from. Pure logic over
// MachineInfo, so plans for machines we do not have (data/topologies/*.xml) are testable.
//
// Layouts (threads use the first PU of each core unless a layout says otherwise):
//   single     1 worker on every core, threads = cores
//   single:T   1 worker of T threads on the first T cores
//   numa       1 worker per NUMA node that has cores, threads = the node's cores
//   numa:K     1 worker per K nodes of one package (closest by distance), never across packages
//   l3         1 worker per L3 domain
//   core       1 single-thread worker per core
//   JxT        J workers of T threads on consecutive cores (J*T <= cores)

#include <string>
#include <vector>

#include "tessera/common/table.h"
#include "tessera/topology/topology.h"

namespace tessera {

enum class MemoryPolicy {
  kLocal,       // bind allocations to the worker's nodes
  kInterleave,  // interleave pages across the worker's nodes
};

// "local" or "interleave"; throws UsageError otherwise.
MemoryPolicy parse_memory_policy(const std::string& name);
std::string memory_policy_name(MemoryPolicy policy);

// Invariants: cpus is non-empty, ascending and duplicate-free; threads == cpus.size() for every
// layout above; memory_nodes (node os indexes, ascending) are exactly the nodes holding cpus.
struct WorkerPlan {
  int index = 0;
  std::vector<int> cpus;  // PU os indexes, one per thread
  std::vector<int> memory_nodes;
  int threads = 0;
};

struct Plan {
  std::string layout;
  MemoryPolicy policy = MemoryPolicy::kLocal;
  std::vector<WorkerPlan> workers;
};

// Throws UsageError for an unknown or impossible layout, naming the layout.
Plan plan_layout(const MachineInfo& machine, const std::string& layout, MemoryPolicy policy);

// The PUs of share `index` of `count` equal shares of the machine's cores (contiguous in core
// order, all PUs of each core): for processes that a launcher bound to the same CPUs and that
// split them instead of all planning on every core. Requires 0 <= index < count <= cores.
std::vector<int> cpus_of_share(const MachineInfo& machine, int index, int count);

// True when `layout` is written as plan_layout reads it (single, single:T, numa, numa:K, l3,
// core, JxT), whether or not a given machine can hold it.
bool is_layout_name(const std::string& layout);

// Takes the last `count` PUs of `plan` (in worker order, each worker's cpus from the back) out
// of it, for threads that must not compete with the plan's workers (the threads that feed a
// GPU). Returns one single-PU WorkerPlan per PU taken, with the memory nodes of the worker it
// came from; a worker left without PUs is dropped, the others run one thread per PU left.
// Takes nothing (returns {}) when that would leave the plan without a PU.
std::vector<WorkerPlan> reserve_cpus(Plan& plan, int count);

// The PUs for threads that feed GPUs: `count` single-PU WorkerPlans, first the first PU of each
// core the plan leaves idle (in core order, with that core's node as memory), then PUs taken off
// the plan's end as reserve_cpus does, each with its own node as memory (and a worker that gave
// PUs away keeps only the nodes of those it still has). All or nothing: returns {} and changes
// nothing when the machine cannot give `count` without leaving the plan without a PU.
std::vector<WorkerPlan> reserve_feeder_cpus(const MachineInfo& machine, Plan& plan, int count);

// "single:2,2x1,numa" -> {"single:2", "2x1", "numa"}; empty items are dropped.
std::vector<std::string> split_layout_list(const std::string& list);

// {0,1,2,3,8} -> "0-3,8" (sorted, duplicates dropped); {} -> "".
std::string cpu_list_string(std::vector<int> cpus);
// The inverse: "0-3,8" -> {0,1,2,3,8}. Throws UsageError for malformed text.
std::vector<int> parse_cpu_list(const std::string& text);

// Value for ORT's session.intra_op_thread_affinities: threads-1 entries separated by ';', one
// per pool thread, entry i = cpus[i] + 1 (ORT's processor ids are 1-based). cpus[0] belongs to
// the calling thread, which ORT never pins. Returns "" for threads <= 1. Throws
// std::invalid_argument if threads > cpus.size().
std::string ort_thread_affinities(const std::vector<int>& cpus, int threads);
// The same for a planned worker (its cpus and threads).
std::string ort_thread_affinities(const WorkerPlan& worker);

// worker | cpus ("0-15") | memory nodes | threads.
Table plan_table(const Plan& plan);

}  // namespace tessera
