#include "tessera/runtime/tile_runner.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <latch>
#include <mutex>
#include <optional>
#include <thread>

#include "tessera/common/clock.h"
#include "tessera/common/error.h"
#include "tessera/common/output_location.h"
#include "tessera/common/threads.h"
#include "tessera/common/version.h"
#include "tessera/io/file_identity.h"
#include "tessera/io/npy.h"
#include "tessera/io/output_lock.h"
#include "tessera/io/tile.h"
#include "tessera/model/model_description.h"
#include "tessera/model/model_family.h"
#include "tessera/pipeline/preparer.h"
#include "tessera/pipeline/quantiser.h"
#include "tessera/pipeline/tile_plan.h"
#include "tessera/runtime/cpu_worker.h"
#include "tessera/runtime/device_batches.h"
#include "tessera/runtime/device_list.h"
#include "tessera/runtime/journal.h"
#include "tessera/runtime/stream_worker.h"
#include "tessera/runtime/tile_job.h"
#include "tessera/runtime/tile_record.h"
#include "tessera/runtime/worker_pool.h"
#include "tessera/topology/binding.h"
#include "tessera/topology/topology.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

// Identifies the computation a journal belongs to: resuming with any of these changed would
// mix two different results in one file. The model is named by the SHA-256 of the bytes the
// engines were built from (TileRunner's constructor), never by the file as it is when the tile
// starts: a model replaced during a job, or another of the same size and times, is another key.
std::string journal_key(const Tile& tile, const InferOptions& options, const std::string& engines,
                        const TilePipeline& pipeline, int64_t valid,
                        const std::string& model_sha256) {
  std::error_code ec;
  // The tile's data: a tile written again under the same name (same size, other values) must
  // not continue the old one's outputs.
  std::string inputs;
  for (const NpyArray* array : tile_files(tile)) {
    inputs += fmt::format("{}:{};", fs::file_size(array->path(), ec),
                          fs::last_write_time(array->path(), ec).time_since_epoch().count());
  }
  return fmt::format(
      "tessera-journal v5 grid={} hw={}x{} valid={} pipeline={}/{} latent={} batch={} repeat={} "
      "engines={} model_sha256={} inputs={:016x}",
      tile.grid, tile.height, tile.width, valid, version_name(pipeline.version), pipeline.stats,
      pipeline.output_dim, options.batch, options.repeat, engines, model_sha256,
      std::hash<std::string>{}(inputs));
}

// The value of `field` ("engines", "model_sha256") in a journal key ("" when it has none).
std::string field_of_key(const std::string& key, const std::string& field) {
  const std::string marker = " " + field + "=";
  const size_t begin = key.find(marker);
  if (begin == std::string::npos) return "";
  const size_t from = begin + marker.size();
  return key.substr(from, key.find(' ', from) - from);
}

// Says so when the journal at `path` was written with another model, or by other engines or
// precisions, than `key`'s: its batches are not resumed (BatchJournal starts over on any other
// key).
void say_when_journal_differs(const std::string& tile_dir, const std::string& path,
                              const std::string& key) {
  std::ifstream in(path);
  std::string old_key;
  if (!in || !std::getline(in, old_key)) return;
  const std::string model_before = field_of_key(old_key, "model_sha256");
  const std::string model_now = field_of_key(key, "model_sha256");
  if (!model_before.empty() && model_before != model_now) {
    fmt::print(stderr,
               "tessera: {}: its journal was written with another model (sha256 {}), this run's "
               "has sha256 {}: starting the tile over\n",
               tile_dir, model_before.substr(0, 12), model_now.substr(0, 12));
    return;
  }
  const std::string before = field_of_key(old_key, "engines"), now = field_of_key(key, "engines");
  if (before.empty() || before == now) return;
  fmt::print(stderr,
             "tessera: {}: its journal was written by {}, this run computes with {}: starting "
             "the tile over\n",
             tile_dir, before, now);
}

