// tessera infer: dpixel tiles -> int8 embeddings + scales (geotessera layout). The flags and the
// progress display; the job itself is infer/infer_job (run_infer_job).

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>

#include "tessera/cli/commands.h"
#include "tessera/cli/table_output.h"
#include "tessera/cli/validators.h"
#include "tessera/common/clock.h"
#include "tessera/common/duration.h"
#include "tessera/common/error.h"
#include "tessera/engine/engine_spec.h"
#include "tessera/infer/infer_job.h"
#include "tessera/tune/profile.h"

namespace tessera::cli {
namespace {

// --dim left out means all of the model's values (dim 0 inside); --dim 0 given is a mistake.
CLI::Validator dim_given_as_zero_refused() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const bool zero = text.find('0') != std::string::npos &&
                          text.find_first_not_of("+-0") == std::string::npos;
        return zero ? "--dim must be 16, 32, 64 or 128, not " + text + " (leave --dim out for all)"
                    : "";
      },
      "16|32|64|128");
}

// Speed and time left of a tile, measured from its first finished pixels: the engines' build and
// the scan before them would otherwise make the early estimates several times too long.
struct ProgressRate {
  int64_t first_done = -1;
  double first_seconds = 0;

  // Pixels per second since the first report with pixels done; 0 until there are two.
  double rate(int64_t done, double seconds) {
    if (done > 0 && first_done < 0) {
      first_done = done;
      first_seconds = seconds;
    }
    const double span = seconds - first_seconds;
    return first_done >= 0 && done > first_done && span > 0
               ? static_cast<double>(done - first_done) / span
               : 0.0;
  }
};

// What the tile is doing, for a progress line: "building engines" before any pixel is done (the
// first tile of a run), else its speed and time left.
std::string progress_state(int64_t done, int64_t total, double rate) {
  if (done == 0) return "building engines and starting";
  if (rate <= 0) return "measuring speed";
  return fmt::format("{:.0f} px/s, ETA {}", rate,
                     human_duration(static_cast<double>(total - done) / rate));
}

// A progress bar on a terminal; a plain, timestamped line every 10 s otherwise.
ProgressCallback make_progress(const std::string& grid, bool tty) {
  auto last_line = std::make_shared<double>(0.0);
  auto speed = std::make_shared<ProgressRate>();
  return [grid, tty, last_line, speed](int64_t done, int64_t total, double seconds) {
    const double fraction =
        total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
    const std::string state = progress_state(done, total, speed->rate(done, seconds));
    if (tty) {
      const int width = 30;
      const int filled = static_cast<int>(fraction * width);
      std::fprintf(stderr, "\r\033[K%s [%s%s] %5.1f%% %s", grid.c_str(),
                   std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                   100 * fraction, state.c_str());
    } else if (seconds - *last_line >= 10.0) {
      *last_line = seconds;
      std::fprintf(stderr, "%s %s: %lld/%lld px (%.1f%%), %s\n", utc_timestamp().c_str(),
                   grid.c_str(), static_cast<long long>(done), static_cast<long long>(total),
                   100 * fraction, state.c_str());
    }
  };
}

// SIGINT (Ctrl-C) and SIGTERM still end the run at once, with the signal's own exit status (130,
// 143); before that, one line says that the finished batches are on disk (the journal is synced
// batch by batch) and how to go on. Only async-signal-safe calls in the handler.
void say_how_to_resume(int signal) {
  static const char kLine[] =
      "\ntessera: interrupted: the finished batches are kept; run the same command again to "
      "resume\n";
  [[maybe_unused]] const ssize_t written = ::write(STDERR_FILENO, kLine, sizeof kLine - 1);
  struct sigaction action {};
  action.sa_handler = SIG_DFL;
  ::sigaction(signal, &action, nullptr);
  ::raise(signal);
}

void say_how_to_resume_when_interrupted() {
  struct sigaction action {};
  action.sa_handler = say_how_to_resume;
  sigemptyset(&action.sa_mask);
  for (const int signal : {SIGINT, SIGTERM}) ::sigaction(signal, &action, nullptr);
}

// --profile: fills the defaults the user did not give from the profile, and says what it took
// in one stderr line and in the summary's "profile" (or, for a profile of another machine, model
// or device, one warning line).
std::function<void(InferJobOptions&)> defaults_from_profile(const std::string& profile,
                                                            const CLI::App* cmd) {
  return [profile, cmd](InferJobOptions& job) {
    InferOptions& options = job.infer;
    ProfileTaken taken;
    std::string precision;  // the profile's, when it gives one
    const std::string warning = apply_profile(profile, options.model_path, options.device,
                                              {cmd->count("--layout") ? nullptr : &job.layout,
                                               cmd->count("--batch") ? nullptr : &options.batch,
                                               cmd->count("--membind") ? nullptr : &job.membind,
                                               cmd->count("--engine") ? nullptr : &options.engine,
                                               cmd->count("--precision") ? nullptr : &precision},
                                              &taken);
    if (!precision.empty()) options.precision = parse_precision(precision);
    if (!cmd->count("--engine") && !options.engine.empty())
      job.engine_reason = "from profile " + profile;
    job.summary_profile = {{"path", profile}, {"applied", warning.empty()}};
    if (!warning.empty()) {
      std::cerr << "tessera: warning: " << warning << "\n";
      job.summary_profile["warning"] = warning;
      return;
    }
    std::cerr << "tessera: " << profile_taken_line(profile, taken) << "\n";
    job.summary_profile["taken"] = taken.values;
    job.summary_profile["within_noise"] = taken.within_noise;
  };
}

