#pragma once
// The `tessera topo` report: a machine summary, its NUMA nodes, the node distance matrix
// (laid out like `numactl -H`) and optionally a placement plan, as Markdown or one JSON object.

#include <nlohmann/json.hpp>
#include <string>

#include "tessera/common/table.h"
#include "tessera/topology/placement.h"
#include "tessera/topology/topology.h"

namespace tessera {

// property | value: CPU model, packages, NUMA nodes, cores, PUs, memory, L3 domains, GPUs.
Table machine_summary_table(const MachineInfo& machine);
// node | package | cores | cpus ("0-15,384-399") | memory GiB.
Table numa_node_table(const MachineInfo& machine);
// "node   0   1\n  0:  10  11\n  1:  11  10\n"; a note when the distances are unknown.
std::string distance_matrix_text(const MachineInfo& machine);

// `plan` may be null (no --plan).
std::string topology_markdown(const MachineInfo& machine, const Plan* plan);
// Keys: cpu_model, packages, numa_nodes [{os_index, package, cores, cpus [..], memory_bytes}],
// l3_domains (count), cores, pus, memory_bytes, distances [[..]], gpus [..], and plan
// {layout, membind, workers [{index, cpus [..], memory_nodes [..], threads,
// ort_thread_affinities}]} when `plan` is not null.
nlohmann::json topology_json(const MachineInfo& machine, const Plan* plan);

}  // namespace tessera
