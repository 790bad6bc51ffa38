#pragma once
// The benchmark of the study, in one call: a cartesian sweep over devices x layouts x threads
// x batch sizes. Each case runs every worker of its placement plan at once (one pinned thread
// and one Engine per worker), with dummy inputs filled once, warm-up runs, then `reps`
// repetitions of `batches` timed batches per worker.
//
// Row invariants: ms_per_pixel is aggregate (wall time of a repetition over the pixels all
// workers computed in it); ms_per_pixel_per_worker is one worker's batch time over its batch.

#include <atomic>
#include <barrier>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tessera/common/table.h"
#include "tessera/engine/engine_spec.h"
#include "tessera/engine/stage_profile.h"
#include "tessera/topology/topology.h"

namespace tessera {

struct BenchOptions {
  std::string model_path;
  std::vector<Device> devices{Device{}};
  std::vector<std::string> engines{kOrtBackend};  // backends (engine_spec.h's table)
  // Precisions; nullopt is each engine's default on its device. A combination an engine cannot
  // run is skipped (BenchResult::skipped), not a failed row.
  std::vector<std::optional<Precision>> precisions{std::nullopt};
  // Placement layouts (topology/placement.h). Empty: "single:T" for each entry of `threads`.
  std::vector<std::string> layouts;
  std::vector<int> threads{1};
  std::vector<int64_t> batch_sizes{256};
  int batches = 10;  // timed batches per repetition and worker
  int reps = 3;      // repetitions (each one `batches` batches)
  // Untimed batches before the first repetition. Two, because ONNX Runtime's second Run() is
  // still ~1.4x slower than the later ones (measured: docs/PERFORMANCE.md).
  int warmup = 2;
  int baseline = 1;  // 1-based row that speedups are relative to
  std::string membind = "local";
  // "thread": every worker is a thread of this process; "process": every worker is a child
  // process (`tessera bench-worker`) that binds itself, like numactl-pinned parallel jobs.
  std::string spawn = "thread";
  // Bind every worker to its cpuset and memory nodes and pin ORT's threads (the default).
  // false: workers float and ORT's pool threads are unpinned, as a plain ORT program runs.
  bool pin = true;
  bool spinning = true;
  // Backend options given (engine_spec.h: Backend::options), by key; each is set on the engines
  // whose backend takes it, the others run without it.
  std::map<std::string, std::string> backend_options;
  double gpu_baseline_ms_per_pixel = 0;  // > 0: adds a "vs GPU" column
  uint64_t seed = 1;
  // Every timed batch's time stage by stage (BenchRow::stages), from the engines that measure
  // stages (engine/stage_profile.h); workers must be threads (spawn "thread").
  bool profile_stages = false;
  // Steps per branch of every run. 0: the model's own (fixed-step files), or 40 + 40 for a model
  // with symbolic step axes (v1.0 early, v1.1, v2), which runs at any 1..256 given here.
  int64_t s2_steps = 0, s1_steps = 0;
  // Called before each case and each repetition with a one-line status (for a TTY progress line).
  std::function<void(const std::string&)> progress;
  // Called after each case of run_bench with one line: the case and what it measured.
  std::function<void(const std::string&)> done;
};

// A case's outcome: measured, out of memory (a result: the batch does not fit), or failed.
enum class RowStatus { kOk, kOutOfMemory, kError };
// "ok", "oom", "error" (tables and JSON).
std::string row_status_name(RowStatus status);
// The status a name stands for (reading bench JSON); kError for anything unknown.
RowStatus parse_row_status(const std::string& name);

struct BenchRow {
  std::string engine = kOrtBackend;
  std::string device;
  std::string precision;
  std::string layout;
  std::string spawn = "thread";
  bool pinned = true;
  int workers = 1;
  int threads = 1;  // intra-op threads per worker
  int64_t batch = 0;
  int batches = 0;
  int reps = 0;
  int64_t pixels = 0;    // pixels in one repetition, all workers
  double session_s = 0;  // slowest worker's session creation
  double total_s = 0;    // mean wall time of one repetition
  double ms_per_batch = 0, ms_per_batch_sd = 0, ms_per_batch_median = 0, ms_per_batch_p99 = 0;
  double ms_per_pixel = 0;
  double ms_per_pixel_per_worker = 0;
  double pixels_per_s = 0;
  // Against the baseline row; 0 when this row or the baseline failed (null in JSON, blank in
  // the table).
  double speedup = 0;
  RowStatus status = RowStatus::kOk;
  std::string error;
  std::vector<double> samples_ms;  // every timed batch of every worker
  // With BenchOptions::profile_stages: the timed batches of every worker, stage by stage.
  StageProfile stages;
};

struct BenchResult {
  nlohmann::json machine;
  nlohmann::json model;
  std::vector<BenchRow> rows;
  // "<device> <engine> <precision>: <why>" for each combination of the sweep an engine cannot
  // run (listed under the table, not as rows).
  std::vector<std::string> skipped;
  double gpu_baseline_ms_per_pixel = 0;
};

// Runs the sweep. Throws tessera::Error / UsageError for bad options, an unusable model or a
// CUDA device this machine cannot run, before any case runs; a case that fails at run time
// becomes a row: status "oom" when memory ran out, "error" otherwise, and the sweep goes on.
BenchResult run_bench(const BenchOptions& options);
// Runs one case (device, layout, batch) with the other settings of `options`, on a machine
// already described, without re-reading the topology or the model: for searches (tune).
BenchRow run_bench_case(const BenchOptions& options, const MachineInfo& machine,
                        const EngineSpec& engine, const std::string& layout, int64_t batch);

// The workers of one layout as threads of this process, kept alive between measurements:
// each binds itself and builds its engine once, for batches up to `max_batch`; a measurement
// then only warms up a batch size the first time it meets it, and times. bench uses one per
// case; tune keeps one per layout, where rebuilding every session for every candidate would
// cost more than the measuring.
class BenchPool {
 public:
  // Throws UsageError for bad options (spawn must be "thread"), OutOfMemoryError when an engine
  // runs out of memory building itself, and Error when it cannot be built otherwise.
  BenchPool(const BenchOptions& options, const MachineInfo& machine, const EngineSpec& engine,
            const std::string& layout, int64_t max_batch);
  ~BenchPool();
  BenchPool(const BenchPool&) = delete;
  BenchPool& operator=(const BenchPool&) = delete;

