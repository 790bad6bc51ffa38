// tessera topo: what the machine looks like (packages, NUMA nodes, L3 domains, distances, GPUs)
// and, with --plan, where the workers of a layout would run.

#include <filesystem>
#include <memory>
#include <optional>

#include "tessera/cli/commands.h"
#include "tessera/cli/output_checks.h"
#include "tessera/cli/table_output.h"
#include "tessera/common/error.h"
#include "tessera/io/atomic_file.h"
#include "tessera/topology/cpu_features.h"
#include "tessera/topology/placement.h"
#include "tessera/topology/report.h"
#include "tessera/topology/topology.h"

namespace tessera::cli {

void add_topo_command(CLI::App& root) {
  auto* cmd = root.add_subcommand("topo", "Show the machine's topology and a placement plan");
  struct Args {
    std::string xml, synthetic, distances, cpu_model, export_path, plan;
    std::string membind = "local";
    TableOutput output;
    bool force = false;
  };
  auto args = std::make_shared<Args>();
  auto* xml = cmd->add_option("--topology", args->xml,
                              "hwloc XML file to describe instead of this machine "
                              "(e.g. data/topologies/epyc-9965-2s.xml)");
  auto* synthetic =
      cmd->add_option("--synthetic", args->synthetic,
                      "hwloc synthetic description, e.g. 'pack:2 numa:12 core:16 pu:2'");
  xml->excludes(synthetic);
  cmd->add_option("--distances", args->distances,
                  "NUMA distances to attach: 'LOCAL,SAME_PACKAGE,CROSS_PACKAGE' (e.g. 10,11,32) "
                  "or a full matrix 'a,b;c,d'");
  cmd->add_option("--cpu-model", args->cpu_model, "CPU model name to attach to every package");
  cmd->add_option("--export", args->export_path,
                  "Write the topology (with distances) as hwloc XML");
  cmd->add_flag("--force", args->force, "Overwrite an existing --export or -o file");
  cmd->add_option("--plan", args->plan,
                  "Placement layout to plan: single, single:T, numa, numa:K, l3, core, JxT");
  cmd->add_option("--membind", args->membind, "Memory policy of the plan: local or interleave")
      ->capture_default_str();
  add_table_output_options(*cmd, args->output, "md or json", false);

  cmd->callback([args, cmd] {
    args->output.force = args->force;
    const OutputFormat format = resolve_table_output("topo", args->output, {args->xml});
    if (format == OutputFormat::kCsv)
      throw UsageError("topo: output format csv is not supported (use md or json)");
    const MemoryPolicy policy = parse_memory_policy(args->membind);
    if (cmd->count("--synthetic") && args->synthetic.empty())
      throw UsageError("topo: --synthetic needs a description, e.g. 'pack:2 numa:12 core:16 pu:2'");
    if (!args->export_path.empty()) {
      check_new_output(args->export_path, args->force, {args->xml});
      // The table would replace the export it follows.
      if (!args->output.path.empty() && std::filesystem::weakly_canonical(args->output.path) ==
                                            std::filesystem::weakly_canonical(args->export_path)) {
        throw UsageError("topo: " + args->export_path +
                         " is both the --export file and the -o file");
      }
    }
    Topology topology = !args->xml.empty()         ? Topology::from_xml(args->xml)
                        : !args->synthetic.empty() ? Topology::from_synthetic(args->synthetic)
                                                   : Topology::this_machine();
    if (!args->distances.empty()) {
      topology.set_numa_distances(parse_distances(args->distances, topology.info()));
    }
    if (!args->cpu_model.empty()) topology.set_cpu_model(args->cpu_model);
    MachineInfo machine = topology.info();
    if (args->xml.empty() && args->synthetic.empty()) machine.cpu_features = this_cpu_features();
    std::optional<Plan> plan;
    if (!args->plan.empty()) plan = plan_layout(machine, args->plan, policy);
    if (!args->export_path.empty()) {
      const std::string xml = topology.xml();
      AtomicFile file(args->export_path);
      file.write(xml.data(), xml.size());
      file.commit();
    }
    const Plan* plan_ptr = plan ? &*plan : nullptr;
    write_table_output(args->output, format == OutputFormat::kJson
                                         ? topology_json(machine, plan_ptr).dump(2) + "\n"
                                         : topology_markdown(machine, plan_ptr));
  });
}

}  // namespace tessera::cli