// infer's flags as parsed, before they are checked.
struct InferArgs {
  InferJobOptions job;
  std::string model, profile, precision;
  std::string formats = "npy";
  bool no_resume = false, no_spin = false;
};

// Checks what the flags say together, completes the job's options and runs it.
void run_infer_command(const InferArgs& args, const CLI::App* cmd, bool store_given) {
  InferJobOptions job = args.job;
  job.geo.formats = parse_output_formats(args.formats, "--format");
  if (job.geo.formats.zarr && job.geo.year == 0)
    throw UsageError("--format zarr needs --year (the zarr store's time axis)");
  if (store_given && !job.geo.formats.zarr)
    throw UsageError("--store applies to --format zarr only");
  if (job.infer.profile_stages && job.summary.empty())
    throw UsageError("--profile-stages needs --summary (the stages are written there)");
  job.infer.resume = !args.no_resume;
  job.infer.spinning = !args.no_spin;
  job.infer.model_path = args.model;  // "": the built-in model, made by the job
  job.infer.precision = parse_optional_precision(args.precision);
  if (!args.profile.empty()) {
    job.inputs.push_back(args.profile);
    job.fill_defaults = defaults_from_profile(args.profile, cmd);
  }
  job.progress = make_progress;
  job.terminal = isatty(STDERR_FILENO);
  say_how_to_resume_when_interrupted();
  run_infer_job(job, std::cout, std::cerr);
}

}  // namespace

void add_infer_command(CLI::App& root) {
  auto* cmd = root.add_subcommand("infer", "Turn dpixel tiles into int8 embeddings and scales");
  auto args = std::make_shared<InferArgs>();
  InferJobOptions& job = args->job;
  InferOptions& options = job.infer;

  cmd->add_option("tiles", job.tiles, "dpixel tile directories (nested or flat layout)");
  cmd->add_option("--tiles", job.tile_list,
                  "A file listing tile directories, one per line, or a directory of tiles");
  auto* output = cmd->add_option(
      "-o,--output", options.out_dir,
      "Output directory for <grid>.npy and <grid>_scales.npy (and <grid>.tif: --format)");
  auto* old_output = cmd->add_option("--out", options.out_dir)->group("");
  cmd->add_option("-m,--model", args->model,
                  "ONNX model (default: the built-in Tessera model, made if missing)");
  cmd->add_option("--layout", job.layout,
                  "Placement: single, single:T, numa, numa:K, l3, core, JxT")
      ->capture_default_str();
  cmd->add_option("--membind", job.membind, "Memory policy per worker: local or interleave")
      ->capture_default_str();
  cmd->add_option("--device", options.device,
                  "Devices, comma separated: cpu, cuda:N[+io|+graph], cpu+stream")
      ->capture_default_str();
  cmd->add_option("--gpu-batch", options.gpu_batch,
                  "Pixels per run on each GPU (whole batches; halved on out of memory)")
      ->capture_default_str();
  options.engine = "";  // not named: the job chooses the default (choose_default_engine)
  cmd->add_option("--engine", options.engine,
                  backend_choices() +
                      " (every worker's engine; default: the fastest fp32 engine that runs the "
                      "model on the devices: native on CPUs, ort with a GPU)");
  cmd->add_option(
      "--precision", args->precision,
      precision_choices_by_device() + "; default: each engine's own (fp32 on CPUs, tf32 on GPUs)");
  cmd->add_option("-b,--batch", options.batch, "Pixels per batch and worker")
      ->capture_default_str();
  cmd->add_option("--dim", options.dim,
                  "v2 models: embedding values written per pixel, the Matryoshka prefix (16, 32, "
                  "64 or 128; default all)")
      ->check(dim_given_as_zero_refused());
  cmd->add_option("--repeat", options.repeat, "Passes with sampling offsets 0..R-1, averaged")
      ->check(whole_number_in(1, kMaxRepeat))
      ->capture_default_str();
  cmd->add_flag("--force", options.force,
                "Recompute tiles whose outputs already exist, and replace an existing --summary "
                "file");
  cmd->add_flag("--no-resume", args->no_resume,
                "Ignore the journal of an interrupted run and start over");
  cmd->add_flag("--no-spin", args->no_spin, "Turn off ORT's intra-op thread spinning");
  cmd->add_option("--format", args->formats,
                  "Output formats, comma separated: npy (always written), geotiff (<grid>.tif, "
                  "a Cloud Optimized GeoTIFF; docs/GEO.md), zarr")
      ->capture_default_str();
  cmd->add_option("--year", job.geo.year,
                  "The year of the tiles' observations (geotiff's "
                  "TESSERA_YEAR tag; zarr needs it)")
      ->check(whole_number_in(1970, 2100));
  auto* store = cmd->add_option("--store", job.geo.store,
                                "The zarr store (--format zarr; default <output>/tessera.zarr)");
  cmd->add_option("--summary", job.summary,
                  "Write a JSON summary of the run to this file (never an input or another output; "
                  "an existing file only with --force)");
  cmd->add_flag("--profile-stages", options.profile_stages,
                "Time where the CPU workers' time goes (scan, input preparation, the native "
                "engine's stages, quantisation, writing) into --summary's \"stages\"");
  cmd->add_option("--profile", args->profile,
                  "Take layout, batch, membind, engine and precision defaults from a "
                  "`tessera tune` profile (what it took is said on stderr and in --summary)");

  cmd->callback([args, cmd, output, old_output, store] {
    // Old spelling (table_output.h): --out was infer's long form; any value is a path.
    check_renamed_option("infer", *output, *old_output, "the output directory");
    if (output->count() == 0 && old_output->count() == 0) throw CLI::RequiredError("--output");
    run_infer_command(*args, cmd, store->count() > 0);
  });
}

}  // namespace tessera::cli
