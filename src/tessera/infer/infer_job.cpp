#include "tessera/infer/infer_job.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <utility>

#include "tessera/common/clock.h"
#include "tessera/common/duration.h"
#include "tessera/common/error.h"
#include "tessera/common/output_location.h"
#include "tessera/common/version.h"
#include "tessera/engine/stage_profile.h"
#include "tessera/infer/tile_dispatch.h"
#include "tessera/infer/tile_source.h"
#include "tessera/io/atomic_file.h"
#include "tessera/io/output_lock.h"
#include "tessera/io/tile.h"
#include "tessera/model/default_model.h"
#include "tessera/model/model_description.h"
#include "tessera/model/model_family.h"
#include "tessera/pipeline/tile_pipeline.h"
#include "tessera/runtime/device_list.h"
#include "tessera/runtime/tile_record.h"
#include "tessera/topology/binding.h"
#include "tessera/topology/topology.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

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
// list. Says once on `err` (when `say`) which entries were dropped.
std::vector<std::string> without_repeats(const std::vector<std::string>& listed, bool say,
                                         std::ostream& err) {
  std::set<fs::path> seen;
  std::vector<std::string> tiles;
  for (const std::string& tile : listed) {
    fs::path key = fs::path(tile).lexically_normal();
    if (!key.has_filename()) key = key.parent_path();
    if (seen.insert(key).second) {
      tiles.push_back(tile);
    } else if (say) {
      err << "tessera: warning: " << tile << " is listed again; it runs once\n";
    }
  }
  return tiles;
}

// True when `a` and `b` name the same file, whether it exists or not.
bool same_path(const std::string& a, const std::string& b) {
  std::error_code ec;
  if (fs::equivalent(a, b, ec)) return true;
  return fs::weakly_canonical(fs::absolute(a), ec) == fs::weakly_canonical(fs::absolute(b), ec);
}

// The files a run writes for a tile, as suffixes of its grid name in the output directory.
constexpr const char* kTileOutputSuffixes[] = {".npy",
                                               "_scales.npy",
                                               ".journal",
                                               ".lock",
                                               ".npy.partial",
                                               "_scales.npy.partial",
                                               ".journal.partial",
                                               ".lock.partial",
                                               ".tessera.json",
                                               ".tessera.json.partial",
                                               ".tif",
                                               ".tif.partial",
                                               ".tif.partial.ovr.tmp"};

// No tile's outputs (final or partial, journal, lock) land on an input file of any listed tile,
// its own or another's (a flat tile holds masks.npy: the outputs of a tile named "masks"
// written into it would replace that). Inputs exist, so only an output that exists can be one;
// files are told apart by device and inode (any name, any link). Throws Error "<tile>: the
// output <file> would replace tile <other>'s input file" (or "this tile's").
void check_outputs_spare_every_input(const std::vector<std::string>& tiles,
                                     const std::string& out) {
  const auto identity = [](const std::string& path) -> std::optional<std::pair<dev_t, ino_t>> {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return std::nullopt;
    return std::pair{st.st_dev, st.st_ino};
  };
  std::map<std::pair<dev_t, ino_t>, std::string> owner_of;  // input file -> its tile
  for (const std::string& tile : tiles) {
    for (const std::string& file : tile_input_paths(tile)) {
      if (const auto id = identity(file)) owner_of.emplace(*id, tile);
    }
  }
  for (const std::string& tile : tiles) {
    const std::string grid = tile_grid_name(tile);
    for (const char* suffix : kTileOutputSuffixes) {
      const std::string output = (fs::path(out) / (grid + suffix)).string();
      const auto id = identity(output);
      const auto owner = id ? owner_of.find(*id) : owner_of.end();
      if (owner == owner_of.end()) continue;
      const std::string whose =
          owner->second == tile ? "this tile's" : "tile " + owner->second + "'s";
      throw Error(
          fmt::format("{}: the output {} would replace {} input file", tile, output, whose));
    }
  }
}

