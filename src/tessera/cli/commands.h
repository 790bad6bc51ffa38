#pragma once
// One function per subcommand, each in its own file: it declares the subcommand's options on
// `root` and sets the callback that runs it. Callbacks throw tessera::Error on failure; main()
// turns that into one line on stderr and a non-zero exit.

#include <CLI/CLI.hpp>

namespace tessera::cli {

void add_make_model_command(CLI::App& root);
void add_convert_model_command(CLI::App& root);
void add_bench_command(CLI::App& root);
void add_bench_worker_command(CLI::App& root);
void add_project_command(CLI::App& root);
void add_report_command(CLI::App& root);
void add_topo_command(CLI::App& root);
void add_synth_command(CLI::App& root);
void add_infer_command(CLI::App& root);
void add_export_command(CLI::App& root);
void add_run_model_command(CLI::App& root);
void add_tune_command(CLI::App& root);
void add_compare_command(CLI::App& root);
void add_import_command(CLI::App& root);

}  // namespace tessera::cli