  const std::string& layout() const;
  int64_t max_batch() const;
  double session_s() const;  // the slowest worker's engine build
  // One case at `batch` (<= max_batch) with `batches` per repetition and the options' reps:
  // `warmup` untimed batches first if this pool has not run `batch` yet. The row's session_s is
  // 0: the pool's sessions exist already (session_s() has their build time).
  BenchRow measure(int64_t batch, int batches, int warmup);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// One worker's part in a pool measurement, whose workers meet at `meet` `phases` times (after
// the warm-up and after every repetition). Runs `body(next_phase)`, where next_phase arrives at
// the barrier and returns false once any worker has failed (the body then returns early); a
// body that throws sets `failed`. Then arrives at every meeting the body left out, so each
// worker arrives exactly `phases` times whether it finished, failed or stopped early, and no
// worker waits forever. Returns the body's error message ("" when it did not throw); sets
// *out_of_memory (when given) to whether that error was an OutOfMemoryError.
std::string run_worker_phases(int phases, std::barrier<>& meet, std::atomic<bool>& failed,
                              const std::function<void(const std::function<bool()>&)>& body,
                              bool* out_of_memory = nullptr);

Table bench_table(const BenchResult& result);

struct WorkerPlan;
// The child side of spawn = "process": measures one worker of a case (engine, dummy inputs,
// warm-up, options.reps repetitions of options.batches batches), talking to the parent on
// stdin/stdout: "phase" at each phase then waits for "go" (or "stop"); finally
// "result {json}" or "error <message>". Returns the exit code.
int run_bench_worker(const BenchOptions& options, const EngineSpec& engine, int64_t batch,
                     const WorkerPlan& worker);
// One line under the Markdown table: machine, ONNX Runtime version and model.
std::string bench_footer(const BenchResult& result);
// "skipped: <device> <engine> <precision>: <why>\n" for each combination the sweep left out.
std::string skipped_lines(const BenchResult& result);
// "" when no case failed, else one line for stderr: "N of M cases failed (first: <device>
// <layout> b=<batch>: <error>)". Out-of-memory rows are results, not failures.
std::string bench_failures(const BenchResult& result);
nlohmann::json bench_json(const BenchResult& result);
// With profile_stages: for each measured row, "Stages of row N (<device> <engine> <precision>
// <layout> b=<batch>, <runs> runs):" and its stage table (stage_table; `peak_gops` is one
// core's, times the row's threads per worker, for the % of peak column; 0: no such column), or
// one line for an engine that measures no stages. Times are summed over the workers, rates are
// per worker.
std::string bench_stage_tables(const BenchResult& result, double peak_gops);

// Physical cores this process may use: the default thread count.
int default_thread_count();

}  // namespace tessera
