#pragma once
// The real job: one dpixel tile -> `<grid>.npy` (int8, H x W x latent) and `<grid>_scales.npy`
// (float32, H x W), geotessera-compatible (docs/PIPELINE.md).
//
// The model's version chooses the pipeline (pipeline/tile_pipeline.h), and the pixels to compute
// are cut into fixed batches (pipeline/tile_plan.h: v1.0's batches of B valid pixels at 40 + 40
// steps, or v1.1's and v2's length buckets, one shape per batch). The workers of a placement
// plan each bind themselves, build their own Engine and InputPreparer, then pull batch numbers
// from one shared counter (work stealing without queues), prepare inputs straight into the
// engine's buffers, run R passes (offsets 0..R-1, v1.0), average, quantise and write the rows
// straight into the memory-mapped outputs. Pixels not computed stay all-zero with scale 0.
//
// Engines outlive tiles: a TileRunner builds each worker's engine on the worker's first tile
// and keeps it for the next ones, so a run of many tiles builds every session once (about
// 1.5 s per CPU worker for the full model, more on a GPU), not once per tile.
//
// Fault safety: outputs are built as "<final>.partial" and renamed only when every batch is
// done. A journal "<grid>.journal" next to them lists finished batches; a rerun with resume
// on reopens the partial files and computes only the missing batches, so a killed run
// finishes byte-identical to an uninterrupted one. The working set is O(workers x batch):
// inputs are mmapped, outputs are written through their mapping.

#include <atomic>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tessera/engine/engine_spec.h"
#include "tessera/engine/stage_profile.h"
#include "tessera/topology/placement.h"

namespace tessera {

struct StreamStats;  // stream_worker.h
struct TileRecord;   // tile_record.h
struct TileJob;      // tile_job.h
struct Tile;         // io/tile.h

// The largest batch and GPU batch `infer` takes: 4,194,304 pixels, whose inputs alone fill
// 9.4 GB per worker (far beyond where larger batches stop paying).
constexpr int64_t kMaxInferBatch = int64_t{1} << 22;

struct InferOptions {
  std::string model_path;
  std::string out_dir;
  std::string device = "cpu";        // a device list (device_list.h), e.g. "cpu,cuda:0"
  std::string engine = kOrtBackend;  // the backend of every worker (engine_spec.h's table)
  int64_t batch = 256;
  // H x W of the largest tile the caller will run (infer reads every listed tile's .npy headers
  // first), 0 when unknown. A CPU worker's engine holds min(batch, this or the running tile's
  // H x W) pixels: a batch never holds more pixels than its tile, so a -b far above the tiles
  // costs no memory.
  int64_t largest_tile_pixels = 0;
  // Pixels per run on a streaming (GPU) worker: it claims max(1, gpu_batch / batch)
  // consecutive batches at once. Halved while the GPU runs out of memory.
  int64_t gpu_batch = 8192;
  // What the engines compute at; nullopt is each engine's default on its device (fp32 on the
  // CPU, tf32 on a GPU).
  std::optional<Precision> precision;
  int repeat = 1;      // passes with offsets 0..repeat-1, averaged (v1.0 models only)
  int dim = 0;         // v2: embedding values written per pixel (16, 32, 64, 128); 0: all
  bool force = false;  // recompute tiles whose outputs exist
  bool resume = true;  // continue from a journal left by an interrupted run
  bool spinning = true;
  // Time every tile's stages (TileSummary::stages): the CPU workers' engines stage by stage
  // where the engine measures them (its run() as a whole otherwise), input preparation,
  // quantisation and writing (engine/stage_profile.h).
  bool profile_stages = false;
};

// What happened to a tile: computed (wholly or resumed), skipped because its outputs exist, or
// skipped because another run holds its lock (io/output_lock.h) and is writing it.
enum class TileStatus { kDone, kSkipped, kLocked };
// "done", "skipped", "locked" (summaries).
const char* tile_status_name(TileStatus status);

struct TileSummary {
  std::string tile;
  std::string grid;
  TileStatus status = TileStatus::kDone;
  // What computed the tile: the backend and precision of its CPU workers, or of its first
  // streaming worker without any; `engines` lists every device's ("cpu ort fp32, cuda:0 ort tf32").
  std::string engine, precision, engines;
  // The SHA-256 of the model file the engines were built from (its journal key names it too).
  std::string model_sha256;
  int64_t pixels_total = 0;
  int64_t pixels_valid = 0;
  int64_t batches = 0;
  int64_t batches_resumed = 0;  // already done by an earlier run
  int64_t pixels_computed = 0;  // valid pixels computed in this run (not resumed)
  double seconds = 0;
  double ms_per_pixel = 0;  // wall time over the valid pixels computed in this run
  // Streaming workers only (-1 / 0 when there were none): the GPU's busy time (CUDA events)
  // over the workers' wall time, averaged over GPUs; the smallest pixels-per-run in use at
  // the end (below the asked gpu_batch when out-of-memory halved it).
  double gpu_busy_percent = -1;
  int64_t gpu_batch = 0;
  // Of pixels_computed, those the streaming workers computed (0 without any); the CPU workers
  // computed the rest.
  int64_t stream_pixels = 0;
  // Batches a streaming worker computed again, and finished first, while a CPU worker was
  // still running them at the tile's end (BatchFinishes); that worker's run was interrupted.
  int64_t batches_taken_over = 0;
  // Peak anonymous resident memory of the process while the tile ran (sampled every 0.5 s
  // from /proc/self/status RssAnon): the working set, without the file-backed pages of the
  // memory-mapped inputs and outputs, which the kernel can drop at will.
  int64_t peak_rss_anon_bytes = 0;
  // Engines (sessions) this tile had to build: every worker's on a runner's first tile, 0 on
  // the next ones unless a GPU worker needed a larger one or an earlier tile failed.
  int engines_built = 0;
  // Of `seconds`, the scan that plans the tile's batches (valid pixels, or each pixel's valid
  // observations) and precedes the workers: no device computes meanwhile.
  double scan_seconds = 0;
  // With InferOptions::profile_stages, a computed tile's stages: its CPU workers' summed, the
  // scan and the final commit of the outputs (and the finisher's formats) added.
  std::optional<StageProfile> stages;
  std::string embeddings_path, scales_path;
  std::string lock_path;  // "<out>/<grid>.lock", held while the tile's outputs are written
  // Files the tile's finisher wrote (TileFinisher), e.g. "<out>/<grid>.tif".
  std::vector<std::string> extra_outputs;
};

// Progress of a running tile: pixels finished so far (resumed ones included) of `total`.
using ProgressCallback = std::function<void(int64_t done, int64_t total, double seconds)>;

// Makes more of a tile once its two outputs are complete: called, with the tile's lock still
// held, after this run committed them (`fresh`) or found them complete and made alike (skipped,
// not fresh). Returns the files it wrote (TileSummary::extra_outputs); what it throws is the
// tile's error.
using TileFinisher =
    std::function<std::vector<std::string>(const TileSummary& summary, bool fresh)>;

// Runs tiles one after another with one model, one set of options and one placement plan,
// keeping every worker's engine from one tile to the next. The model is identified by content
// (SHA-256) when the runner is made, and every engine is checked to be built from those bytes
// (an engine built after the file changed fails the tile). Invariants: tiles run one at a time
// (run() is not reentrant). After a tile whose workers failed, every engine is dropped and the next
// tile builds new ones.
class TileRunner {
 public:
  // Checks the options (batch sizes, repeat, devices, CUDA availability) and throws
  // UsageError / Error naming the problem; builds no engine yet.
  // Engines come from `factory` (the registry's make_engine unless given).
  TileRunner(const InferOptions& options, const Plan& plan, EngineFactory factory = make_engine);
  ~TileRunner();
  TileRunner(const TileRunner&) = delete;
  TileRunner& operator=(const TileRunner&) = delete;