// "cpu:ort:fp32,cuda:0+io:ort:tf32": each device's entry as given, engine and precision
// (journal keys: a journal of an earlier run resumes only when these bytes are equal).
std::string engines_key(const std::vector<std::pair<std::string, EngineSpec>>& workers) {
  std::string out;
  for (const auto& [device, spec] : workers) {
    out += (out.empty() ? "" : ",") + device + ":" + spec.backend + ":" +
           precision_name(spec.precision);
  }
  return out;
}

// Each device of `devices` ("cpu" first, then the streams) with the spec of its engine.
std::vector<std::pair<std::string, EngineSpec>> device_engine_specs(const InferOptions& options,
                                                                    const DeviceList& devices) {
  std::vector<std::pair<std::string, EngineSpec>> specs;
  if (devices.cpu)
    specs.emplace_back("cpu", resolve_engine_spec(options.engine, Device{}, options.precision));
  for (const auto& stream : devices.streams) {
    specs.emplace_back(stream.entry,
                       resolve_engine_spec(options.engine, stream.device, options.precision));
  }
  return specs;
}

// Fills the summary's engine, precision and engines from each device's spec.
void describe_engines(const std::vector<std::pair<std::string, EngineSpec>>& specs,
                      TileSummary& summary) {
  if (specs.empty()) return;
  summary.engine = specs.front().second.backend;
  summary.precision = precision_name(specs.front().second.precision);
  for (const auto& [device, spec] : specs)
    summary.engines += (summary.engines.empty() ? "" : ", ") + device + " " + spec.label();
}

// The process's anonymous resident memory in bytes (RssAnon), or 0 if unknown.
int64_t rss_anon_bytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("RssAnon:", 0) == 0) return 1024 * std::atoll(line.c_str() + 8);
  }
  return 0;
}

// Reports progress and samples memory from a monitor thread every 0.5 s until stopped.
class ProgressMonitor {
 public:
  ProgressMonitor(const ProgressCallback& callback, const std::atomic<int64_t>& done, int64_t total)
      : callback_(callback), done_(done), total_(total), start_(Clock::now()) {
    peak_rss_anon_ = rss_anon_bytes();
    thread_ = std::thread([this] { loop(); });
  }
  // Valid after stop().
  int64_t peak_rss_anon() const { return peak_rss_anon_; }
  ~ProgressMonitor() { stop(); }
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void loop() {
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stopping_; })) {
      peak_rss_anon_ = std::max(peak_rss_anon_, rss_anon_bytes());
      if (callback_) {
        callback_(done_.load(), total_, seconds_since(start_));
      }
    }
    peak_rss_anon_ = std::max(peak_rss_anon_, rss_anon_bytes());
  }
  const ProgressCallback& callback_;
  const std::atomic<int64_t>& done_;
  int64_t total_;
  Clock::time_point start_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  int64_t peak_rss_anon_ = 0;
  std::thread thread_;
};

// Refuses outputs that would land on one of the tile's own files (a flat tile written into
// itself), under their final or their .partial names, and outputs whose names hold anything but
// a regular file (a device, a FIFO, a socket: require_regular_or_absent).
void check_outputs_spare_inputs(const Tile& tile, const std::string& tile_dir,
                                const std::vector<std::string>& outputs) {
  std::error_code ec;
  for (const std::string& output : outputs) {
    require_regular_or_absent(output);
    require_regular_or_absent(output + ".partial");
    for (const NpyArray* input : tile_files(tile)) {
      for (const std::string& path : {output, output + ".partial"}) {
        if (fs::equivalent(path, input->path(), ec)) {
          throw Error(fmt::format("{}: the output {} would replace this tile's input file",
                                  tile_dir, path));
        }
      }
    }
  }
}

