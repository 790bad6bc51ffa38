// Building, timing and reporting one worker of a case (bench_case.h).

#include "tessera/bench/bench_case.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "tessera/bench/stats.h"
#include "tessera/common/error.h"
#include "tessera/engine/dummy_inputs.h"

namespace tessera {

// One worker's engine for batches up to `max_batch`, its inputs filled with dummy data.
std::unique_ptr<Engine> build_worker_engine(const BenchOptions& options, const EngineSpec& engine,
                                            const WorkerPlan& worker, int64_t max_batch,
                                            double* session_s) {
  EngineSpec spec = engine;
  spec.threads = worker.threads;
  spec.spinning = options.spinning;
  spec.max_batch = max_batch;
  if (spec.on_cpu() && options.pin) spec.cpus = worker.cpus;
  for (const auto& [key, value] : options.backend_options)
    if (backend_takes_option(spec.backend, key)) spec.backend_options[key] = value;
  std::unique_ptr<Engine> built = make_engine(options.model_path, spec);
  if (session_s) *session_s = built->build_seconds();
  const StepCounts steps = bench_steps(options, built->shape());
  built->set_steps(steps.s2, steps.s1);
  fill_dummy_inputs(*built, options.seed + static_cast<uint64_t>(worker.index));
  return built;
}

// Times one worker of a case on an engine already built: `warmup` untimed batches, then the
// repetitions. `next_phase` is called after the warm-up and after every repetition (1 + reps
// calls); it returns false when the case is abandoned because another worker failed.
void time_worker(const BenchOptions& options, const Case& c, const WorkerPlan& worker,
                 Engine& engine, int warmup, const std::function<bool()>& next_phase,
                 WorkerTimes& mine) {
  for (int i = 0; i < warmup; ++i) engine.run(c.batch);
  if (!next_phase()) return;
  const bool engine_times_itself = options.profile_stages && engine.set_stage_profile(&mine.stages);
  struct Detach {  // the profile is this worker's: no later run may add to it
    Engine& engine;
    ~Detach() { engine.set_stage_profile(nullptr); }
  } detach{engine};
  for (int rep = 0; rep < options.reps; ++rep) {
    if (worker.index == 0 && options.progress)
      options.progress(fmt::format("{} rep {}/{}", c.label(), rep + 1, options.reps));
    mine.rep_start.push_back(Clock::now());
    for (int b = 0; b < options.batches; ++b) {
      const auto start = Clock::now();
      const RunTimer whole(options.profile_stages && !engine_times_itself ? &mine.stages : nullptr);
      engine.run(c.batch);
      mine.batch_ms.push_back(1e3 * seconds_since(start));
    }
    mine.rep_end.push_back(Clock::now());
    if (!next_phase()) return;
  }
}

// Measures one worker of a case: its engine, then time_worker. `next_phase` is called once the
// engine is ready, then as time_worker calls it (2 + reps calls). Errors are thrown.
WorkerTimes measure_worker(const BenchOptions& options, const Case& c, const WorkerPlan& worker,
                           const std::function<bool()>& next_phase) {
  WorkerTimes mine;
  const std::unique_ptr<Engine> engine =
      build_worker_engine(options, c.engine, worker, c.batch, &mine.session_s);
  if (!next_phase()) return mine;
  time_worker(options, c, worker, *engine, options.warmup, next_phase, mine);
  return mine;
}

// The row of a case from its workers' times, or from the first error: an "oom" row for
// running out of memory, an "error" row otherwise (what every case would share, such as an
// unusable model or a missing GPU, is found before the first case: check_sweep).
BenchRow make_row(const BenchOptions& options, const Case& c, const Plan& plan,
                  const CaseError& first_error, const std::vector<WorkerTimes>& times) {
  BenchRow row;
  row.engine = c.engine.backend;
  row.device = c.engine.device.name();
  row.precision = precision_name(c.engine.precision);
  row.layout = c.layout;
  row.spawn = options.spawn;
  row.pinned = options.pin;
  row.workers = static_cast<int>(plan.workers.size());
  row.threads = plan.workers.empty() ? 0 : plan.workers.front().threads;
  row.batch = c.batch;
  row.batches = options.batches;
  row.reps = options.reps;
  row.pixels = c.batch * options.batches * row.workers;
  if (first_error.failed()) {
    // Running out of memory is a result (the batch does not fit); anything else failed.
    row.status = first_error.out_of_memory ? RowStatus::kOutOfMemory : RowStatus::kError;
    row.error = first_error.message;
    std::replace(row.error.begin(), row.error.end(), '\n', ' ');
    return row;
  }
  double wall_sum = 0;
  for (int rep = 0; rep < options.reps; ++rep) {
    Clock::time_point start = times[0].rep_start[rep], end = times[0].rep_end[rep];
    for (const auto& t : times) {
      start = std::min(start, t.rep_start[rep]);
      end = std::max(end, t.rep_end[rep]);
    }
    wall_sum += std::chrono::duration<double>(end - start).count();
  }
  for (const auto& t : times) {
    row.samples_ms.insert(row.samples_ms.end(), t.batch_ms.begin(), t.batch_ms.end());
    row.session_s = std::max(row.session_s, t.session_s);
    row.stages.merge(t.stages);
  }
  const SampleStats stats = summarize(row.samples_ms);
  row.total_s = wall_sum / options.reps;
  row.ms_per_batch = stats.mean;
  row.ms_per_batch_sd = stats.sd;
  row.ms_per_batch_median = stats.median;
  row.ms_per_batch_p99 = stats.p99;
  row.ms_per_pixel = 1e3 * row.total_s / static_cast<double>(row.pixels);
  row.ms_per_pixel_per_worker = stats.mean / static_cast<double>(c.batch);
  row.pixels_per_s = static_cast<double>(row.pixels) / row.total_s;
  return row;
}

StepCounts bench_steps(const BenchOptions& options, const ModelShape& shape) {
  const int64_t fallback = shape.symbolic_steps ? kSampledSteps : 0;
  return {options.s2_steps > 0 ? options.s2_steps : (fallback ? fallback : shape.s2_steps),
          options.s1_steps > 0 ? options.s1_steps : (fallback ? fallback : shape.s1_steps)};
}

void check_bench_steps(const BenchOptions& options) {
  if (options.s2_steps == 0 && options.s1_steps == 0) return;
  const ModelShape shape = read_model_shape(options.model_path);
  const StepCounts steps = bench_steps(options, shape);
  if (!shape.symbolic_steps && (steps.s2 != shape.s2_steps || steps.s1 != shape.s1_steps)) {
    throw UsageError(fmt::format(
        "--steps: {} takes {} + {} fixed steps; other step counts need a model with symbolic step "
        "axes (v1.0 early, v1.1, v2)",
        options.model_path, shape.s2_steps, shape.s1_steps));
  }
  if (steps.s2 < 1 || steps.s2 > kMaxModelSteps || steps.s1 < 1 || steps.s1 > kMaxModelSteps)
    throw UsageError(fmt::format("--steps: need 1..{} per branch", kMaxModelSteps));
}

void validate(const BenchOptions& options) {
  if (options.devices.empty()) throw UsageError("--device needs at least one device");
  if (options.engines.empty()) throw UsageError("--engine needs at least one engine");
  if (options.precisions.empty()) throw UsageError("--precision needs at least one precision");
  if (options.batch_sizes.empty()) throw UsageError("-b needs at least one batch size");
  for (int64_t b : options.batch_sizes) {
    if (b < 1) throw UsageError(fmt::format("batch size must be at least 1 (got {})", b));
  }
  for (int t : options.threads) {
    if (t < 1) throw UsageError(fmt::format("thread count must be at least 1 (got {})", t));
  }
  if (options.batches < 1)
    throw UsageError(fmt::format("--batches must be at least 1 (got {})", options.batches));
  if (options.profile_stages && options.spawn != "thread")
    throw UsageError("--profile-stages needs --spawn thread (it adds up the workers' engines)");
  if (options.reps < 1)
    throw UsageError(fmt::format("-r must be at least 1 (got {})", options.reps));
  if (options.warmup < 0)
    throw UsageError(fmt::format("--warmup must be 0 or more (got {})", options.warmup));
  for (const auto& e : options.engines) find_backend(e);  // UsageError for an unknown one
  for (const auto& [key, value] : options.backend_options) check_option_of_any_backend(key, value);
  if (options.spawn != "thread" && options.spawn != "process") {
    throw UsageError("unknown --spawn '" + options.spawn + "' (expected thread or process)");
  }
  parse_memory_policy(options.membind);
}

}  // namespace tessera
