#include "tessera/topology/topology.h"

#include <fmt/format.h>
#include <hwloc.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <utility>

#include "tessera/common/error.h"

namespace tessera {

namespace {

std::vector<int> bitmap_to_vector(hwloc_const_bitmap_t set) {
  std::vector<int> out;
  if (set == nullptr) return out;
  for (int id = hwloc_bitmap_first(set); id != -1; id = hwloc_bitmap_next(set, id)) {
    out.push_back(id);
  }
  return out;
}

std::string trim(const std::string& text) {
  const auto first = text.find_first_not_of(" \t\n");
  if (first == std::string::npos) return "";
  const auto last = text.find_last_not_of(" \t\n");
  return text.substr(first, last - first + 1);
}

// Loads an initialised topology, destroying it and throwing `message` on failure.
hwloc_topology_t load_or_throw(hwloc_topology_t topology, const std::string& message) {
  if (hwloc_topology_load(topology) != 0) {
    hwloc_topology_destroy(topology);
    throw Error(message);
  }
  return topology;
}

hwloc_topology_t init_or_throw() {
  hwloc_topology_t topology = nullptr;
  if (hwloc_topology_init(&topology) != 0) throw Error("hwloc: cannot initialise a topology");
  return topology;
}

int package_of(hwloc_topology_t topology, hwloc_obj_t obj) {
  hwloc_obj_t package = hwloc_get_ancestor_obj_by_type(topology, HWLOC_OBJ_PACKAGE, obj);
  return package != nullptr ? static_cast<int>(package->logical_index) : 0;
}

std::string gpu_name(hwloc_obj_t pci) {
  // A CUDA/NVML/OpenCL OS device below the PCI device knows the marketing name.
  for (hwloc_obj_t child = pci->io_first_child; child != nullptr; child = child->next_sibling) {
    if (child->type != HWLOC_OBJ_OS_DEVICE) continue;
    if (const char* model = hwloc_obj_get_info_by_name(child, "GPUModel")) return trim(model);
  }
  if (const char* device = hwloc_obj_get_info_by_name(pci, "PCIDevice")) return trim(device);
  return fmt::format("PCI {:04x}:{:04x}", pci->attr->pcidev.vendor_id, pci->attr->pcidev.device_id);
}

std::vector<std::string> find_gpus(hwloc_topology_t topology) {
  std::vector<std::string> gpus;
  for (hwloc_obj_t pci = hwloc_get_next_pcidev(topology, nullptr); pci != nullptr;
       pci = hwloc_get_next_pcidev(topology, pci)) {
    const unsigned klass = pci->attr->pcidev.class_id;
    const unsigned vendor = pci->attr->pcidev.vendor_id;
    // 0x0302 = 3D controller (compute GPUs); 0x0300 = VGA, counted only for GPU vendors so
    // that a server's BMC graphics (ASPEED, Matrox) is not listed.
    const bool gpu_vendor = vendor == 0x10de || vendor == 0x1002 || vendor == 0x8086;
    if (klass == 0x0302 || (klass == 0x0300 && gpu_vendor)) gpus.push_back(gpu_name(pci));
  }
  return gpus;
}

std::vector<std::vector<int>> numa_distances(hwloc_topology_t topology, int nodes) {
  std::vector<std::vector<int>> matrix;
  unsigned count = 1;
  hwloc_distances_s* distances = nullptr;
  if (hwloc_distances_get_by_type(topology, HWLOC_OBJ_NUMANODE, &count, &distances,
                                  HWLOC_DISTANCES_KIND_MEANS_LATENCY, 0) == 0 &&
      count >= 1 && distances != nullptr) {
    if (static_cast<int>(distances->nbobjs) == nodes) {
      matrix.assign(nodes, std::vector<int>(nodes, 0));
      for (unsigned i = 0; i < distances->nbobjs; ++i) {
        for (unsigned j = 0; j < distances->nbobjs; ++j) {
          const unsigned row = distances->objs[i]->logical_index;
          const unsigned col = distances->objs[j]->logical_index;
          matrix[row][col] = static_cast<int>(distances->values[i * distances->nbobjs + j]);
        }
      }
    }
    hwloc_distances_release(topology, distances);
  }
  if (matrix.empty() && nodes == 1) matrix = {{10}};
  return matrix;
}

}  // namespace

std::uint64_t MachineInfo::memory_bytes() const {
  std::uint64_t total = 0;
  for (const auto& node : numa_nodes) total += node.memory_bytes;
  return total;
}

int MachineInfo::node_position(int os_index) const {
  for (std::size_t i = 0; i < numa_nodes.size(); ++i) {
    if (numa_nodes[i].os_index == os_index) return static_cast<int>(i);
  }
  return -1;
}

Topology Topology::whole_machine() {
  hwloc_topology_t topology = init_or_throw();
  hwloc_topology_set_io_types_filter(topology, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  return Topology(load_or_throw(topology, "hwloc: cannot discover this machine's topology"));
}

Topology Topology::this_machine() {
  Topology machine = whole_machine();
  hwloc_topology_t topology = machine.handle();
  // hwloc already hides CPUs outside our cgroup; also honour the CPU binding this process was
  // started with (taskset, numactl, mpirun --bind-to), so plans never leave it.
  hwloc_bitmap_t bound = hwloc_bitmap_alloc();
  if (hwloc_get_cpubind(topology, bound, HWLOC_CPUBIND_PROCESS) == 0 &&
      !hwloc_bitmap_iszero(bound) &&
      !hwloc_bitmap_isincluded(hwloc_topology_get_topology_cpuset(topology), bound)) {
    hwloc_topology_restrict(topology, bound, 0);
  }
  hwloc_bitmap_free(bound);
  return machine;
}

Topology Topology::from_xml(const std::string& path) {
  if (!std::ifstream(path).good()) throw Error(path + ": cannot read topology XML file");
  hwloc_topology_t topology = init_or_throw();
  hwloc_topology_set_io_types_filter(topology, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  if (hwloc_topology_set_xml(topology, path.c_str()) != 0) {
    hwloc_topology_destroy(topology);
    throw Error(path + ": not a valid hwloc topology XML file");
  }
  return Topology(load_or_throw(topology, path + ": not a valid hwloc topology XML file"));
}

Topology Topology::from_synthetic(const std::string& description) {
  hwloc_topology_t topology = init_or_throw();
  if (hwloc_topology_set_synthetic(topology, description.c_str()) != 0) {
    hwloc_topology_destroy(topology);
    throw UsageError("invalid synthetic topology '" + description +
                     "' (expected hwloc syntax, e.g. 'pack:2 numa:12 l3:1 core:16 pu:2')");
  }
  return Topology(load_or_throw(topology, "cannot build synthetic topology '" + description + "'"));
}

Topology::Topology(Topology&& other) noexcept
    : topology_(std::exchange(other.topology_, nullptr)) {}

Topology& Topology::operator=(Topology&& other) noexcept {
  if (this != &other) {
    if (topology_ != nullptr) hwloc_topology_destroy(topology_);
    topology_ = std::exchange(other.topology_, nullptr);
  }
  return *this;
}

Topology::~Topology() {
  if (topology_ != nullptr) hwloc_topology_destroy(topology_);
}

hwloc_topology* Topology::handle() const {
  if (topology_ == nullptr) throw std::logic_error("Topology used after move");
  return topology_;
}

MachineInfo Topology::info() const {
  hwloc_topology_t topology = handle();
  MachineInfo info;
  info.packages = std::max(1, hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_PACKAGE));
  info.cpu_model = "unknown";
  for (hwloc_obj_t obj = hwloc_get_obj_by_type(topology, HWLOC_OBJ_PACKAGE, 0); obj != nullptr;
       obj = obj->next_cousin) {
    if (const char* model = hwloc_obj_get_info_by_name(obj, "CPUModel")) {
      info.cpu_model = trim(model);
      break;
    }
  }

  const int nodes = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_NUMANODE);
  for (int i = 0; i < nodes; ++i) {
    hwloc_obj_t obj = hwloc_get_obj_by_type(topology, HWLOC_OBJ_NUMANODE, i);
    NumaNodeInfo node;
    node.os_index = static_cast<int>(obj->os_index);
    node.package = package_of(topology, obj);
    node.cpus = bitmap_to_vector(obj->cpuset);
    node.memory_bytes = obj->attr->numanode.local_memory;
    info.numa_nodes.push_back(std::move(node));
  }

  const int l3s = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_L3CACHE);
  for (int i = 0; i < l3s; ++i) {
    hwloc_obj_t obj = hwloc_get_obj_by_type(topology, HWLOC_OBJ_L3CACHE, i);
    info.l3_domains.push_back(L3DomainInfo{bitmap_to_vector(obj->cpuset)});
  }