// True when both outputs exist and `force` is off: the tile is done. A run stopped between
// committing the outputs and removing the journal leaves the journal behind, and a killed
// --force run its partial outputs; the outputs are complete, so these are stale and removed.
// True when `path` is a tessera journal (its key's first line), not any file of that name.
bool is_tessera_journal(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::string head(16, '\0');
  file.read(head.data(), static_cast<std::streamsize>(head.size()));
  return file.gcount() == static_cast<std::streamsize>(head.size()) &&
         head.starts_with("tessera-journal ");
}

// Both outputs there with no record of what made them but with this tile's journal: a run was
// stopped between its first rename and the record (tile_runner commits the record last and
// removes the journal after it). The run had been allowed to replace these outputs, and they
// may be half old, half new (the embeddings renamed, the scales not yet): computing the tile
// again is the only safe finish.
bool outputs_interrupted(const TileSummary& summary, const std::string& journal_path,
                         const std::string& record_path) {
  std::error_code ec;
  return fs::exists(summary.embeddings_path, ec) && fs::exists(summary.scales_path, ec) &&
         !fs::exists(record_path, ec) && is_tessera_journal(journal_path);
}

bool outputs_complete(const InferOptions& options, const TileSummary& summary,
                      const std::string& journal_path) {
  std::error_code ec;
  if (options.force || !fs::exists(summary.embeddings_path, ec) ||
      !fs::exists(summary.scales_path, ec)) {
    return false;
  }
  for (const std::string& stale :
       {journal_path, summary.embeddings_path + ".partial", summary.scales_path + ".partial"}) {
    fs::remove(stale, ec);
  }
  return true;
}

void check_model_takes_tile_features(const std::string& model_path, const ModelShape& shape) {
  if (shape.s2_features != kS2Bands + 1 || shape.s1_features != kS1Bands + 1) {
    throw Error(fmt::format("{}: model takes {} + {} features per step, tiles give {} + {}",
                            model_path, shape.s2_features, shape.s1_features, kS2Bands + 1,
                            kS1Bands + 1));
  }
}

// The journal and the two partial outputs of a tile. Members are destroyed in reverse order:
// the writers, then the journal, each removing its uncommitted file.
struct TileOutputs {
  std::optional<BatchJournal> journal;
  std::optional<NpyWriter> embeddings, scales;

  // Opens the journal (`key`) and the partial outputs, continuing them when the journal
  // matches. Partial outputs are continued only together with a journal that matches them; if
  // either output is missing or different, everything starts over.
  void open(const TileSummary& summary, const std::string& journal_path, const std::string& key,
            const std::vector<int64_t>& embedding_shape, const std::vector<int64_t>& scale_shape) {
    journal.emplace(journal_path, key, summary.batches);
    embeddings.emplace(summary.embeddings_path, DType::kInt8, embedding_shape, journal->resumed());
    scales.emplace(summary.scales_path, DType::kFloat32, scale_shape, journal->resumed());
    if (journal->resumed() && !(embeddings->resumed() && scales->resumed())) {
      embeddings.reset();
      scales.reset();
      journal.reset();
      std::error_code ec;
      fs::remove(journal_path, ec);
      journal.emplace(journal_path, key, summary.batches);
      embeddings.emplace(summary.embeddings_path, DType::kInt8, embedding_shape, false);
      scales.emplace(summary.scales_path, DType::kFloat32, scale_shape, false);
    }
  }
};

// What the pipeline of `model` is (its description, --dim), checked before any tile: a bad
// --dim or --repeat is one error, not one per tile.
TilePipeline pipeline_of_model(const ModelDescription& model, const InferOptions& options) {
  TilePipeline pipeline = tile_pipeline(model, options.dim);
  if (pipeline.bucketed && options.repeat > 1) {
    throw UsageError(fmt::format(
        "--repeat applies to v1.0 models, whose steps are sampled; a {} model uses every valid "
        "observation, so every pass would be the same",
        version_name(pipeline.version)));
  }
  return pipeline;
}

