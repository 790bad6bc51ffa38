// tessera compare: how far two runs' embeddings of the same tiles are apart (compare/compare.h).

#include <filesystem>
#include <iostream>
#include <memory>

#include "tessera/cli/commands.h"
#include "tessera/cli/table_output.h"
#include "tessera/common/error.h"
#include "tessera/compare/compare.h"

namespace tessera::cli {

void add_compare_command(CLI::App& root) {
  auto* cmd = root.add_subcommand(
      "compare", "Agreement of two runs' embeddings (two output directories or two tiles)");
  struct Args {
    std::string a, b, require;
    TableOutput output;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("a", args->a, "Output directory or <grid>.npy of the reference run")->required();
  cmd->add_option("b", args->b, "Output directory or <grid>.npy of the run to check")->required();
  cmd->add_option("--require", args->require,
                  "Thresholds that make compare exit 1 when missed, e.g. "
                  "equal=99.5,max-diff=1,cosine-mean=0.9999 (keys: equal, within1 [%], "
                  "max-diff, cosine-mean, cosine-q001, cosine-min, scale-rel)");
  add_table_output_options(*cmd, args->output, "md, csv or json");

  cmd->callback([args] {
    // The inputs: A and B, and when they are directories every file in them.
    std::vector<std::string> inputs{args->a, args->b};
    for (const std::string& dir : {args->a, args->b}) {
      std::error_code ec;
      for (auto it = std::filesystem::directory_iterator(dir, ec);
           !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
        inputs.push_back(it->path().string());
    }
    const OutputFormat format = resolve_table_output("compare", args->output, inputs);
    const auto required = parse_requirements(args->require);
    const auto rows = compare_outputs(args->a, args->b);
    const Table table = agreement_table(rows);
    switch (format) {
      case OutputFormat::kMarkdown:
        write_table_output(args->output, table.to_markdown());
        break;
      case OutputFormat::kCsv:
        write_table_output(args->output, table.to_csv());
        break;
      case OutputFormat::kJson:
        write_table_output(args->output, table.to_json().dump(2) + "\n");
        break;
    }
    const auto missed = missed_requirements(rows.back(), required);
    if (!missed.empty()) {
      std::string line = "compare: requirements missed:";
      for (const auto& m : missed) line += " " + m + ";";
      line.pop_back();
      std::cout << std::flush;
      throw Error(line);
    }
  });
}

}  // namespace tessera::cli
