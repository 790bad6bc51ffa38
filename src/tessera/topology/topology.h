#pragma once
// Topology: the hardware description of one machine (this one, an hwloc XML file or an hwloc
// synthetic string), and MachineInfo, the plain-data summary the planner works on.
//
// Topology owns one loaded hwloc_topology_t; it is movable, not copyable, and a moved-from
// Topology owns nothing (every method but the destructor and assignment then throws).
// MachineInfo holds no hwloc handles, so it can be copied, built by hand in tests and sent
// across threads.

#include <cstdint>
#include <string>
#include <vector>

struct hwloc_topology;  // hwloc's opaque topology, hwloc_topology_t = hwloc_topology*

namespace tessera {

struct NumaNodeInfo {
  int os_index = 0;       // the kernel's node number (numactl, get_mempolicy masks)
  int package = 0;        // logical index of the package that holds the node
  std::vector<int> cpus;  // PU os indexes on the node, ascending (all SMT siblings)
  int cores = 0;          // cores whose first PU is on the node
  std::uint64_t memory_bytes = 0;
};

struct L3DomainInfo {
  std::vector<int> cpus;  // PU os indexes sharing one L3, ascending
};

// One physical core. The planner puts one thread on pus[0] unless a layout asks otherwise.
struct CoreInfo {
  std::vector<int> pus;  // PU os indexes in hwloc logical order, never empty
  int node = -1;         // position in MachineInfo::numa_nodes, -1 if no node holds the core
  int package = 0;       // logical package index
  int l3 = -1;           // position in MachineInfo::l3_domains, -1 if unknown
};

// Invariants: core_list.size() == cores; the sum of pus over core_list == pus;
// distances is empty or numa_nodes.size() x numa_nodes.size(), in numa_nodes order.
struct MachineInfo {
  std::string cpu_model;  // "unknown" when hwloc reports none
  int packages = 1;
  int cores = 0;
  int pus = 0;
  std::vector<NumaNodeInfo> numa_nodes;  // hwloc logical order (locality order)
  std::vector<L3DomainInfo> l3_domains;
  std::vector<CoreInfo> core_list;          // hwloc logical order
  std::vector<std::vector<int>> distances;  // NUMA latency, 10 = local (ACPI SLIT scale)
  std::vector<std::string> gpus;            // names of GPUs hwloc sees (PCI/OS devices)
  // AVX-512, AVX512_BF16, AMX, ... (cpu_features.h); empty when unknown (an XML or synthetic
  // topology describes another machine).
  std::vector<std::string> cpu_features;

  std::uint64_t memory_bytes() const;
  // Position of the node with this os index in numa_nodes, or -1.
  int node_position(int os_index) const;
};

class Topology {
 public:
  // The running machine, restricted to the CPUs and nodes this process may use; with I/O
  // devices, so that GPUs are listed.
  static Topology this_machine();
  // The running machine as far as its cgroup allows, whatever this process is bound to (for
  // binding it to CPUs outside its current binding).
  static Topology whole_machine();
  // An hwloc XML export (lstopo file.xml, or data/topologies/*.xml).
  static Topology from_xml(const std::string& path);
  // An hwloc synthetic description, e.g. "pack:2 numa:12 l3:1 core:16 pu:2".
  static Topology from_synthetic(const std::string& description);

  Topology(Topology&& other) noexcept;
  Topology& operator=(Topology&& other) noexcept;
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;
  ~Topology();

  MachineInfo info() const;

  // Replaces the NUMA latency matrix; `matrix` is N x N over the NUMA nodes in logical order.
  void set_numa_distances(const std::vector<std::vector<int>>& matrix);
  // Sets the CPUModel of every package (synthetic topologies have none).
  void set_cpu_model(const std::string& model);
  // The topology (with distances and CPU model) as hwloc XML.
  std::string xml() const;

  // The loaded hwloc topology; valid while this object lives.
  hwloc_topology* handle() const;

 private:
  explicit Topology(hwloc_topology* topology) : topology_(topology) {}
  hwloc_topology* topology_ = nullptr;
};

// Parses a NUMA distance description for `info`:
//   "L,S,X"           local, same-package and cross-package distances (e.g. "10,11,32"), or
//   "a,b,...;c,d,..." a full N x N matrix, rows separated by ';'.
// Throws UsageError for malformed text or a matrix of the wrong size.
std::vector<std::vector<int>> parse_distances(const std::string& text, const MachineInfo& info);

}  // namespace tessera