  // Cores; a topology without Core objects gets one core per PU.
  const hwloc_obj_type_t core_type =
      hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
  const int cores = hwloc_get_nbobjs_by_type(topology, core_type);
  for (int i = 0; i < cores; ++i) {
    hwloc_obj_t obj = hwloc_get_obj_by_type(topology, core_type, i);
    CoreInfo core;
    for (hwloc_obj_t pu =
             hwloc_get_next_obj_inside_cpuset_by_type(topology, obj->cpuset, HWLOC_OBJ_PU, nullptr);
         pu != nullptr;
         pu = hwloc_get_next_obj_inside_cpuset_by_type(topology, obj->cpuset, HWLOC_OBJ_PU, pu)) {
      core.pus.push_back(static_cast<int>(pu->os_index));
    }
    if (core.pus.empty()) continue;  // a core with no usable PU (disallowed by the cpuset)
    core.package = package_of(topology, obj);
    hwloc_obj_t l3 = hwloc_get_ancestor_obj_by_type(topology, HWLOC_OBJ_L3CACHE, obj);
    core.l3 = l3 != nullptr ? static_cast<int>(l3->logical_index) : -1;
    for (int n = 0; n < nodes; ++n) {
      hwloc_obj_t node = hwloc_get_obj_by_type(topology, HWLOC_OBJ_NUMANODE, n);
      if (hwloc_bitmap_isset(node->cpuset, static_cast<unsigned>(core.pus.front()))) {
        core.node = n;
        ++info.numa_nodes[n].cores;
        break;
      }
    }
    info.pus += static_cast<int>(core.pus.size());
    info.core_list.push_back(std::move(core));
  }
  info.cores = static_cast<int>(info.core_list.size());
  info.distances = numa_distances(topology, nodes);
  info.gpus = find_gpus(topology);
  return info;
}

