// tessera report: Markdown tables and SVG charts from one or more `tessera bench --format json`
// files.

#include <iostream>
#include <memory>

#include "tessera/bench/report.h"
#include "tessera/cli/commands.h"
#include "tessera/cli/output_checks.h"

namespace tessera::cli {

void add_report_command(CLI::App& root) {
  auto* cmd = root.add_subcommand("report",
                                  "Write a Markdown report with SVG charts from bench JSON files");
  auto options = std::make_shared<ReportOptions>();
  cmd->add_option("--from", options->inputs, "bench JSON files (tessera bench --format json)")
      ->required();
  cmd->add_option("-o,--output", options->markdown_path, "Markdown file to write, e.g. report.md")
      ->required();
  cmd->add_option(
      "--svg-dir", options->svg_dir,
      "Directory for the SVG charts (default: <report stem>_charts next to the report)");
  cmd->callback([options] {
    check_output_location(options->markdown_path);
    const auto written = write_report(*options);
    for (const auto& path : written) std::cout << "wrote " << path << "\n";
  });
}

}  // namespace tessera::cli