// The tile's batches: the pixels to compute (one scan of the tile) cut as `pipeline` asks.
// Throws Error naming the tile when a bucketed pipeline finds no valid observation at all.
TilePlan plan_tile(const Tile& tile, const TilePipeline& pipeline, int64_t batch) {
  if (!pipeline.bucketed) return fixed_batches(valid_pixels(tile), batch, pipeline.sampled_steps);
  const ObservationCounts counts = count_observations(tile);
  const auto any = [](const std::vector<int32_t>& c) {
    return std::any_of(c.begin(), c.end(), [](int32_t n) { return n > 0; });
  };
  if (!any(counts.s2) && !any(counts.s1)) {
    throw Error(tile.dir +
                ": holds no valid observation (every S2 mask and every S1 value is 0): "
                "nothing for a " +
                version_name(pipeline.version) + " model to embed");
  }
  return bucket_batches(counts, pipeline, batch);
}

// The streaming workers' share of the tile, their take-overs, the smallest pixels-per-run in
// use and the GPUs' mean busy percentage.
void add_stream_stats(const std::vector<StreamStats>& stream_stats, TileSummary& summary) {
  double busy_percent = 0;
  int gpus = 0;
  for (const auto& s : stream_stats) {
    summary.stream_pixels += s.pixels;
    summary.batches_taken_over += s.batches_taken_over;
    summary.gpu_batch =
        summary.gpu_batch ? std::min(summary.gpu_batch, s.pixels_per_run) : s.pixels_per_run;
    if (s.gpu && s.wall_seconds > 0) {
      busy_percent += 100.0 * s.busy_seconds / s.wall_seconds;
      ++gpus;
    }
  }
  if (gpus > 0) summary.gpu_busy_percent = busy_percent / gpus;
}

// Wraps `factory` so that every engine it builds is checked to come from the identified model:
// an engine built while the file was rewritten or replaced by other bytes would compute with
// other weights than the journal keys name, so it is refused before it runs a batch. A file
// replaced by the same bytes (a model made again) is read again and accepted.
EngineFactory build_from_identified_model(EngineFactory factory, const FileIdentity& model) {
  return [factory = std::move(factory), &model](const std::string& path, const EngineSpec& spec) {
    std::unique_ptr<Engine> engine = factory(path, spec);
    if (!file_unchanged(model) && identify_file(path).sha256 != model.sha256) {
      throw Error(path +
                  ": the model file changed while this run was using it; run again with the "
                  "model as it is now");
    }
    return engine;
  };
}

}  // namespace

struct TileRunner::Kept {
  EngineFactory factory;  // builds from the model identified by `model`, or throws
  FileIdentity model;     // the model file's bytes when the runner was made (journal keys)
  std::string weights;    // describe_weights() of the model (tile records)
  DeviceList devices;
  EngineSpec cpu_spec;                   // the CPU workers' (threads, cpus set per worker)
  std::vector<EngineSpec> stream_specs;  // by streaming device
  // Each device's entry ("cpu", then devices.streams) with its spec, in that order.
  std::vector<std::pair<std::string, EngineSpec>> device_specs;
  Plan cpu_plan;  // the plan without the PUs of the streaming workers; index = position
  // Without "cpu": none. Else 2 PUs per streaming worker (stream i: engine thread on
  // [2i], helpers on [2i+1]) or, on small machines, 1 (stream i: all on [i]).
  std::vector<WorkerPlan> stream_cpus;
  std::optional<ModelShape> shape;  // read from the model on the first tile computed
  TilePipeline pipeline;            // the model's (TileRunner's constructor)
  std::vector<std::unique_ptr<Engine>> cpu_engines;  // by WorkerPlan::index
  std::vector<StreamEngine> stream_engines;          // by streaming device

  void drop_engines() {
    for (auto& engine : cpu_engines) engine.reset();
    for (auto& stream : stream_engines) stream = StreamEngine{};
  }
};

