#include "tessera/topology/report.h"

#include <fmt/format.h>

#include <algorithm>

namespace tessera {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string gpu_list(const MachineInfo& machine) {
  if (machine.gpus.empty()) return "none";
  std::string out;
  for (const auto& gpu : machine.gpus) out += (out.empty() ? "" : ", ") + gpu;
  return out;
}

// "AVX2, AVX-512, AVX512_VNNI (int8), AVX512_BF16 (bf16)": the features, each with the reduced
// precision it lets the native engine run.
std::string feature_list(const MachineInfo& machine) {
  std::string out;
  for (const std::string& feature : machine.cpu_features) {
    out += (out.empty() ? "" : ", ") + feature;
    if (feature == "AVX512_VNNI" || feature == "AMX-INT8") out += " (int8)";
    if (feature == "AVX512_BF16" || feature == "AMX-BF16") out += " (bf16)";
  }
  return out;
}

}  // namespace

Table machine_summary_table(const MachineInfo& machine) {
  Table table({{"property", "property", -1, false}, {"value", "value", -1, false}});
  table.add_row({"CPU model", machine.cpu_model});
  table.add_row({"packages", std::to_string(machine.packages)});
  table.add_row({"NUMA nodes", std::to_string(machine.numa_nodes.size())});
  table.add_row({"cores", std::to_string(machine.cores)});
  table.add_row({"PUs", std::to_string(machine.pus)});
  table.add_row({"memory", fmt::format("{:.1f} GiB", machine.memory_bytes() / kGiB)});
  table.add_row({"L3 domains", std::to_string(machine.l3_domains.size())});
  table.add_row({"GPUs", gpu_list(machine)});
  if (!machine.cpu_features.empty()) table.add_row({"CPU features", feature_list(machine)});
  return table;
}

Table numa_node_table(const MachineInfo& machine) {
  Table table({{"node", "node", -1, true},
               {"package", "package", -1, true},
               {"cores", "cores", -1, true},
               {"cpus", "cpus", -1, false},
               {"memory_gib", "memory GiB", 1, true}});
  for (const auto& node : machine.numa_nodes) {
    table.add_row({node.os_index, node.package, node.cores, cpu_list_string(node.cpus),
                   node.memory_bytes / kGiB});
  }
  return table;
}

std::string distance_matrix_text(const MachineInfo& machine) {
  if (machine.distances.empty()) return "node distances unknown\n";
  int width = 3;
  for (const auto& node : machine.numa_nodes) {
    width = std::max(width, static_cast<int>(std::to_string(node.os_index).size()) + 1);
  }
  std::string out = "node";
  for (const auto& node : machine.numa_nodes) out += fmt::format(" {:>{}}", node.os_index, width);
  out += '\n';
  for (std::size_t i = 0; i < machine.numa_nodes.size(); ++i) {
    out += fmt::format("{:>3}:", machine.numa_nodes[i].os_index);
    for (int value : machine.distances[i]) out += fmt::format(" {:>{}}", value, width);
    out += '\n';
  }
  return out;
}

std::string topology_markdown(const MachineInfo& machine, const Plan* plan) {
  std::string out = "## Machine\n\n" + machine_summary_table(machine).to_markdown();
  out += "\n## NUMA nodes\n\n" + numa_node_table(machine).to_markdown();
  out += "\n## Node distances\n\n```\n" + distance_matrix_text(machine) + "```\n";
  if (plan != nullptr) {
    out += fmt::format("\n## Plan: {} ({} workers, memory {})\n\n", plan->layout,
                       plan->workers.size(), memory_policy_name(plan->policy));
    out += plan_table(*plan).to_markdown();
  }
  return out;
}

nlohmann::json topology_json(const MachineInfo& machine, const Plan* plan) {
  nlohmann::json nodes = nlohmann::json::array();
  for (const auto& node : machine.numa_nodes) {
    nodes.push_back({{"os_index", node.os_index},
                     {"package", node.package},
                     {"cores", node.cores},
                     {"cpus", node.cpus},
                     {"memory_bytes", node.memory_bytes}});
  }
  nlohmann::json out = {{"cpu_model", machine.cpu_model},
                        {"packages", machine.packages},
                        {"numa_nodes", nodes},
                        {"l3_domains", machine.l3_domains.size()},
                        {"cores", machine.cores},
                        {"pus", machine.pus},
                        {"memory_bytes", machine.memory_bytes()},
                        {"distances", machine.distances},
                        {"gpus", machine.gpus},
                        {"cpu_features", machine.cpu_features}};
  if (plan != nullptr) {
    nlohmann::json workers = nlohmann::json::array();
    for (const auto& worker : plan->workers) {
      workers.push_back(
          {{"index", worker.index},
           {"cpus", worker.cpus},
           {"memory_nodes", worker.memory_nodes},
           {"threads", worker.threads},
           {"ort_thread_affinities", ort_thread_affinities(worker.cpus, worker.threads)}});
    }
    out["plan"] = {{"layout", plan->layout},
                   {"membind", memory_policy_name(plan->policy)},
                   {"workers", workers}};
  }
  return out;
}

}  // namespace tessera
