// tessera report: Markdown tables and SVG charts from one or more `tessera bench --format json`
// files.

#include <iostream>
#include <memory>

#include "tessera/cli/commands.h"
#include "tessera/cli/output_checks.h"
#include "tessera/report/report.h"

namespace tessera::cli {

void add_report_command(CLI::App& root) {
  auto* cmd = root.add_subcommand("report",
                                  "Write a Markdown report with SVG charts from bench JSON files");
  auto options = std::make_shared<ReportOptions>();
  auto force = std::make_shared<bool>(false);
  cmd->add_option("--from", options->inputs, "bench JSON files (tessera bench --format json)")
      ->required();
  cmd->add_option("-o,--output", options->markdown_path, "Markdown file to write, e.g. report.md")
      ->required();
  cmd->add_option(
      "--svg-dir", options->svg_dir,
      "Directory for the SVG charts (default: <report stem>_charts next to the report)");
  cmd->add_flag("--force", *force, "Replace an existing -o report");
  cmd->callback([options, force] {
    // Never one of the bench files read; an existing report only with --force.
    check_new_output(options->markdown_path, *force, options->inputs);
    const auto written = write_report(*options);
    for (const auto& path : written) std::cout << "wrote " << path << "\n";
  });
}

}  // namespace tessera::cli