TileRunner::TileRunner(const InferOptions& options, const Plan& plan, EngineFactory factory)
    : options_(options), plan_(plan), kept_(std::make_unique<Kept>()) {
  if (options.batch < 1)
    throw UsageError(fmt::format("batch size must be at least 1 (got {})", options.batch));
  if (options.batch > kMaxInferBatch) {
    throw UsageError(
        fmt::format("batch size must be at most {} (got {})", kMaxInferBatch, options.batch));
  }
  if (options.repeat < 1)
    throw UsageError(fmt::format("--repeat must be at least 1 (got {})", options.repeat));
  kept_->devices = parse_device_list(options.device);
  plan_engines(options, *kept_);
  kept_->model = identify_file(options.model_path);
  const ModelDescription model = read_model(options.model_path);
  kept_->weights = describe_weights(model);
  kept_->factory = build_from_identified_model(std::move(factory), kept_->model);
  kept_->pipeline = pipeline_of_model(model, options);
  if (options.gpu_batch < 1 || options.gpu_batch > kMaxInferBatch) {
    throw UsageError(
        fmt::format("GPU batch must be 1 to {} (got {})", kMaxInferBatch, options.gpu_batch));
  }
  // Next to CPU workers, each streaming worker gets two PUs of its own, one for its engine
  // thread and one for its two helpers (or, on a machine too small for that, one for all
  // three): a GPU waits whenever the thread that launches its kernels waits for a core.
  kept_->cpu_plan = plan;
  const int streams = static_cast<int>(kept_->devices.streams.size());
  if (kept_->devices.cpu && streams > 0) {
    const MachineInfo machine = Topology::this_machine().info();
    kept_->stream_cpus = reserve_feeder_cpus(machine, kept_->cpu_plan, 2 * streams);
    if (kept_->stream_cpus.empty())
      kept_->stream_cpus = reserve_feeder_cpus(machine, kept_->cpu_plan, streams);
  }
  // A CPU worker's engine slot is its index, made its position here.
  for (size_t i = 0; i < kept_->cpu_plan.workers.size(); ++i)
    kept_->cpu_plan.workers[i].index = static_cast<int>(i);
  kept_->cpu_engines.resize(kept_->cpu_plan.workers.size());
  kept_->stream_engines.resize(kept_->devices.streams.size());
}

TileRunner::~TileRunner() = default;

void TileRunner::plan_engines(const InferOptions& options, Kept& kept) {
  kept.device_specs = device_engine_specs(options, kept.devices);
  for (auto& [device, spec] : kept.device_specs) {
    check_engine_can_run(spec, options.model_path);
    if (device == "cpu") {
      kept.cpu_spec = spec;
      continue;
    }
    spec.threads = 1;
    spec.spinning = false;  // its threads only feed the device
    kept.stream_specs.push_back(spec);
  }
}

TileRecord TileRunner::record_of_run(const TileSummary& summary) const {
  TileRecord record;
  record.tessera_version = kVersion;
  record.model = options_.model_path;
  record.model_sha256 = kept_->model.sha256;
  record.weights = kept_->weights;
  record.version = version_name(kept_->pipeline.version);
  record.engine = summary.engine;
  record.precision = summary.precision;
  record.output_dim = kept_->pipeline.output_dim;
  record.repeat = options_.repeat;
  return record;
}

void TileRunner::check_made_alike(const TileSummary& summary, const TileRecord& now) const {
  const std::string path = tile_record_path(options_.out_dir, summary.grid);
  const std::optional<TileRecord> made = read_tile_record(path);
  if (!made) {
    throw Error(summary.embeddings_path + ": exists, but " + path +
                " (what made it) does not: --force recomputes the tile");
  }
  const std::string difference = record_difference(*made, now);
  if (!difference.empty()) {
    // Outputs of the same model by another engine (e.g. of an earlier default) are kept by
    // naming that engine.
    const bool other_engine = made->model_sha256 == now.model_sha256 && made->engine != now.engine;
    throw Error(summary.embeddings_path + ": made with " + difference +
                ": --force recomputes the tile" +
                (other_engine ? ", --engine " + made->engine + " keeps it" : "") +
                ", or write to another directory");
  }
}

