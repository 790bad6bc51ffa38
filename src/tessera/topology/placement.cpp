#include "tessera/topology/placement.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>

#include "tessera/common/error.h"

namespace tessera {

namespace {

const char* const kExpectedLayouts = "(expected single, single:T, numa, numa:K, l3, core or JxT)";

UsageError unknown_layout(const std::string& layout) {
  return UsageError("unknown layout '" + layout + "' " + kExpectedLayouts);
}

// Strict decimal parse of a positive int ("+3", "03x" and "" are rejected).
bool parse_positive(const std::string& text, int& value) {
  if (text.empty() || text.size() > 7) return false;
  if (!std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  value = std::stoi(text);
  return value > 0;
}

// One worker on the given cores (positions in machine.core_list), one thread per core.
WorkerPlan make_worker(const MachineInfo& machine, const std::vector<int>& cores, int index) {
  WorkerPlan worker;
  worker.index = index;
  for (int c : cores) {
    const CoreInfo& core = machine.core_list[c];
    worker.cpus.push_back(core.pus.front());
    if (core.node >= 0) worker.memory_nodes.push_back(machine.numa_nodes[core.node].os_index);
  }
  std::sort(worker.cpus.begin(), worker.cpus.end());
  std::sort(worker.memory_nodes.begin(), worker.memory_nodes.end());
  worker.memory_nodes.erase(std::unique(worker.memory_nodes.begin(), worker.memory_nodes.end()),
                            worker.memory_nodes.end());
  worker.threads = static_cast<int>(worker.cpus.size());
  return worker;
}

std::vector<int> range_of_cores(int first, int count) {
  std::vector<int> cores(count);
  for (int i = 0; i < count; ++i) cores[i] = first + i;
  return cores;
}

// Cores (positions in core_list) whose node position is in `nodes`.
std::vector<int> cores_on_nodes(const MachineInfo& machine, const std::vector<int>& nodes) {
  std::vector<int> cores;
  for (int c = 0; c < machine.cores; ++c) {
    const int node = machine.core_list[c].node;
    if (std::find(nodes.begin(), nodes.end(), node) != nodes.end()) cores.push_back(c);
  }
  return cores;
}

int distance(const MachineInfo& machine, int a, int b) {
  if (machine.distances.empty()) return 0;
  return machine.distances[a][b];
}

// Groups the nodes that have cores into sets of k nodes of one package: each group starts
// at the first ungrouped node and adds the ungrouped nodes closest to the group so far
// (smallest sum of distances; ties go to the lower logical index).
std::vector<std::vector<int>> group_nodes(const MachineInfo& machine, int k,
                                          const std::string& layout) {
  std::vector<std::vector<int>> groups;
  for (int package = 0; package < machine.packages; ++package) {
    std::vector<int> remaining;
    for (int n = 0; n < static_cast<int>(machine.numa_nodes.size()); ++n) {
      const NumaNodeInfo& node = machine.numa_nodes[n];
      if (node.cores > 0 && node.package == package) remaining.push_back(n);
    }
    if (remaining.empty()) continue;
    if (remaining.size() % k != 0) {
      throw UsageError(
          fmt::format("layout '{}': {} does not divide the {} NUMA nodes of package {}", layout, k,
                      remaining.size(), package));
    }
    while (!remaining.empty()) {
      std::vector<int> group{remaining.front()};
      remaining.erase(remaining.begin());
      while (static_cast<int>(group.size()) < k) {
        auto best = remaining.begin();
        long best_sum = std::numeric_limits<long>::max();
        for (auto it = remaining.begin(); it != remaining.end(); ++it) {
          long sum = 0;
          for (int member : group) sum += distance(machine, member, *it);
          if (sum < best_sum) {
            best_sum = sum;
            best = it;
          }
        }
        group.push_back(*best);
        remaining.erase(best);
      }
      std::sort(group.begin(), group.end());
      groups.push_back(std::move(group));
    }
  }
  return groups;
}

}  // namespace

MemoryPolicy parse_memory_policy(const std::string& name) {
  if (name == "local") return MemoryPolicy::kLocal;
  if (name == "interleave") return MemoryPolicy::kInterleave;
  throw UsageError("unknown memory policy '" + name + "' (expected local or interleave)");
}

std::string memory_policy_name(MemoryPolicy policy) {
  return policy == MemoryPolicy::kLocal ? "local" : "interleave";
}

std::vector<int> cpus_of_share(const MachineInfo& machine, int index, int count) {
  if (count < 1 || index < 0 || index >= count || count > machine.cores) {
    throw Error(
        fmt::format("cannot split {} cores into share {} of {}", machine.cores, index, count));
  }
  const auto first = static_cast<size_t>(static_cast<int64_t>(machine.cores) * index / count);
  const auto end = static_cast<size_t>(static_cast<int64_t>(machine.cores) * (index + 1) / count);
  std::vector<int> cpus;
  for (size_t c = first; c < end; ++c) {
    const auto& pus = machine.core_list[c].pus;
    cpus.insert(cpus.end(), pus.begin(), pus.end());
  }
  std::sort(cpus.begin(), cpus.end());
  return cpus;
}

bool is_layout_name(const std::string& layout) {
  if (layout == "single" || layout == "numa" || layout == "l3" || layout == "core") return true;
  int value = 0, other = 0;
  const std::size_t colon = layout.find(':');
  if (colon != std::string::npos) {
    const std::string head = layout.substr(0, colon);
    return (head == "single" || head == "numa") && parse_positive(layout.substr(colon + 1), value);
  }
  const std::size_t x = layout.find('x');
  return x != std::string::npos && parse_positive(layout.substr(0, x), value) &&
         parse_positive(layout.substr(x + 1), other);
}

Plan plan_layout(const MachineInfo& machine, const std::string& layout, MemoryPolicy policy) {
  Plan plan;
  plan.layout = layout;
  plan.policy = policy;
  if (machine.cores <= 0) throw Error("the topology has no cores to place workers on");
  auto add = [&](const std::vector<int>& cores) {
    plan.workers.push_back(make_worker(machine, cores, static_cast<int>(plan.workers.size())));
  };

  const std::size_t colon = layout.find(':');
  const std::size_t x = layout.find('x');
  const std::string head = layout.substr(0, colon);
  const std::string tail = colon == std::string::npos ? "" : layout.substr(colon + 1);
  int value = 0;

  if (layout == "single") {
    add(range_of_cores(0, machine.cores));
  } else if (head == "single" && parse_positive(tail, value)) {
    if (value > machine.cores) {
      throw UsageError(fmt::format("layout '{}': {} threads but the machine has {} cores", layout,
                                   value, machine.cores));
    }
    add(range_of_cores(0, value));
  } else if (layout == "numa") {
    for (int n = 0; n < static_cast<int>(machine.numa_nodes.size()); ++n) {
      if (machine.numa_nodes[n].cores > 0) add(cores_on_nodes(machine, {n}));
    }
    if (plan.workers.empty())
      throw Error("layout 'numa': the topology has no NUMA node with cores");
  } else if (head == "numa" && parse_positive(tail, value)) {
    for (const auto& group : group_nodes(machine, value, layout)) {
      add(cores_on_nodes(machine, group));
    }
  } else if (layout == "l3") {
    if (machine.l3_domains.empty()) {
      throw UsageError("layout 'l3': the topology has no L3 cache information");
    }
    for (int d = 0; d < static_cast<int>(machine.l3_domains.size()); ++d) {
      std::vector<int> cores;
      for (int c = 0; c < machine.cores; ++c) {
        if (machine.core_list[c].l3 == d) cores.push_back(c);
      }
      if (!cores.empty()) add(cores);
    }
  } else if (layout == "core") {
    for (int c = 0; c < machine.cores; ++c) add({c});
  } else if (colon == std::string::npos && x != std::string::npos) {
    int jobs = 0;
    int threads = 0;
    if (!parse_positive(layout.substr(0, x), jobs) ||
        !parse_positive(layout.substr(x + 1), threads)) {
      throw unknown_layout(layout);
    }
    if (static_cast<long>(jobs) * threads > machine.cores) {
      throw UsageError(
          fmt::format("layout '{}': {} workers x {} threads need {} cores, the machine has {}",
                      layout, jobs, threads, static_cast<long>(jobs) * threads, machine.cores));
    }
    for (int j = 0; j < jobs; ++j) add(range_of_cores(j * threads, threads));
  } else {
    throw unknown_layout(layout);
  }
  return plan;
}

std::vector<WorkerPlan> reserve_cpus(Plan& plan, int count) {
  size_t pus = 0;
  for (const auto& worker : plan.workers) pus += worker.cpus.size();
  if (count <= 0 || pus <= static_cast<size_t>(count)) return {};
  std::vector<WorkerPlan> reserved;
  while (static_cast<int>(reserved.size()) < count) {
    WorkerPlan& last = plan.workers.back();
    WorkerPlan taken;
    taken.index = static_cast<int>(reserved.size());
    taken.cpus = {last.cpus.back()};
    taken.memory_nodes = last.memory_nodes;
    taken.threads = 1;
    reserved.push_back(taken);
    last.cpus.pop_back();
    last.threads = std::min(last.threads, static_cast<int>(last.cpus.size()));
    if (last.cpus.empty()) plan.workers.pop_back();
  }
  return reserved;
}

std::vector<WorkerPlan> reserve_feeder_cpus(const MachineInfo& machine, Plan& plan, int count) {
  if (count <= 0) return {};
  std::set<int> planned;
  for (const auto& worker : plan.workers) planned.insert(worker.cpus.begin(), worker.cpus.end());
  std::vector<WorkerPlan> reserved;
  for (const CoreInfo& core : machine.core_list) {
    if (static_cast<int>(reserved.size()) == count) break;
    const bool idle = std::none_of(core.pus.begin(), core.pus.end(),
                                   [&](int pu) { return planned.count(pu) > 0; });
    if (!idle) continue;
    WorkerPlan taken;
    taken.index = static_cast<int>(reserved.size());
    taken.cpus = {core.pus.front()};
    if (core.node >= 0) taken.memory_nodes = {machine.numa_nodes[core.node].os_index};
    taken.threads = 1;
    reserved.push_back(taken);
  }
  const int missing = count - static_cast<int>(reserved.size());
  if (missing > 0) {
    Plan trial = plan;
    std::vector<WorkerPlan> from_plan = reserve_cpus(trial, missing);
    if (from_plan.empty()) return {};
    // Memory where the PUs are: a taken PU gets its own node, and a worker that gave PUs away
    // keeps only the nodes of those it still has.
    std::map<int, int> node_of_pu;
    for (const CoreInfo& core : machine.core_list) {
      if (core.node < 0) continue;
      for (const int pu : core.pus) node_of_pu[pu] = machine.numa_nodes[core.node].os_index;
    }
    const auto nodes_of = [&](const std::vector<int>& cpus, std::vector<int> fallback) {
      std::set<int> nodes;
      for (const int pu : cpus) {
        const auto it = node_of_pu.find(pu);
        if (it != node_of_pu.end()) nodes.insert(it->second);
      }
      return nodes.empty() ? fallback : std::vector<int>(nodes.begin(), nodes.end());
    };
    for (WorkerPlan& worker : trial.workers)
      worker.memory_nodes = nodes_of(worker.cpus, worker.memory_nodes);
    plan = std::move(trial);
    for (auto& worker : from_plan) {
      worker.index = static_cast<int>(reserved.size());
      worker.memory_nodes = nodes_of(worker.cpus, worker.memory_nodes);
      reserved.push_back(std::move(worker));
    }
  }
  return reserved;
}

std::vector<std::string> split_layout_list(const std::string& list) {
  std::vector<std::string> items;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t comma = std::min(list.find(',', start), list.size());
    std::string item = list.substr(start, comma - start);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) items.push_back(item);
    start = comma + 1;
  }
  return items;
}