  // Processes one tile: see run_tile. A tile whose lock another process holds is not touched:
  // its summary says kLocked. `finish` (may be empty) runs under the lock once the outputs are
  // complete.
  TileSummary run(const std::string& tile_dir, const ProgressCallback& progress,
                  const TileFinisher& finish = {});

 private:
  // The tile's work once its lock is held and its outputs are known to be missing (or forced):
  // scan, open (or resume) the partial outputs, run the workers, commit, remove the journal.
  void compute(const Tile& tile, const std::string& tile_dir, const std::string& journal_path,
               const ProgressCallback& progress, TileSummary& summary);
  // What this run writes in a tile's record (tile_record.h).
  TileRecord record_of_run(const TileSummary& summary) const;
  // Throws Error when the complete outputs of `summary`'s tile were made by something else than
  // `now` describes, or do not say what made them.
  void check_made_alike(const TileSummary& summary, const TileRecord& now) const;
  struct Kept;  // the engines and what was learned about the model, kept between tiles
  // The engine spec of every device, checked against this machine and the model.
  static void plan_engines(const InferOptions& options, Kept& kept);
  // Runs the tile's workers: one thread per streaming device, then (once every streaming engine
  // is built) the CPU workers of the plan; joins them and drains the committer. Rethrows the
  // first error (CPU workers or committer, then streaming devices in order) after dropping every
  // kept engine.
  std::vector<StreamStats> run_workers(const TileJob& job, bool work_left,
                                       std::atomic<int>& engines_built);
  InferOptions options_;
  Plan plan_;
  std::unique_ptr<Kept> kept_;
};

// Processes one tile (a TileRunner used once). Workers: the plan's (if options.device lists "cpu")
// plus one streaming worker per other device, which builds its engine, then keeps two helper
// threads preparing chunks of batches ahead of the engine (and quantising the finished ones) while
// it runs. Throws tessera::Error (bad tile, unusable model, unwritable output); on error no final
// output is created and nothing is left behind but the empty lock file (partial outputs and
// journal are removed; only a process that is killed leaves them, for a resume). The tile's
// lock (io/output_lock.h) is held from before its outputs are looked at until after they are
// committed, so a tile is only ever written by one run at a time.
TileSummary run_tile(const std::string& tile_dir, const InferOptions& options, const Plan& plan,
                     const ProgressCallback& progress);

nlohmann::json tile_summary_json(const TileSummary& summary);

// What a run with `options` computes with, as TileSummary describes it: the CPU workers'
// backend and precision (or the first streaming worker's), and every device's.
struct InferEngines {
  std::string engine, precision, engines;
};
InferEngines infer_engines(const InferOptions& options);

}  // namespace tessera
