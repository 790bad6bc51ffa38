// tessera project: time and cost of an MGRS tile, a 0.1-degree tile and the planet at a given
// speed (ms/pixel from the command line or from `tessera bench --format json` files).

#include <fmt/format.h>

#include <memory>

#include "tessera/cli/commands.h"
#include "tessera/cli/table_output.h"
#include "tessera/common/error.h"
#include "tessera/report/projection.h"
#include "tessera/report/report.h"

namespace tessera::cli {

void add_project_command(CLI::App& root) {
  auto* cmd = root.add_subcommand(
      "project", "Project time (and cost) per MGRS tile, 0.1-degree tile and planet from ms/pixel");
  struct Args {
    std::vector<std::string> ms_per_pixel;
    std::vector<std::string> from;
    double usd_per_hour = 0;
    int machines = 1;
    TableOutput output;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--ms-per-pixel", args->ms_per_pixel,
                  "Aggregate ms per pixel, comma separated (e.g. 0.43,0.22)");
  cmd->add_option("--from", args->from, "bench JSON files: every ok row becomes a configuration");
  auto* usd = cmd->add_option("--usd-per-hour", args->usd_per_hour,
                              "Price of one machine-hour in USD (adds cost columns)");
  cmd->add_option("--machines", args->machines, "Machines sharing the planet run")
      ->capture_default_str();
  add_table_output_options(*cmd, args->output, "md, csv or json");

  cmd->callback([args, usd] {
    const OutputFormat format = resolve_table_output("project", args->output, args->from);
    std::vector<ProjectionInput> inputs;
    for (const auto& list : args->ms_per_pixel) {
      for (double v : parse_number_list(list, "--ms-per-pixel")) {
        inputs.push_back({fmt::format("{:g} ms/pixel", v), v});
      }
    }
    if (!args->from.empty()) {
      for (auto& input : projection_inputs(load_bench_files(args->from))) {
        inputs.push_back(std::move(input));
      }
    }
    if (inputs.empty()) {
      throw UsageError(
          "nothing to project: give --ms-per-pixel X or --from BENCH.json with ok rows");
    }
    ProjectionOptions options;
    options.machines = args->machines;
    if (usd->count() > 0) options.usd_per_hour = args->usd_per_hour;
    std::vector<Projection> projections;
    for (const auto& input : inputs) projections.push_back(project(input, options));
    switch (format) {
      case OutputFormat::kMarkdown:
        write_table_output(
            args->output,
            projection_table(projections, false).to_markdown() +
                "\nMGRS tile: 10,980 x 10,980 = 120,560,400 px; 0.1-degree tile: 1,000,000 "
                "px; planet: 1,593,480 land tiles. Inference time only.\n");
        break;
      case OutputFormat::kCsv:
        write_table_output(args->output, projection_table(projections, true).to_csv());
        break;
      case OutputFormat::kJson:
        write_table_output(args->output,
                           projection_table(projections, true).to_json().dump(2) + "\n");
        break;
    }
  });
}

}  // namespace tessera::cli
