// tessera bench: the study's benchmark (thread / batch / layout / device sweeps) in one command.

#include <fmt/format.h>

#include <cstdlib>
#include <iostream>

#include "tessera/bench/bench.h"
#include "tessera/cli/commands.h"
#include "tessera/cli/engine_flags.h"
#include "tessera/cli/status_line.h"
#include "tessera/cli/table_output.h"
#include "tessera/cli/validators.h"
#include "tessera/common/error.h"
#include "tessera/engine/engine_spec.h"
#include "tessera/model/default_model.h"
#include "tessera/model/model_info.h"
#include "tessera/topology/placement.h"
#include "tessera/tune/profile.h"

namespace tessera::cli {

namespace {

// What bench's flags hold, after parsing.
struct BenchArgs {
  std::string model;
  std::vector<std::string> devices{"cpu"};
  std::vector<std::string> engines{kOrtBackend};
  std::vector<std::string> precisions;
  std::vector<std::string> layouts;
  std::vector<int> threads;
  std::vector<int64_t> batch_sizes{256};
  int batches = 10, reps = 3, warmup = 2, baseline = 1;
  std::map<std::string, std::string> backend_options;  // engine_flags.h
  std::string membind = "local", spawn = "thread";
  TableOutput output;
  double gpu_baseline = 0;
  bool no_spin = false, no_pin = false, quiet = false, profile_stages = false;
  double peak_gops = 0;
  uint64_t seed = 1;
  std::string profile;
  std::string steps;
};

// The callback of `tessera bench`: options from the flags (and --profile), the sweep, the
// table.
void run_bench_command(BenchArgs& args, const CLI::App& cmd) {
  const OutputFormat format =
      resolve_table_output("bench", args.output, {args.model, args.profile});
  BenchOptions options;
  options.model_path = args.model.empty() ? ensure_default_model(true) : args.model;
  options.devices.clear();
  for (const auto& device : args.devices) options.devices.push_back(parse_device(device));
  options.layouts = args.layouts;
  options.threads = args.threads;
  if (options.threads.empty()) options.threads = {default_thread_count()};
  options.batch_sizes = args.batch_sizes;
  options.batches = args.batches;
  options.reps = args.reps;
  options.warmup = args.warmup;
  options.baseline = args.baseline;
  options.membind = args.membind;
  options.spawn = args.spawn;
  options.gpu_baseline_ms_per_pixel = args.gpu_baseline;
  options.engines = args.engines;
  if (!args.precisions.empty()) options.precisions = parse_precisions(args.precisions);
  options.backend_options = args.backend_options;
  options.spinning = !args.no_spin;
  options.pin = !args.no_pin;
  options.seed = args.seed;
  options.profile_stages = args.profile_stages;
  if (args.peak_gops > 0 && !args.profile_stages)
    throw UsageError("--peak-gops needs --profile-stages");
  if (!args.steps.empty()) parse_steps_option(args.steps, options.s2_steps, options.s1_steps);
  if (!args.profile.empty()) {
    const std::string warning =
        apply_profile(args.profile, options,
                      {.layout = cmd.count("--layout") + cmd.count("--threads") > 0,
                       .batch = cmd.count("--batch") > 0,
                       .membind = cmd.count("--membind") > 0,
                       .engine = cmd.count("--engine") > 0,
                       .precision = cmd.count("--precision") > 0});
    if (!warning.empty()) std::cerr << "tessera: warning: " << warning << "\n";
  }
  const StatusLine status("tessera bench", args.quiet);
  options.progress = status.callback();
  options.done = status.done_callback();
  const BenchResult result = run_bench(options);
  status.clear();
  switch (format) {
    case OutputFormat::kMarkdown:
      write_table_output(
          args.output,
          bench_table(result).to_markdown() + "\n" + bench_footer(result) + "\n" +
              skipped_lines(result) +
              (args.profile_stages ? bench_stage_tables(result, args.peak_gops) : std::string()));
      break;
    case OutputFormat::kCsv:
      write_table_output(args.output, bench_table(result).to_csv());
      break;
    case OutputFormat::kJson:
      write_table_output(args.output, bench_json(result).dump(2) + "\n");
      break;
  }
  // The table is out, failed cases included; the exit status still says that some failed.
  if (const std::string failures = bench_failures(result); !failures.empty()) {
    throw Error(failures);
  }
}

}  // namespace

void add_bench_command(CLI::App& root) {
  auto* cmd = root.add_subcommand(
      "bench", "Time the model over a sweep of devices, layouts, threads and batch sizes");
  auto args = std::make_shared<BenchArgs>();
  cmd->add_option("--profile", args->profile,
                  "Take layout, batch, membind, engine and precision defaults from a `tessera "
                  "tune` profile");
  cmd->add_option("-m,--model", args->model,
                  "ONNX model (default: the built-in Tessera model, made if missing)");
  cmd->add_option("--device", args->devices, "Devices, comma separated: cpu, cuda:N[+io|+graph]")
      ->delimiter(',');
  cmd->add_option("--engine", args->engines, "Engines, comma separated: " + backend_choices())
      ->delimiter(',')
      ->capture_default_str();
  auto* layouts =
      cmd->add_option(
             "--layout", args->layouts,
             "Placement layouts, comma separated: single, single:T, numa, numa:K, l3, core, JxT")
          ->delimiter(',');
  cmd->add_option("-t,--threads", args->threads,
                  "Thread counts for the single layout (default: all cores)")
      ->delimiter(',')
      ->excludes(layouts);
  cmd->add_option("-b,--batch", args->batch_sizes, "Batch sizes in pixels, comma separated")
      ->delimiter(',');
  cmd->add_option("--batches", args->batches, "Timed batches per repetition and worker")
      ->capture_default_str();
  cmd->add_option("-r,--reps", args->reps, "Repetitions")->capture_default_str();
  cmd->add_option("--warmup", args->warmup, "Untimed warm-up batches")->capture_default_str();
  cmd->add_option("--baseline", args->baseline, "Row (1-based) that speedups are relative to")
      ->capture_default_str();
  cmd->add_option("--membind", args->membind, "Memory policy per worker: local or interleave")
      ->capture_default_str();
  cmd->add_option(
         "--spawn", args->spawn,
         "Workers as threads of one process (thread) or as pinned child processes (process)")
      ->capture_default_str();
  cmd->add_option("--gpu-baseline", args->gpu_baseline,
                  "GPU ms/pixel to compare against (adds a vs GPU column)")
      ->check(positive_finite());
  cmd->add_option("--precision", args->precisions,
                  "Precisions, comma separated: " + precision_choices_by_device() +
                      "; default: each engine's own (fp32 on CPUs, tf32 on GPUs)")
      ->delimiter(',');
  add_backend_option_flags(*cmd, args->backend_options);
  cmd->add_flag("--no-spin", args->no_spin, "Turn off ORT's intra-op thread spinning");
  cmd->add_flag("--no-pin", args->no_pin,
                "Leave workers and ORT's threads unbound (a plain ORT program), to compare");
  cmd->add_flag("--profile-stages", args->profile_stages,
                "Time the engine's stages (GEMMs by role, attention, norms, primitive creation, "
                "...) in the timed batches: a table per row (md) or \"stages\" (json)");
  cmd->add_option("--peak-gops", args->peak_gops,
                  "One core's peak GFLOP/s (or GOP/s) at the run's precision: adds \"% of peak\" "
                  "to the stage tables")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("-q,--quiet", args->quiet,
                "No progress on stderr (by default one line per finished case, timestamped "
                "when stderr is no terminal)");
  cmd->add_option("--steps", args->steps,
                  "Steps per run, N or S2/S1, for models with symbolic step axes (v1.0 early, "
                  "v1.1, v2: 1..256; default 40). v1.1 pixels average about 68 valid S2 steps");
  cmd->add_option("--seed", args->seed, "Seed of the dummy inputs")
      ->check(unsigned_64bit())
      ->capture_default_str();
  add_table_output_options(*cmd, args->output, "md, csv or json");

  cmd->callback([args, cmd] { run_bench_command(*args, *cmd); });
}

void add_bench_worker_command(CLI::App& root) {
  // Internal: one worker of `bench --spawn process`, started by the parent with a control
  // socket on stdin/stdout. Hidden from --help.
  auto* cmd = root.add_subcommand("bench-worker", "")->group("");
  struct Args {
    BenchOptions options;
    std::string device = "cpu", engine = kOrtBackend, precision, cpus, nodes, steps = "0/0";
    int64_t batch = 1;
    int index = 0;
    bool no_spin = false, no_pin = false;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--model", args->options.model_path)->required();
  cmd->add_option("--device", args->device);
  cmd->add_option("--batch", args->batch);
  cmd->add_option("--batches", args->options.batches);
  cmd->add_option("--reps", args->options.reps);
  cmd->add_option("--warmup", args->options.warmup);
  cmd->add_option("--seed", args->options.seed);
  cmd->add_option("--steps", args->steps);
  add_backend_option_flags(*cmd, args->options.backend_options);
  cmd->add_option("--engine", args->engine);
  cmd->add_option("--precision", args->precision);
  cmd->add_option("--membind", args->options.membind);
  cmd->add_option("--index", args->index);
  cmd->add_option("--cpus", args->cpus)->required();
  cmd->add_option("--nodes", args->nodes);
  cmd->add_flag("--no-spin", args->no_spin);
  cmd->add_flag("--no-pin", args->no_pin);
  cmd->callback([args] {
    args->options.spinning = !args->no_spin;
    args->options.pin = !args->no_pin;
    parse_steps_option(args->steps, args->options.s2_steps, args->options.s1_steps, true);
    WorkerPlan worker;
    worker.index = args->index;
    worker.cpus = parse_cpu_list(args->cpus);
    worker.memory_nodes = parse_cpu_list(args->nodes);
    worker.threads = static_cast<int>(worker.cpus.size());
    const EngineSpec engine = parse_engine_spec(args->engine, args->device, args->precision);
    std::exit(run_bench_worker(args->options, engine, args->batch, worker));
  });
}

}  // namespace tessera::cli
