// tessera tune: successive-halving search for the fastest layout x batch; writes a profile.

#include <iostream>

#include "tessera/cli/commands.h"
#include "tessera/cli/engine_flags.h"
#include "tessera/cli/output_checks.h"
#include "tessera/cli/status_line.h"
#include "tessera/cli/table_output.h"
#include "tessera/cli/validators.h"
#include "tessera/common/error.h"
#include "tessera/engine/engine_spec.h"
#include "tessera/model/default_model.h"
#include "tessera/tune/tune.h"

namespace tessera::cli {

namespace {

// The ranking (and the verify sweep) in `format`, then what the search left out.
void print_tune_result(const TuneResult& result, OutputFormat format, const std::string& profile,
                       double budget_s) {
  switch (format) {
    case OutputFormat::kMarkdown:
      std::cout << ranking_table(result.search.ranking).to_markdown() << "\n"
                << tune_summary(result, budget_s);
      if (result.verified)
        std::cout << "\nsweep:\n" << ranking_table(fastest_first(result.sweep.rows)).to_markdown();
      if (!profile.empty()) std::cout << "profile: " << profile << "\n";
      for (const auto& line : result.skipped) std::cout << "skipped: " << line << "\n";
      break;
    case OutputFormat::kCsv:
      std::cout << ranking_table(result.search.ranking).to_csv();
      break;
    case OutputFormat::kJson: {
      nlohmann::json doc = profile_json(result.profile);
      if (result.verified) {
        doc["verify"] = {{"sweep", ranking_table(fastest_first(result.sweep.rows)).to_json()},
                         {"sweep_seconds", result.sweep.seconds},
                         {"gap_percent", result.gap_percent},
                         {"time_fraction", result.time_fraction}};
      }
      std::cout << doc.dump(2) << "\n";
      break;
    }
  }
}

}  // namespace

void add_tune_command(CLI::App& root) {
  auto* cmd = root.add_subcommand(
      "tune", "Find the fastest engine x layout x batch size for this machine and write a profile");
  struct Args {
    std::string model, device = "cpu", budget = "120s", profile, format = "md", membind = "local";
    std::string steps;
    std::vector<std::string> layouts, engines{kOrtBackend}, precisions{""};
    std::vector<int64_t> batch_sizes{32, 64, 128, 256, 512, 1024};
    int reps = 3;
    int64_t start_pixels = 0;
    int growth = 8;
    bool verify = false, no_spin = false, force = false, quiet = false;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("-m,--model", args->model,
                  "ONNX model (default: the built-in Tessera model, made if missing)");
  cmd->add_option("--device", args->device, "cpu or cuda:N")->capture_default_str();
  cmd->add_option("--engine", args->engines,
                  "Engines to search, comma separated: " + backend_choices())
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--precision", args->precisions,
                  "Precisions to search, comma separated: " + precision_choices_by_device() +
                      " (only these: a precision changes the numbers); default: each engine's "
                      "own (fp32 on CPUs)")
      ->delimiter(',');
  cmd->add_option("--budget", args->budget,
                  "Wall-clock budget for the search, engine builds included: 120, 120s, 2m, 1h")
      ->capture_default_str();
  auto* output = cmd->add_option("-o,--output", args->profile,
                                 "Write the chosen plan as a profile (JSON) here");
  auto* old_output = cmd->add_option("--out", args->profile)->group("");
  cmd->add_flag("--force", args->force, "Replace an existing -o profile");
  cmd->add_option("--layouts", args->layouts,
                  "Layouts to try, comma separated (default: every distinct layout of this "
                  "machine)")
      ->delimiter(',');
  auto* batch =
      cmd->add_option("-b,--batch", args->batch_sizes, "Batch sizes to try, comma separated")
          ->delimiter(',')
          ->capture_default_str();
  auto* old_batch = cmd->add_option("--batch-list", args->batch_sizes)->delimiter(',')->group("");
  cmd->add_option("-r,--reps", args->reps, "Repetitions per measurement (for the CI)")
      ->capture_default_str();
  cmd->add_option("--start-pixels", args->start_pixels,
                  "Pixels per job and repetition in round 1 (default: twice the smallest batch)")
      ->check(positive_finite());
  cmd->add_option("--growth", args->growth,
                  "Work multiplier from one round to the next (at least 2)")
      ->capture_default_str();
  cmd->add_option("--membind", args->membind, "Memory policy per worker: local or interleave")
      ->capture_default_str();
  cmd->add_flag("--no-spin", args->no_spin, "Turn off ORT's intra-op thread spinning");
  cmd->add_option("--steps", args->steps,
                  "Steps per run, N or S2/S1, for models with symbolic step axes (v1.0 early, "
                  "v1.1, v2: 1..256; default 40): tune at your tiles' lengths (a realistic v1.1 "
                  "tile's pixels average about 68/61 after rounding up to their bucket)");
  cmd->add_flag("--verify", args->verify,
                "Also run the exhaustive sweep and compare its best with tune's choice");
  cmd->add_option("--format", args->format, "Ranking format: md, csv or json")
      ->capture_default_str();
  cmd->add_flag("-q,--quiet", args->quiet,
                "No progress on stderr (by default one line per finished measurement and round, "
                "timestamped when stderr is no terminal)");

  cmd->callback([args, output, old_output, batch, old_batch] {
    // Old spellings (table_output.h): -o was always a path here, so any value is one.
    check_renamed_option("tune", *output, *old_output, "the profile's path");
    check_renamed_option("tune", *batch, *old_batch, "the batch sizes");
    const OutputFormat format = parse_output_format(args->format);
    // The profile never replaces the model (the built-in one without -m); an existing file only
    // with --force.
    if (!args->profile.empty()) {
      check_new_output(args->profile, args->force,
                       {args->model.empty() ? default_model_path() : args->model});
    }
    TuneOptions options;
    options.model_path = args->model.empty() ? ensure_default_model(true) : args->model;
    options.device = parse_device(args->device);
    options.engines = args->engines;
    options.precisions = parse_precisions(args->precisions);
    options.budget_s = parse_budget(args->budget);
    options.layouts = args->layouts;
    options.batch_sizes = args->batch_sizes;
    options.reps = args->reps;
    options.initial_work = args->start_pixels;
    options.growth = args->growth;
    options.membind = args->membind;
    options.spinning = !args->no_spin;
    options.verify = args->verify;
    if (!args->steps.empty()) parse_steps_option(args->steps, options.s2_steps, options.s1_steps);
    const StatusLine status("tessera tune", args->quiet);
    options.progress = status.callback();
    options.done = status.done_callback();
    const TuneResult result = tune(options);
    status.clear();
    if (!args->profile.empty()) write_profile(result.profile, args->profile);
    print_tune_result(result, format, args->profile, options.budget_s);
  });
}

}  // namespace tessera::cli