TileSummary run_tile(const std::string& tile_dir, const InferOptions& options, const Plan& plan,
                     const ProgressCallback& progress) {
  return TileRunner(options, plan).run(tile_dir, progress);
}

TileSummary TileRunner::run(const std::string& tile_dir, const ProgressCallback& progress,
                            const TileFinisher& finish) {
  const InferOptions& options = options_;
  const auto start = Clock::now();
  const Tile tile = open_tile(tile_dir);
  TileSummary summary;
  summary.tile = tile_dir;
  summary.grid = tile.grid;
  summary.model_sha256 = kept_->model.sha256;
  describe_engines(kept_->device_specs, summary);
  summary.pixels_total = tile.pixels();
  const fs::path out_dir(options.out_dir);
  summary.embeddings_path = (out_dir / (tile.grid + ".npy")).string();
  summary.scales_path = (out_dir / (tile.grid + "_scales.npy")).string();
  summary.lock_path = (out_dir / (tile.grid + ".lock")).string();
  const std::string journal_path = (out_dir / (tile.grid + ".journal")).string();
  check_outputs_spare_inputs(tile, tile_dir,
                             {summary.embeddings_path, summary.scales_path, journal_path,
                              summary.lock_path, tile_record_path(options.out_dir, tile.grid)});
  std::error_code ec;
  fs::create_directories(options.out_dir, ec);
  if (ec) throw Error(options.out_dir + ": cannot create output directory: " + ec.message());
  // Invariant: from here until `lock` is destroyed (after the final renames and the journal's
  // removal, or after a failure has removed or kept the partial files) no other tessera process
  // touches this tile's outputs, partial files or journal, and this one touches them only here.
  // A second run does not wait for the holder (which may take hours): it skips the tile, says
  // so, goes on with the other tiles and exits non-zero at the end (infer/infer_job.cpp).
  const std::optional<OutputLock> lock = OutputLock::try_lock(summary.lock_path);
  if (!lock) {
    summary.status = TileStatus::kLocked;
    return summary;
  }
  const std::string record_path = tile_record_path(options.out_dir, tile.grid);
  if (!options.force && outputs_interrupted(summary, journal_path, record_path)) {
    fmt::print(stderr,
               "tessera: {}: a run stopped while replacing its outputs (its journal is left, its "
               "record {} is not there): computing the tile again\n",
               tile_dir, record_path);
  } else if (outputs_complete(options, summary, journal_path)) {
    check_made_alike(summary, record_of_run(summary));
    summary.status = TileStatus::kSkipped;
    if (finish) summary.extra_outputs = finish(summary, false);
    return summary;
  }
  compute(tile, tile_dir, journal_path, progress, summary);
  if (finish) {
    const StageTimer writing(summary.stages ? &*summary.stages : nullptr, Stage::kWriting);
    summary.extra_outputs = finish(summary, true);
  }
  summary.seconds = seconds_since(start);
  summary.ms_per_pixel = summary.pixels_computed > 0
                             ? 1e3 * summary.seconds / static_cast<double>(summary.pixels_computed)
                             : 0;
  return summary;
}

