#pragma once
// One case of a bench sweep (engine, layout, batch), as the sweep (sweep.cpp), the thread pool
// (bench_pool.cpp) and the child processes (bench_process.cpp) all measure it: building and
// timing one worker, and the row a case's workers' times make. Internal to bench/.
//
// Invariant: a case's row comes from make_row only, whoever measured it, so threads and child
// processes report the same columns the same way.

#include <fmt/format.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tessera/bench/bench.h"
#include "tessera/common/clock.h"
#include "tessera/engine/engine.h"
#include "tessera/engine/engine_spec.h"
#include "tessera/pipeline/tile_pipeline.h"
#include "tessera/topology/placement.h"

namespace tessera {

// What one worker measured in one case.
struct WorkerTimes {
  std::vector<double> batch_ms;
  std::vector<Clock::time_point> rep_start, rep_end;
  double session_s = 0;
  StageProfile stages;  // the timed batches, with BenchOptions::profile_stages
};

struct Case {
  EngineSpec engine;  // backend, device and precision
  std::string layout;
  int64_t batch;

  std::string label() const {
    return fmt::format("{} {} {} b={}", engine.device.name(), engine.label(), layout, batch);
  }
};

// How a case failed: the first worker's error, and whether memory ran out (a result, not a
// failure: the batch does not fit).
struct CaseError {
  std::string message;
  bool out_of_memory = false;
  bool failed() const { return !message.empty(); }
};

// One worker's engine for batches up to `max_batch`, its inputs filled with dummy data.
std::unique_ptr<Engine> build_worker_engine(const BenchOptions& options, const EngineSpec& engine,
                                            const WorkerPlan& worker, int64_t max_batch,
                                            double* session_s);

// Times one worker of a case on an engine already built: `warmup` untimed batches, then the
// repetitions. `next_phase` is called after the warm-up and after every repetition (1 + reps
// calls); it returns false when the case is abandoned because another worker failed.
void time_worker(const BenchOptions& options, const Case& c, const WorkerPlan& worker,
                 Engine& engine, int warmup, const std::function<bool()>& next_phase,
                 WorkerTimes& mine);

// Measures one worker of a case: its engine, then time_worker. `next_phase` is called once the
// engine is ready, then as time_worker calls it (2 + reps calls). Errors are thrown.
WorkerTimes measure_worker(const BenchOptions& options, const Case& c, const WorkerPlan& worker,
                           const std::function<bool()>& next_phase);

// The row of a case from its workers' times, or from the first error: an "oom" row for
// running out of memory, an "error" row otherwise (what every case would share, such as an
// unusable model or a missing GPU, is found before the first case: check_sweep).
BenchRow make_row(const BenchOptions& options, const Case& c, const Plan& plan,
                  const CaseError& first_error, const std::vector<WorkerTimes>& times);

// Throws UsageError for options no sweep can run with (empty lists, counts below 1, unknown
// engines, precisions, spawn modes or memory policies).
void validate(const BenchOptions& options);
// The steps every run of the sweep takes (BenchOptions::s2_steps, s1_steps) on a model of
// `shape`; check_bench_steps throws UsageError for steps the model cannot take.
StepCounts bench_steps(const BenchOptions& options, const ModelShape& shape);
void check_bench_steps(const BenchOptions& options);

// All workers of a plan as child processes (`tessera bench-worker`), each binding itself, as
// the study did with numactl. The children report "phase" and wait for "go" (or "stop") at
// every phase; the steady clock is system-wide, so their timestamps compare directly.
CaseError measure_in_processes(const BenchOptions& options, const Case& c, const Plan& plan,
                               std::vector<WorkerTimes>& times);

}  // namespace tessera
