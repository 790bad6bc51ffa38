// The sweep: the cases of devices x engines x precisions x layouts x batches, checked once,
// then measured one after the other (each by child processes or a BenchPool used once).

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <set>

#include "tessera/bench/bench.h"
#include "tessera/bench/bench_case.h"
#include "tessera/bench/machine.h"
#include "tessera/common/clock.h"
#include "tessera/common/error.h"
#include "tessera/engine/engine_spec.h"
#include "tessera/topology/placement.h"
#include "tessera/topology/topology.h"

namespace tessera {
namespace {

// One case: its workers as child processes, or as the threads of a BenchPool used once.
BenchRow run_case(const BenchOptions& options, const MachineInfo& machine, const Case& c) {
  const Plan plan = plan_layout(machine, c.layout, parse_memory_policy(options.membind));
  if (options.spawn == "process") {
    std::vector<WorkerTimes> times(plan.workers.size());
    const CaseError first_error = measure_in_processes(options, c, plan, times);
    return make_row(options, c, plan, first_error, times);
  }
  std::optional<BenchPool> pool;
  try {
    pool.emplace(options, machine, c.engine, c.layout, c.batch);
  } catch (const OutOfMemoryError& e) {
    return make_row(options, c, plan, {e.what(), true}, {});
  } catch (const Error& e) {
    return make_row(options, c, plan, {e.what(), false}, {});
  }
  BenchRow row = pool->measure(c.batch, options.batches, options.warmup);
  row.session_s = pool->session_s();
  return row;
}

// What every case of a sweep would share, checked once before the first: the model's inputs
// and output, and that this machine can run every engine of the sweep (a GPU's provider, the
// CPU instructions of a precision). Throws the one-line Error the first case would have.
void check_sweep(const BenchOptions& options, const std::vector<Case>& cases) {
  std::set<std::string> checked;  // each engine once: checking may load the model
  for (const Case& c : cases) {
    if (checked.insert(c.engine.device.name() + " " + c.engine.label()).second)
      check_engine_can_run(c.engine, options.model_path);
  }
}

// The engines of the sweep, devices x engines x precisions in that order; a combination an
// engine cannot run is left out and described in `skipped` (once each).
std::vector<EngineSpec> sweep_engines(const BenchOptions& options,
                                      std::vector<std::string>& skipped) {
  std::vector<EngineSpec> specs;
  for (const auto& device : options.devices) {
    for (const auto& engine : options.engines) {
      for (const auto& precision : options.precisions) {
        const std::string why = engine_cannot_run(engine, device, precision);
        if (!why.empty()) {
          skipped.push_back(fmt::format("{} {} {}: {}", device.name(), engine,
                                        precision ? precision_name(*precision) : "(default)", why));
          continue;
        }
        const EngineSpec spec = resolve_engine_spec(engine, device, precision);
        const bool seen = std::any_of(specs.begin(), specs.end(), [&](const EngineSpec& s) {
          return s.device == spec.device && s.label() == spec.label();
        });
        if (!seen) specs.push_back(spec);
      }
    }
  }
  return specs;
}

// "[2/8] cpu ort fp32 single:1 b=8: 0.0123 ms/px, 0.4 s": case i of `cases` measured as `row`.
std::string case_done_line(size_t i, const std::vector<Case>& cases, const BenchRow& row,
                           Clock::time_point start) {
  const std::string what = row.status == RowStatus::kOk
                               ? fmt::format("{:.4f} ms/px", row.ms_per_pixel)
                               : row_status_name(row.status);
  return fmt::format("[{}/{}] {}: {}, {:.1f} s", i + 1, cases.size(), cases[i].label(), what,
                     seconds_since(start));
}

}  // namespace

BenchResult run_bench(const BenchOptions& options) {
  validate(options);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(options.model_path, ec)) {
    throw Error(options.model_path + (std::filesystem::exists(options.model_path, ec)
                                          ? ": not a regular file"
                                          : ": no such file"));
  }
  const Topology topology = Topology::this_machine();
  const MachineInfo machine = topology.info();
  std::vector<std::string> layouts = options.layouts;
  if (layouts.empty()) {
    for (int t : options.threads) layouts.push_back(fmt::format("single:{}", t));
  }
  // Plan every layout up front, so a bad one fails before anything runs.
  for (const auto& layout : layouts)
    plan_layout(machine, layout, parse_memory_policy(options.membind));
  BenchResult result;
  std::vector<Case> cases;
  for (const EngineSpec& engine : sweep_engines(options, result.skipped)) {
    for (const auto& layout : layouts) {
      for (int64_t batch : options.batch_sizes) cases.push_back({engine, layout, batch});
    }
  }
  if (cases.empty()) throw UsageError("no engine of the sweep can run: " + result.skipped.front());
  if (options.baseline < 1 || options.baseline > static_cast<int>(cases.size())) {
    throw UsageError(
        fmt::format("--baseline {} is not a row (1..{})", options.baseline, cases.size()));
  }

  check_bench_steps(options);
  check_sweep(options, cases);
  result.machine = describe_machine(machine);
  result.model = describe_model(options.model_path);
  const StepCounts steps = bench_steps(options, read_model_shape(options.model_path));
  result.model["s2_steps"] = steps.s2;
  result.model["s1_steps"] = steps.s1;
  result.gpu_baseline_ms_per_pixel = options.gpu_baseline_ms_per_pixel;
  for (size_t i = 0; i < cases.size(); ++i) {
    if (options.progress) {
      options.progress(fmt::format("[{}/{}] {}", i + 1, cases.size(), cases[i].label()));
    }
    const auto start = Clock::now();
    result.rows.push_back(run_case(options, machine, cases[i]));
    if (options.done) options.done(case_done_line(i, cases, result.rows.back(), start));
  }
  const BenchRow& base = result.rows[options.baseline - 1];
  for (auto& row : result.rows) {
    row.speedup = (row.status == RowStatus::kOk && base.status == RowStatus::kOk)
                      ? base.ms_per_pixel / row.ms_per_pixel
                      : 0;
  }
  return result;
}

BenchRow run_bench_case(const BenchOptions& options, const MachineInfo& machine,
                        const EngineSpec& engine, const std::string& layout, int64_t batch) {
  validate(options);
  return run_case(options, machine, {engine, layout, batch});
}

int default_thread_count() {
  return std::max(1, Topology::this_machine().info().cores);
}

}  // namespace tessera