void TileRunner::compute(const Tile& tile, const std::string& tile_dir,
                         const std::string& journal_path, const ProgressCallback& progress,
                         TileSummary& summary) {
  const InferOptions& options = options_;
  const auto start = Clock::now();
  // The outputs (sized by the model's output width) exist before the workers start, so read the
  // model's shape from the file once.
  if (!kept_->shape) kept_->shape = read_model_shape(options.model_path);
  const ModelShape& shape = *kept_->shape;
  check_model_takes_tile_features(options.model_path, shape);

  const TilePipeline& pipeline = kept_->pipeline;
  const auto scan_start = Clock::now();
  const TilePlan batches = plan_tile(tile, pipeline, options.batch);
  summary.scan_seconds = seconds_since(scan_start);
  summary.pixels_valid = static_cast<int64_t>(batches.pixels.size());
  summary.batches = batches.batches();

  const std::string key = journal_key(tile, options, engines_key(kept_->device_specs), pipeline,
                                      summary.pixels_valid, kept_->model.sha256);
  std::error_code ec;
  if (!options.resume) fs::remove(journal_path, ec);
  say_when_journal_differs(tile_dir, journal_path, key);
  TileOutputs outputs;
  outputs.open(summary, journal_path, key, {tile.height, tile.width, pipeline.output_dim},
               {tile.height, tile.width});
  BatchJournal& journal = *outputs.journal;
  summary.batches_resumed = journal.done_count();

  auto* embedding_rows = static_cast<int8_t*>(outputs.embeddings->data());
  auto* scale_values = static_cast<float*>(outputs.scales->data());
  std::atomic<int64_t> pixels_done{
      batches.pixels_where([&](int64_t b) { return journal.done(b); })};
  const int64_t pixels_done_before = pixels_done.load();
  ProgressMonitor monitor(progress, pixels_done, summary.pixels_valid);

  BatchCounter counter(summary.batches);
  std::atomic<bool> abort{false};
  BatchCommitter committer(journal, pixels_done, abort, outputs.embeddings->temp_path(),
                           outputs.scales->temp_path());
  StreamPace pace;
  BatchFinishes finishes(summary.batches, kept_->cpu_engines.size());
  std::vector<StageProfile> worker_stages(options.profile_stages ? kept_->cpu_engines.size() : 0);
  const TileJob job{tile,      options,        pipeline,
                    batches,   shape,          journal,
                    committer, embedding_rows, scale_values,
                    counter,   pixels_done,    abort,
                    pace,      finishes,       options.profile_stages ? &worker_stages : nullptr};
  // No workers (and no engine builds) when every batch is done already, or there is none.
  const bool work_left = journal.done_count() < summary.batches;
  std::atomic<int> engines_built{0};
  try {
    add_stream_stats(run_workers(job, work_left, engines_built), summary);
  } catch (...) {
    // A journal that could not be written keeps the batches already on disk for a rerun.
    keep_for_resume(journal, *outputs.embeddings, *outputs.scales);
    throw;
  }
  monitor.stop();
  summary.peak_rss_anon_bytes = monitor.peak_rss_anon();
  if (progress) {
    progress(pixels_done.load(), summary.pixels_valid, seconds_since(start));
  }

  if (options.profile_stages) {
    summary.stages.emplace();
    for (const StageProfile& worker : worker_stages) summary.stages->merge(worker);
    summary.stages->add(Stage::kTileScan, std::llround(summary.scan_seconds * 1e9));
  }
  const StageTimer writing(summary.stages ? &*summary.stages : nullptr, Stage::kWriting);
  // The record of earlier outputs goes before they are replaced; this run's comes after.
  const std::string record_path = tile_record_path(options.out_dir, tile.grid);
  fs::remove(record_path, ec);
  outputs.embeddings->commit();
  outputs.scales->commit();
  write_tile_record(record_path, record_of_run(summary));
  journal.remove();
  summary.status = TileStatus::kDone;
  summary.engines_built = engines_built.load();
  summary.pixels_computed = pixels_done.load() - pixels_done_before;
}