void Topology::set_numa_distances(const std::vector<std::vector<int>>& matrix) {
  hwloc_topology_t topology = handle();
  const int nodes = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_NUMANODE);
  if (static_cast<int>(matrix.size()) != nodes) {
    throw UsageError(fmt::format("distance matrix has {} rows, the topology has {} NUMA nodes",
                                 matrix.size(), nodes));
  }
  std::vector<hwloc_obj_t> objs;
  std::vector<hwloc_uint64_t> values;
  for (int i = 0; i < nodes; ++i) {
    objs.push_back(hwloc_get_obj_by_type(topology, HWLOC_OBJ_NUMANODE, i));
    if (static_cast<int>(matrix[i].size()) != nodes) {
      throw UsageError(fmt::format("distance matrix row {} has {} values, expected {}", i,
                                   matrix[i].size(), nodes));
    }
    for (int value : matrix[i]) {
      if (value <= 0) throw UsageError(fmt::format("distance {} is not positive", value));
      values.push_back(static_cast<hwloc_uint64_t>(value));
    }
  }
  hwloc_distances_remove_by_type(topology, HWLOC_OBJ_NUMANODE);
  hwloc_distances_add_handle_t add = hwloc_distances_add_create(
      topology, "NUMALatency", HWLOC_DISTANCES_KIND_FROM_USER | HWLOC_DISTANCES_KIND_MEANS_LATENCY,
      0);
  if (add == nullptr ||
      hwloc_distances_add_values(topology, add, static_cast<unsigned>(nodes), objs.data(),
                                 values.data(), 0) != 0 ||
      hwloc_distances_add_commit(topology, add, 0) != 0) {
    throw Error(std::string("hwloc: cannot attach NUMA distances: ") + std::strerror(errno));
  }
}