std::vector<int> parse_cpu_list(const std::string& text) {
  std::vector<int> cpus;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(pos, end - pos);
    const size_t dash = item.find('-');
    try {
      size_t used = 0;
      const int first = std::stoi(item.substr(0, dash), &used);
      if (used != (dash == std::string::npos ? item.size() : dash))
        throw std::invalid_argument(item);
      int last = first;
      if (dash != std::string::npos) {
        last = std::stoi(item.substr(dash + 1), &used);
        if (used != item.size() - dash - 1) throw std::invalid_argument(item);
      }
      if (first < 0 || last < first) throw std::invalid_argument(item);
      for (int cpu = first; cpu <= last; ++cpu) cpus.push_back(cpu);
    } catch (const std::logic_error&) {
      throw UsageError("bad cpu list '" + text + "' (expected e.g. 0-3,8)");
    }
    pos = end + 1;
  }
  return cpus;
}

std::string cpu_list_string(std::vector<int> cpus) {
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  std::string out;
  for (std::size_t i = 0; i < cpus.size();) {
    std::size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += j == i ? std::to_string(cpus[i]) : fmt::format("{}-{}", cpus[i], cpus[j]);
    i = j + 1;
  }
  return out;
}

std::string ort_thread_affinities(const std::vector<int>& cpus, int threads) {
  if (threads > static_cast<int>(cpus.size())) {
    throw std::invalid_argument(
        fmt::format("{} threads for {} cpus in an ORT affinity list", threads, cpus.size()));
  }
  std::string out;
  for (int i = 1; i < threads; ++i) {
    if (i > 1) out += ';';
    out += std::to_string(cpus[i] + 1);
  }
  return out;
}

std::string ort_thread_affinities(const WorkerPlan& worker) {
  return ort_thread_affinities(worker.cpus, worker.threads);
}

Table plan_table(const Plan& plan) {
  Table table({{"worker", "worker", -1, true},
               {"cpus", "cpus", -1, false},
               {"memory_nodes", "memory nodes", -1, false},
               {"threads", "threads", -1, true}});
  for (const auto& worker : plan.workers) {
    table.add_row({worker.index, cpu_list_string(worker.cpus), cpu_list_string(worker.memory_nodes),
                   worker.threads});
  }
  return table;
}

}  // namespace tessera
