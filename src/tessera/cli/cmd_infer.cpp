// tessera infer: dpixel tiles -> int8 embeddings + scales (geotessera layout).

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>

#include "tessera/bench/profile.h"
#include "tessera/bench/projection.h"
#include "tessera/cli/commands.h"
#include "tessera/cli/output_checks.h"
#include "tessera/cluster/tile_dispatch.h"
#include "tessera/cluster/tile_source.h"
#include "tessera/common/error.h"
#include "tessera/io/atomic_file.h"
#include "tessera/io/tile.h"
#include "tessera/model/default_model.h"
#include "tessera/runtime/tile_runner.h"
#include "tessera/topology/binding.h"
#include "tessera/topology/topology.h"

namespace tessera::cli {
namespace {

// A progress bar on a terminal; a plain line every 10 s otherwise.
ProgressCallback make_progress(const std::string& grid, bool tty) {
  auto last_line = std::make_shared<double>(0.0);
  return [grid, tty, last_line](int64_t done, int64_t total, double seconds) {
    const double fraction =
        total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
    const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
    // No estimate before the first batch is done (the engines are still loading).
    const std::string eta =
        rate > 0 ? human_duration(static_cast<double>(total - done) / rate) : std::string("?");
    if (tty) {
      const int width = 30;
      const int filled = static_cast<int>(fraction * width);
      std::fprintf(stderr, "\r\033[K%s [%s%s] %5.1f%% %.0f px/s ETA %s", grid.c_str(),
                   std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                   100 * fraction, rate, eta.c_str());
    } else if (seconds - *last_line >= 10.0) {
      *last_line = seconds;
      std::fprintf(stderr, "%s: %lld/%lld px (%.1f%%), %.0f px/s, ETA %s\n", grid.c_str(),
                   static_cast<long long>(done), static_cast<long long>(total), 100 * fraction,
                   rate, eta.c_str());
    }
  };
}

// "core: 2x1 on cpus 0-1": how this process placed its workers.
std::string describe_placement(const std::string& layout, const Plan& plan) {
  std::vector<int> cpus;
  for (const auto& worker : plan.workers)
    cpus.insert(cpus.end(), worker.cpus.begin(), worker.cpus.end());
  return fmt::format("{}: {}x{} on cpus {}", layout, plan.workers.size(),
                     plan.workers.empty() ? 0 : plan.workers.front().threads,
                     cpu_list_string(cpus));
}

// The tiles as listed, without entries that repeat an earlier one however spelt ("t", "./t",
// "t/"). Path arithmetic only, no file system calls: every rank of an MPI job computes the same
// list. Says once on stderr (`say`) which entries were dropped.
std::vector<std::string> without_repeats(const std::vector<std::string>& listed, bool say) {
  namespace fs = std::filesystem;
  std::set<fs::path> seen;
  std::vector<std::string> tiles;
  for (const std::string& tile : listed) {
    fs::path key = fs::path(tile).lexically_normal();
    if (!key.has_filename()) key = key.parent_path();
    if (seen.insert(key).second) {
      tiles.push_back(tile);
    } else if (say) {
      std::cerr << "tessera: warning: " << tile << " is listed again; it runs once\n";
    }
  }
  return tiles;
}

// Checks made before the first tile runs (by rank 0 alone in an MPI job): every tile exists, no
// two directories share a grid name (their outputs would collide), and the summary can be
// written, or will be inside the output directory that the run creates.
void check_before_running(const std::vector<std::string>& tiles, const std::string& summary,
                          const std::string& out) {
  namespace fs = std::filesystem;
  std::map<std::string, std::string> tile_of_grid;
  for (const std::string& tile : tiles) {
    require_tile_directory(tile);
    const auto [other, fresh] = tile_of_grid.emplace(tile_grid_name(tile), tile);
    if (fresh) continue;
    std::error_code ec;
    if (fs::equivalent(other->second, tile, ec)) {
      throw UsageError(
          fmt::format("{} and {} are the same tile, listed twice", other->second, tile));
    }
    throw UsageError(fmt::format("tiles {} and {} are both named {}: their outputs would collide",
                                 other->second, tile, other->first));
  }
  if (summary.empty()) return;
  const auto directory_of = [](const fs::path& file) {
    const fs::path parent = file.parent_path();
    return (fs::absolute(parent.empty() ? fs::path(".") : parent) / "").lexically_normal();
  };
  if (fs::exists(out) || directory_of(summary) != (fs::absolute(out) / "").lexically_normal()) {
    check_output_location(summary);
  }
}

// Ranks that a launcher bound to the same CPUs of one host (mpirun --bind-to none, or to a
// package shared by several ranks) would each plan workers on all of them, two or more per
// core. They split those CPUs by cores instead, and say so; with fewer cores than ranks, or
// where the system cannot bind, they keep them and warn. Returns the CPUs the ranks share when
// this one took its part of them (else {}). Collective: every rank calls it.
std::vector<int> split_cpus_shared_on_host(const MpiJob& job) {
  if (!job.active()) return {};
  const MachineInfo machine = Topology::this_machine().info();
  const std::vector<int> cpus = cpus_of_share(machine, 0, 1);  // all of them
  const std::string all = cpu_list_string(cpus);
  const MpiJob::HostShare share = job.share_on_host(all);
  if (share.count < 2) return {};
  const auto warn = [&](const std::string& why) {
    std::cerr << fmt::format(
        "tessera: warning: [rank {}] {} ranks share cpus {} on {} ({}); their workers share "
        "cores\n",
        job.rank(), share.count, all, job.host(), why);
  };
  if (machine.cores < share.count) {
    warn(fmt::format("only {} cores", machine.cores));
    return {};
  }
  const std::vector<int> mine = cpus_of_share(machine, share.index, share.count);
  if (!bind_this_process(mine)) {
    warn("this system cannot bind processes");
    return {};
  }
  std::cerr << fmt::format(
      "tessera: [rank {}] {} ranks share cpus {} on {}; this one uses cpus {}\n", job.rank(),
      share.count, all, job.host(), cpu_list_string(mine));
  return cpus;
}

}  // namespace

void add_infer_command(CLI::App& root) {
  auto* cmd = root.add_subcommand("infer", "Turn dpixel tiles into int8 embeddings and scales");
  struct Args {
    std::vector<std::string> tiles;
    std::string tile_list, out, model, layout = "core", membind = "local", summary;
    std::string profile;
    InferOptions options;
    bool no_resume = false, no_spin = false;
  };
  auto args = std::make_shared<Args>();
  args->options.batch = 256;
  cmd->add_option("tiles", args->tiles, "dpixel tile directories (nested or flat layout)");
  cmd->add_option("--tiles", args->tile_list,
                  "A file listing tile directories, one per line, or a directory of tiles");
  cmd->add_option("-o,--out", args->out, "Output directory for <grid>.npy and <grid>_scales.npy")
      ->required();
  cmd->add_option("-m,--model", args->model,
                  "ONNX model (default: the built-in Tessera model, made if missing)");
  cmd->add_option("--layout", args->layout,
                  "Placement: single, single:T, numa, numa:K, l3, core, JxT")
      ->capture_default_str();
  cmd->add_option("--membind", args->membind, "Memory policy per worker: local or interleave")
      ->capture_default_str();
  cmd->add_option("--device", args->options.device,
                  "Devices, comma separated: cpu, cuda:N[+io|+graph], cpu+stream")
      ->capture_default_str();
  cmd->add_option("--gpu-batch", args->options.gpu_batch,
                  "Pixels per run on each GPU (whole batches; halved on out of memory)")
      ->capture_default_str();
  cmd->add_option("--precision", args->options.precision,
                  "CUDA precision: tf32 (ONNX Runtime's default), fp32, or fp16 (the "
                  "model converted to float16)")
      ->capture_default_str();
  cmd->add_option("-b,--batch", args->options.batch, "Pixels per batch and worker")
      ->capture_default_str();
  cmd->add_option("--repeat", args->options.repeat, "Passes with sampling offsets 0..R-1, averaged")
      ->capture_default_str();
  cmd->add_flag("--force", args->options.force, "Recompute tiles whose outputs already exist");
  cmd->add_flag("--no-resume", args->no_resume,
                "Ignore the journal of an interrupted run and start over");
  cmd->add_flag("--no-spin", args->no_spin, "Turn off ORT's intra-op thread spinning");
  cmd->add_option("--summary", args->summary, "Write a JSON summary of the run to this file");
  cmd->add_option("--profile", args->profile,
                  "Take layout, batch and membind defaults from a `tessera tune` profile");

  cmd->callback([args, cmd] {
    // Under mpirun/srun every rank runs this; rank 0 hands out the tiles (cluster/).
    const MpiJob job;
    // What rank 0 alone does before the tiles: under a launcher its failure stops every rank
    // at once (MPI_Abort), since the others wait for it in a collective.
    const auto on_rank0 = [&](const std::function<void()>& step) {
      if (job.rank() != 0) return;
      if (!job.active()) return step();
      try {
        step();
      } catch (const std::exception& e) {
        job.abort(e.what());
      }
    };
    // One list for the whole job, rank 0's: a directory scanned by each rank could differ.
    std::vector<std::string> tiles = args->tiles;
    on_rank0([&] {
      if (args->tile_list.empty()) return;
      const auto listed = read_tile_source(args->tile_list);
      tiles.insert(tiles.end(), listed.begin(), listed.end());
    });
    tiles = without_repeats(job.share_from_rank0(tiles), job.rank() == 0);
    if (tiles.empty())
      throw UsageError("infer needs at least one tile directory (or --tiles FILE)");
    on_rank0([&] { check_before_running(tiles, args->summary, args->out); });
    // Before the profile and the plan, which must see this rank's CPUs.
    const std::vector<int> shared_cpus = split_cpus_shared_on_host(job);
    InferOptions options = args->options;
    options.out_dir = args->out;
    options.resume = !args->no_resume;
    options.spinning = !args->no_spin;
    options.model_path = args->model.empty() ? ensure_default_model(true) : args->model;
    if (!args->profile.empty()) {
      const std::string warning =
          apply_profile(args->profile, options.model_path, options.device,
                        {cmd->count("--layout") ? nullptr : &args->layout,
                         cmd->count("--batch") ? nullptr : &options.batch,
                         cmd->count("--membind") ? nullptr : &args->membind});
      if (!warning.empty()) std::cerr << "tessera: warning: " << warning << "\n";
    }
    const MemoryPolicy policy = parse_memory_policy(args->membind);
    Plan plan;
    try {
      plan = plan_layout(Topology::this_machine().info(), args->layout, policy);
    } catch (const UsageError& e) {
      // A layout sized for the whole host does not fit this rank's part: back to the shared CPUs.
      if (shared_cpus.empty()) throw;
      bind_this_process(shared_cpus);
      std::cerr << fmt::format(
          "tessera: warning: [rank {}] layout {} does not fit this rank's part of the cpus ({}); "
          "it uses all of cpus {}, shared with other ranks\n",
          job.rank(), args->layout, e.what(), cpu_list_string(shared_cpus));
      plan = plan_layout(Topology::this_machine().info(), args->layout, policy);
    }
    const bool tty = isatty(STDERR_FILENO) && !job.active();
    const std::string rank_prefix = job.active() ? fmt::format("[rank {}] ", job.rank()) : "";
    // One runner for every tile of this process, so its engines are built once. Made by the
    // first tile, so its errors reach the dispatcher like any tile's.
    std::optional<TileRunner> runner;
    auto work = [&](size_t index) {
      const std::string& tile = tiles[index];
      const std::string grid = std::filesystem::path(tile).filename().string();
      // "[3/120] " before each line of a run of several tiles.
      const std::string prefix =
          rank_prefix +
          (tiles.size() > 1 ? fmt::format("[{}/{}] ", index + 1, tiles.size()) : std::string());
      if (!runner) runner.emplace(options, plan);
      const TileSummary s = runner->run(tile, make_progress(prefix + grid, tty));
      if (tty) std::fprintf(stderr, "\r\033[K");
      if (s.status == "skipped") {
        std::cout << fmt::format("{}{}: skipped, outputs exist in {} (--force recomputes)\n",
                                 prefix, s.grid, options.out_dir)
                  << std::flush;
      } else {
        std::string notes;
        if (s.batches_resumed) notes += fmt::format(", {} batches resumed", s.batches_resumed);
        if (s.gpu_busy_percent >= 0)
          notes += fmt::format(", GPU busy {:.1f} %", s.gpu_busy_percent);
        if (s.stream_pixels > 0 && s.stream_pixels < s.pixels_computed)
          notes += fmt::format(", {:.1f} % of pixels on the CPU workers",
                               100.0 * static_cast<double>(s.pixels_computed - s.stream_pixels) /
                                   static_cast<double>(s.pixels_computed));
        std::cout << fmt::format(
                         "{}{}: {} of {} pixels valid, {:.1f} s ({:.3f} ms/pixel{}) -> {}, {}\n",
                         prefix, s.grid, s.pixels_valid, s.pixels_total, s.seconds, s.ms_per_pixel,
                         notes, s.embeddings_path, s.scales_path)
                  << std::flush;
      }
      return s;
    };
    const DispatchResult result =
        dispatch_tiles(job, tiles.size(), describe_placement(args->layout, plan), work);
    if (job.rank() != 0) return;  // rank 0 reports for the whole job
    if (job.active()) std::cout << "\n" << rank_table(result).to_markdown() << std::flush;
    nlohmann::json tiles_json = nlohmann::json::array();
    int64_t valid = 0, total = 0;
    double seconds = 0;
    for (const auto& rank : result.ranks) {
      valid += rank.pixels_valid;
      total += rank.pixels_total;
      seconds += rank.tile_seconds;
    }
    for (const auto& tile : result.tiles) tiles_json.push_back(tile);
    if (!args->summary.empty()) {
      nlohmann::json summary = {
          {"tool", "tessera infer"},
          {"engine", "ort-" + options.device},
          {"model", options.model_path},
          {"layout", args->layout},
          {"workers", plan.workers.size()},
          {"threads_per_worker", plan.workers.empty() ? 0 : plan.workers.front().threads},
          {"batch", options.batch},
          {"repeat", options.repeat},
          {"pixels_total", total},
          {"pixels_valid", valid},
          {"seconds", seconds},
          {"ms_per_pixel", valid > 0 ? 1e3 * seconds / static_cast<double>(valid) : 0.0},
          {"tiles", tiles_json}};
      if (job.active()) summary.update(rank_summary_json(result));  // "ranks" and "total"
      AtomicFile file(args->summary);
      const std::string text = summary.dump(2) + "\n";
      file.write(text.data(), text.size());
      file.commit();
    }
  });
}

}  // namespace tessera::cli