void Topology::set_cpu_model(const std::string& model) {
  hwloc_topology_t topology = handle();
  for (hwloc_obj_t obj = hwloc_get_obj_by_type(topology, HWLOC_OBJ_PACKAGE, 0); obj != nullptr;
       obj = obj->next_cousin) {
    bool replaced = false;
    for (unsigned i = 0; i < obj->infos_count; ++i) {
      if (std::strcmp(obj->infos[i].name, "CPUModel") == 0) {
        // hwloc 2.9 has no call to modify an info; its strings are malloc'ed by hwloc.
        std::free(obj->infos[i].value);
        obj->infos[i].value = strdup(model.c_str());
        replaced = true;
      }
    }
    if (!replaced) hwloc_obj_add_info(obj, "CPUModel", model.c_str());
  }
}

std::string Topology::xml() const {
  char* buffer = nullptr;
  int length = 0;
  if (hwloc_topology_export_xmlbuffer(handle(), &buffer, &length, 0) != 0) {
    throw Error(std::string("cannot export the topology as XML: ") + std::strerror(errno));
  }
  // length counts the terminating NUL.
  std::string text(buffer, static_cast<size_t>(std::max(0, length - 1)));
  hwloc_free_xmlbuffer(handle(), buffer);
  return text;
}

namespace {

std::vector<int> parse_int_list(const std::string& text, const std::string& whole) {
  std::vector<int> values;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = trim(text.substr(start, comma - start));
    char* end = nullptr;
    errno = 0;
    const long value = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno != 0 || value <= 0 || value > 1000000) {
      throw UsageError("invalid distances '" + whole +
                       "' (expected 'LOCAL,SAME_PACKAGE,CROSS_PACKAGE' or rows 'a,b;c,d')");
    }
    values.push_back(static_cast<int>(value));
    start = comma + 1;
  }
  return values;
}

}  // namespace

std::vector<std::vector<int>> parse_distances(const std::string& text, const MachineInfo& info) {
  const std::size_t n = info.numa_nodes.size();
  std::vector<std::vector<int>> matrix;
  if (text.find(';') == std::string::npos) {
    const std::vector<int> rule = parse_int_list(text, text);
    if (rule.size() == 3) {
      matrix.assign(n, std::vector<int>(n, 0));
      for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < n; ++j) {
          const bool same_package = info.numa_nodes[i].package == info.numa_nodes[j].package;
          matrix[i][j] = i == j ? rule[0] : same_package ? rule[1] : rule[2];
        }
      }
      return matrix;
    }
    matrix.push_back(rule);
  } else {
    std::size_t start = 0;
    while (start <= text.size()) {
      const std::size_t semicolon = std::min(text.find(';', start), text.size());
      matrix.push_back(parse_int_list(text.substr(start, semicolon - start), text));
      start = semicolon + 1;
    }
  }
  for (const auto& row : matrix) {
    if (matrix.size() != n || row.size() != n) {
      throw UsageError(fmt::format(
          "distances '{}' are not a {}x{} matrix (the topology has {} NUMA nodes)", text, n, n, n));
    }
  }
  return matrix;
}

}  // namespace tessera