std::vector<StreamStats> TileRunner::run_workers(const TileJob& job, bool work_left,
                                                 std::atomic<int>& engines_built) {
  const size_t streams = work_left ? kept_->devices.streams.size() : 0;
  const std::vector<WorkerPlan>& stream_cpus = kept_->stream_cpus;
  std::vector<StreamStats> stream_stats(streams);
  std::vector<std::exception_ptr> errors(streams + 1);
  ThreadGroup stream_threads;
  // CPU workers build their sessions only once every GPU engine is built (or has failed): a
  // GPU is ~100x a CPU worker, and its session build must not queue behind theirs for cores.
  std::latch stream_engines_ready(static_cast<std::ptrdiff_t>(streams));
  for (size_t i = 0; i < streams; ++i) {
    const auto run = [&, i] {
      bool counted = false;
      const auto ready = [&] {
        if (!counted) stream_engines_ready.count_down();
        counted = true;
      };
      try {
        // Threads inherit this binding: the engine's and, unless rebound, the helpers.
        const WorkerPlan* helper_cpus = nullptr;
        if (stream_cpus.size() >= 2 * streams) {
          bind_current_thread(stream_cpus[2 * i], plan_.policy);
          helper_cpus = &stream_cpus[2 * i + 1];
        } else if (i < stream_cpus.size()) {
          bind_current_thread(stream_cpus[i], plan_.policy);
        }
        stream_stats[i] =
            run_stream_worker(job, kept_->factory, kept_->stream_specs[i], kept_->stream_engines[i],
                              helper_cpus, plan_.policy, ready, engines_built);
      } catch (...) {
        errors[i + 1] = std::current_exception();
        job.abort = true;
      }
      ready();
    };
    try {
      // The threads already started stop claiming; those never started count as ready.
      stream_threads.start(run, [&, i] {
        job.abort = true;
        stream_engines_ready.count_down(static_cast<std::ptrdiff_t>(streams - i));
      });
    } catch (const Error&) {
      kept_->drop_engines();  // after the started threads have been joined
      throw;
    }
  }
  if (kept_->devices.cpu && work_left) {
    stream_engines_ready.wait();
    try {
      run_pinned_workers(kept_->cpu_plan, [&](const WorkerPlan& worker) {
        run_cpu_worker(job, kept_->factory, kept_->cpu_spec, worker,
                       kept_->cpu_engines.at(worker.index), engines_built);
      });
    } catch (...) {
      errors[0] = std::current_exception();
      job.abort = true;
    }
  }
  stream_threads.join();
  // Every batch is durable and journaled once the committer has drained.
  try {
    job.committer.finish();
  } catch (...) {
    if (!errors[0]) errors[0] = std::current_exception();
  }
  for (const auto& e : errors) {
    if (e) {
      kept_->drop_engines();  // a failed engine may be in any state
      std::rethrow_exception(e);
    }
  }
  return stream_stats;
}

InferEngines infer_engines(const InferOptions& options) {
  TileSummary described;
  describe_engines(device_engine_specs(options, parse_device_list(options.device)), described);
  return {described.engine, described.precision, described.engines};
}

const char* tile_status_name(TileStatus status) {
  switch (status) {
    case TileStatus::kSkipped:
      return "skipped";
    case TileStatus::kLocked:
      return "locked";
    case TileStatus::kDone:
      break;
  }
  return "done";
}

nlohmann::json tile_summary_json(const TileSummary& s) {
  return {{"tile", s.tile},
          {"grid", s.grid},
          {"extra_outputs", s.extra_outputs},
          {"status", tile_status_name(s.status)},
          {"engine", s.engine},
          {"precision", s.precision},
          {"engines", s.engines},
          {"model_sha256", s.model_sha256},
          {"pixels_total", s.pixels_total},
          {"pixels_valid", s.pixels_valid},
          {"batches", s.batches},
          {"batches_resumed", s.batches_resumed},
          {"pixels_computed", s.pixels_computed},
          {"seconds", s.seconds},
          {"ms_per_pixel", s.ms_per_pixel},
          {"gpu_busy_percent", s.gpu_busy_percent},
          {"gpu_batch", s.gpu_batch},
          {"stream_pixels", s.stream_pixels},
          {"batches_taken_over", s.batches_taken_over},
          {"peak_rss_anon_bytes", s.peak_rss_anon_bytes},
          {"engines_built", s.engines_built},
          {"scan_seconds", s.scan_seconds},
          {"stages", s.stages ? stage_json(*s.stages) : nlohmann::json()},
          {"embeddings", s.embeddings_path},
          {"scales", s.scales_path},
          {"lock", s.lock_path}};
}

}  // namespace tessera