// The summary never replaces an input (a tile's file, the model, the tile list, a profile) or
// another file of the run (any listed tile's outputs, partial outputs, journal or lock), not even
// with --force; it replaces an existing file only with --force. It must be writable, or be inside
// the output directory that the run creates.
void check_summary_path(const std::vector<std::string>& tiles, const InferJobOptions& options) {
  const std::string& summary = options.summary;
  const std::string& out = options.infer.out_dir;
  for (const std::string& tile : tiles) {
    const std::string grid = tile_grid_name(tile);
    for (const char* suffix : kTileOutputSuffixes) {
      const std::string output = (fs::path(out) / (grid + suffix)).string();
      if (same_path(summary, output))
        throw Error(fmt::format("{}: is also an output of this run ({})", summary, output));
    }
  }
  std::error_code ec;
  if (fs::exists(summary, ec) || fs::is_symlink(summary, ec)) {
    std::vector<std::string> inputs = options.inputs;
    for (const std::string& file : {options.infer.model_path, options.tile_list})
      if (!file.empty()) inputs.push_back(file);
    for (const std::string& tile : tiles) {  // every file of every tile
      for (auto it = fs::recursive_directory_iterator(tile, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
        inputs.push_back(it->path().string());
    }
    check_new_output(summary, options.infer.force, inputs);
    return;
  }
  const auto directory_of = [](const fs::path& file) {
    const fs::path parent = file.parent_path();
    return (fs::absolute(parent.empty() ? fs::path(".") : parent) / "").lexically_normal();
  };
  if (fs::exists(out) || directory_of(summary) != (fs::absolute(out) / "").lexically_normal()) {
    check_output_location(summary);
  }
}

// True when `dir` holds a tile's S2 bands, nested or flat.
bool holds_tile(const fs::path& dir) {
  std::error_code ec;
  return fs::exists(dir / "s2" / "bands.npy", ec) || fs::exists(dir / "bands.npy", ec);
}

// A directory given as a tile that is not one, but holds tiles (`infer tiles/`), is a usage
// error that says how to give it.
void refuse_directory_of_tiles(const std::string& dir) {
  if (holds_tile(dir)) return;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    if (it->is_directory(ec) && holds_tile(it->path())) {
      throw UsageError(fmt::format(
          "{}: is a directory of tiles, not a tile ({} is one): give it with --tiles {}", dir,
          it->path().filename().string(), dir));
    }
  }
}

// What the geospatial step needs of `tile` (its outputs in `out_dir`, its roi.tiff).
GeoTile geo_tile(const std::string& tile, const std::string& out_dir) {
  const std::string grid = tile_grid_name(tile);
  const fs::path out(out_dir);
  return {tile,
          grid,
          (out / (grid + ".npy")).string(),
          (out / (grid + "_scales.npy")).string(),
          {roi_tiff_path(tile)},
          false,
          ""};
}

// With geospatial formats, every tile must have a place of its arrays' size (and a UTM one for
// zarr) before any tile runs; one line on `err` for each tile placed by its grid name.
void check_tiles_placed(const std::vector<std::string>& tiles, const InferJobOptions& options,
                        std::ostream& err) {
  if (!options.geo.formats.any_geo()) return;
  for (const std::string& dir : tiles) {
    const Tile tile = open_tile(dir);
    std::string note;
    require_tile_place(options.geo, geo_tile(dir, options.infer.out_dir), tile.height, tile.width,
                       &note);
    if (!note.empty()) err << "tessera: " << note << "\n";
  }
}

// With --format zarr, the store must take every tile as this model makes it (a store of another
// version, width or layout is refused as the tile's write would refuse it), checked once the
// model is known and before any tile runs: a mismatched store costs no inference.
void check_zarr_store_takes_tiles(const std::vector<std::string>& tiles,
                                  const InferJobOptions& options) {
  if (!options.geo.formats.zarr) return;
  const TilePipeline pipeline =
      tile_pipeline(read_model(options.infer.model_path), options.infer.dim);
  const std::string version = version_name(pipeline.version);
  for (const std::string& dir : tiles) {
    const Tile tile = open_tile(dir);
    const TilePlace place = require_tile_place(options.geo, geo_tile(dir, options.infer.out_dir),
                                               tile.height, tile.width, nullptr);
    check_zarr_store_accepts(options.geo, place, version, static_cast<int>(pipeline.output_dim));
  }
}

// Checks made before the first tile runs (by rank 0 alone in an MPI job): every tile exists, no
// two directories share a grid name (their outputs would collide), no output lands on a listed
// tile's input (check_outputs_spare_every_input), the summary's path (check_summary_path), and
// every tile's place when geospatial formats are asked for (check_tiles_placed).
void check_before_running(const std::vector<std::string>& tiles, const InferJobOptions& options,
                          std::ostream& err) {
  std::map<std::string, std::string> tile_of_grid;
  for (const std::string& tile : tiles) {
    require_tile_directory(tile);
    refuse_directory_of_tiles(tile);
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
  check_outputs_spare_every_input(tiles, options.infer.out_dir);
  if (!options.summary.empty()) check_summary_path(tiles, options);
  check_tiles_placed(tiles, options, err);
}

// H x W of the largest of `tiles`, from their .npy headers (mapped, not read); a tile that cannot
// be opened counts for nothing here (its own error comes when it runs). 0 when none opens.
int64_t largest_tile_pixels(const std::vector<std::string>& tiles) {
  int64_t largest = 0;
  for (const std::string& tile : tiles) {
    try {
      largest = std::max(largest, open_tile(tile).pixels());
    } catch (const Error&) {
    }
  }
  return largest;
}

// Ranks that a launcher bound to the same CPUs of one host (mpirun --bind-to none, or to a
// package shared by several ranks) would each plan workers on all of them, two or more per
// core. They split those CPUs by cores instead, and say so; with fewer cores than ranks, or
// where the system cannot bind, they keep them and warn. Returns the CPUs the ranks share when
// this one took its part of them (else {}). Collective: every rank calls it.
std::vector<int> split_cpus_shared_on_host(const MpiJob& job, std::ostream& err) {
  if (!job.active()) return {};
  const MachineInfo machine = Topology::this_machine().info();
  const std::vector<int> cpus = cpus_of_share(machine, 0, 1);  // all of them
  const std::string all = cpu_list_string(cpus);
  const MpiJob::HostShare share = job.share_on_host(all);
  if (share.count < 2) return {};
  const auto warn = [&](const std::string& why) {
    err << fmt::format(
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
  err << fmt::format("tessera: [rank {}] {} ranks share cpus {} on {}; this one uses cpus {}\n",
                     job.rank(), share.count, all, job.host(), cpu_list_string(mine));
  return cpus;
}

// What rank 0 alone does before the tiles: under a launcher its failure stops every rank at
// once (MPI_Abort), since the others wait for it in a collective.
void on_rank0(const MpiJob& job, const std::function<void()>& step) {
  if (job.rank() != 0) return;
  if (!job.active()) return step();
  try {
    step();
  } catch (const std::exception& e) {
    job.abort(e.what());
  }
}

// The job's tiles: those listed, then those of the tile list, rank 0's list on every rank (a
// directory scanned by each rank could differ), each once.
std::vector<std::string> job_tiles(const MpiJob& job, const InferJobOptions& options,
                                   std::ostream& err) {
  std::vector<std::string> tiles = options.tiles;
  on_rank0(job, [&] {
    if (options.tile_list.empty()) return;
    const auto listed = read_tile_source(options.tile_list);
    tiles.insert(tiles.end(), listed.begin(), listed.end());
  });
  tiles = without_repeats(job.share_from_rank0(tiles), job.rank() == 0, err);
  if (tiles.empty()) throw UsageError("infer needs at least one tile directory (or --tiles FILE)");
  return tiles;
}

// The layout's plan on this rank's CPUs. A layout sized for the whole host that does not fit
// this rank's part of them (`shared_cpus` non-empty) falls back to the CPUs the ranks share.
Plan plan_this_rank(const MpiJob& job, const InferJobOptions& options,
                    const std::vector<int>& shared_cpus, std::ostream& err) {
  const MemoryPolicy policy = parse_memory_policy(options.membind);
  try {
    return plan_layout(Topology::this_machine().info(), options.layout, policy);
  } catch (const UsageError& e) {
    if (shared_cpus.empty()) throw;
    bind_this_process(shared_cpus);
    err << fmt::format(
        "tessera: warning: [rank {}] layout {} does not fit this rank's part of the cpus ({}); "
        "it uses all of cpus {}, shared with other ranks\n",
        job.rank(), options.layout, e.what(), cpu_list_string(shared_cpus));
    return plan_layout(Topology::this_machine().info(), options.layout, policy);
  }
}

// The line `tessera infer` prints for one finished tile, `prefix` before it.
std::string tile_line(const std::string& prefix, const TileSummary& s, const std::string& out_dir) {
  if (s.status == TileStatus::kLocked) return prefix + lock_held_line(s.grid, s.lock_path) + "\n";
  if (s.status == TileStatus::kSkipped) {
    std::string made;
    for (const std::string& path : s.extra_outputs)
      made += (made.empty() ? "; made " : ", ") + path;
    return fmt::format("{}{}: skipped, outputs exist in {} (--force recomputes){}\n", prefix,
                       s.grid, out_dir, made);
  }
  std::string notes;
  if (s.batches_resumed) notes += fmt::format(", {} batches resumed", s.batches_resumed);
  if (s.gpu_busy_percent >= 0) notes += fmt::format(", GPU busy {:.1f} %", s.gpu_busy_percent);
  if (s.stream_pixels > 0 && s.stream_pixels < s.pixels_computed)
    notes += fmt::format(", {:.1f} % of pixels on the CPU workers",
                         100.0 * static_cast<double>(s.pixels_computed - s.stream_pixels) /
                             static_cast<double>(s.pixels_computed));
  std::string extra;
  for (const std::string& path : s.extra_outputs) extra += ", " + path;
  return fmt::format("{}{}: {} of {} pixels valid, {:.1f} s ({:.3f} ms/pixel{}) -> {}, {}{}\n",
                     prefix, s.grid, s.pixels_valid, s.pixels_total, s.seconds, s.ms_per_pixel,
                     notes, s.embeddings_path, s.scales_path, extra);
}

// The --summary document: the job's settings, its totals over every rank, every tile.
nlohmann::json summary_json(const MpiJob& job, const InferJobOptions& options, const Plan& plan,
                            const DispatchResult& result) {
  nlohmann::json tiles_json = nlohmann::json::array();
  int64_t valid = 0, total = 0;
  double seconds = 0;
  for (const auto& rank : result.ranks) {
    valid += rank.pixels_valid;
    total += rank.pixels_total;
    seconds += rank.tile_seconds;
  }
  for (const auto& tile : result.tiles) tiles_json.push_back(tile);
  const InferOptions& infer = options.infer;
  const InferEngines engines = infer_engines(infer);
  nlohmann::json summary = {
      {"tool", "tessera infer"},
      {"engine", engines.engine},
      {"precision", engines.precision},
      {"engines", engines.engines},
      {"engine_reason", options.engine_reason},
      {"device", infer.device},
      {"model", infer.model_path},
      {"model_sha256", result.tiles.empty() ? "" : result.tiles.front().value("model_sha256", "")},
      {"weights", describe_weights(read_model(infer.model_path))},
      {"tessera", kVersion},
      {"finished", utc_timestamp()},
      {"layout", options.layout},
      {"workers", plan.workers.size()},
      {"threads_per_worker", plan.workers.empty() ? 0 : plan.workers.front().threads},
      {"batch", infer.batch},
      {"repeat", infer.repeat},
      {"pixels_total", total},
      {"pixels_valid", valid},
      {"seconds", seconds},
      {"ms_per_pixel", valid > 0 ? 1e3 * seconds / static_cast<double>(valid) : 0.0},
      {"tiles", tiles_json}};
  if (!options.summary_profile.is_null()) summary["profile"] = options.summary_profile;
  if (infer.profile_stages) {  // every computed tile's, added up (tile_runner.h)
    StageProfile all;
    for (const auto& tile : result.tiles) {
      const auto stages = tile.find("stages");
      if (stages != tile.end() && !stages->is_null()) all.merge(stage_profile_from_json(*stages));
    }
    summary["stages"] = stage_json(all);
  }
  if (job.active()) summary.update(rank_summary_json(result));  // "ranks" and "total"
  return summary;
}

void write_summary(const std::string& path, const nlohmann::json& summary) {
  AtomicFile file(path);
  const std::string text = summary.dump(2) + "\n";
  file.write(text.data(), text.size());
  file.commit();
}

// Tiles skipped because another run held their locks were not written by this job: it fails,
// after every other tile has run, with one line saying how many (each has had its own line).
void throw_if_tiles_locked(const DispatchResult& result) {
  size_t locked = 0;
  for (const auto& tile : result.tiles)
    if (tile.value("status", "") == tile_status_name(TileStatus::kLocked)) ++locked;
  if (locked == 0) return;
  throw Error(fmt::format(
      "{} of {} tiles skipped: another tessera run is writing them (run again once it has "
      "finished)",
      locked, result.tiles.size()));
}

// One line on stderr when the built-in model is used: its weights are make-model's seeded random
// numbers, and its embeddings are for measuring speed only.
void say_when_weights_are_random(const std::string& model_path, std::ostream& err) {
  const ModelDescription model = read_model(model_path);
  if (model.weights_seed.empty()) return;
  err << "tessera: " << model_path << ": weights are " << describe_weights(model)
      << " (the built-in model): its embeddings mean nothing; for real ones import a released "
         "checkpoint (docs/CHECKPOINTS.md) and pass it with -m\n"
      << std::flush;
}

// ", job ETA 2.1 h": the tiles left at the mean time of the tiles this process has finished
// (tiles skipped as done count too, so a resumed job's first estimates are low); "" before the
// first.
std::string job_eta(Clock::time_point start, size_t finished, size_t tiles) {
  if (finished == 0) return "";
  const double per_tile = seconds_since(start) / static_cast<double>(finished);
  return ", job ETA " + human_duration(per_tile * static_cast<double>(tiles - finished));
}

// The tile's geospatial formats, made from its .npy outputs under its lock: all of them after
// this run computed the tile, the missing ones after it was found done. Their dataset version
// is the tile record's (what made the .npy outputs).
TileFinisher geo_finisher(const InferJobOptions& options, const std::string& tile) {
  if (!options.geo.formats.any_geo()) return {};
  return [&options, tile](const TileSummary& summary, bool fresh) {
    GeoRequest request = options.geo;
    request.out_dir = options.infer.out_dir;
    const auto record = read_tile_record(tile_record_path(request.out_dir, summary.grid));
    request.dataset_version = record ? record->version : "";
    request.description = describe_embeddings(request.dataset_version);
    return write_geo_outputs(request, geo_tile(tile, request.out_dir), !fresh);
  };
}

// The engine of a job whose caller named none (infer.engine ""): the default for its model and
// devices, with the reason.
void choose_engine_when_unnamed(InferJobOptions& options) {
  InferOptions& infer = options.infer;
  if (!infer.engine.empty()) return;
  const DeviceList list = parse_device_list(infer.device);
  std::vector<Device> devices;
  if (list.cpu) devices.emplace_back();
  for (const StreamDevice& stream : list.streams) devices.push_back(stream.device);
  const EngineChoice choice = choose_default_engine(infer.model_path, devices, infer.precision);
  infer.engine = choice.backend;
  options.engine_reason = choice.reason;
}

// "tessera: engine: native fp32 (default: fastest fp32 engine here)".
void say_engine(const InferJobOptions& options, std::ostream& err) {
  const InferEngines engines = infer_engines(options.infer);
  err << fmt::format("tessera: engine: {} {} ({})\n", engines.engine, engines.precision,
                     options.engine_reason)
      << std::flush;
}

}  // namespace

void run_infer_job(const InferJobOptions& given, std::ostream& out, std::ostream& err) {
  // Under mpirun/srun every rank runs this; rank 0 hands out the tiles (tile_dispatch.h).
  const MpiJob job;
  const std::vector<std::string> tiles = job_tiles(job, given, err);
  on_rank0(job, [&] {
    InferJobOptions checked = given;
    // The built-in model (made later if missing) is an input too.
    if (checked.infer.model_path.empty()) {
      try {
        checked.inputs.push_back(default_model_path());
      } catch (const Error&) {  // no cache directory: the job fails there, with its own line
      }
    }
    check_before_running(tiles, checked, err);
  });
  // Before the defaults and the plan, which must see this rank's CPUs.
  const std::vector<int> shared_cpus = split_cpus_shared_on_host(job, err);
  InferJobOptions options = given;
  options.infer.largest_tile_pixels = largest_tile_pixels(tiles);
  const bool built_in_model = options.infer.model_path.empty();
  if (built_in_model) options.infer.model_path = ensure_default_model(true);
  if (options.fill_defaults) options.fill_defaults(options);
  choose_engine_when_unnamed(options);
  if (job.rank() == 0) say_engine(options, err);
  if (built_in_model && job.rank() == 0) say_when_weights_are_random(options.infer.model_path, err);
  on_rank0(job, [&] { check_zarr_store_takes_tiles(tiles, options); });
  const Plan plan = plan_this_rank(job, options, shared_cpus, err);
  const bool in_place = options.terminal && !job.active();
  const std::string rank_prefix = job.active() ? fmt::format("[rank {}] ", job.rank()) : "";
  // One runner for every tile of this process, so its engines are built once. Made by the
  // first tile, so its errors reach the dispatcher like any tile's.
  std::optional<TileRunner> runner;
  const auto job_start = Clock::now();
  size_t tiles_finished = 0;  // by this process (work runs one tile at a time)
  const auto work = [&](size_t index) {
    const std::string& tile = tiles[index];
    const std::string grid = fs::path(tile).filename().string();
    // "[3/120] " before each line of a run of several tiles; "[3/120, job ETA 2.1 h] " once a
    // tile is done (one process: ranks share the tiles, so theirs would not add up).
    const std::string eta = job.active() ? "" : job_eta(job_start, tiles_finished, tiles.size());
    const std::string prefix =
        rank_prefix + (tiles.size() > 1 ? fmt::format("[{}/{}{}] ", index + 1, tiles.size(), eta)
                                        : std::string());
    if (!runner) runner.emplace(options.infer, plan);
    const TileSummary s = runner->run(
        tile, options.progress ? options.progress(prefix + grid, in_place) : ProgressCallback(),
        geo_finisher(options, tile));
    if (in_place) err << "\r\033[K" << std::flush;
    out << tile_line(prefix, s, options.infer.out_dir) << std::flush;
    ++tiles_finished;
    return s;
  };
  const DispatchResult result =
      dispatch_tiles(job, tiles.size(), describe_placement(options.layout, plan), work);
  if (job.rank() != 0) return;  // rank 0 reports for the whole job
  if (job.active()) out << "\n" << rank_table(result).to_markdown() << std::flush;
  if (!options.summary.empty())
    write_summary(options.summary, summary_json(job, options, plan, result));
  throw_if_tiles_locked(result);
}

}  // namespace tessera
