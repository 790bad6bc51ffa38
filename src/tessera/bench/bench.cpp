#include "tessera/bench/bench.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "tessera/bench/machine.h"
#include "tessera/bench/stats.h"
#include "tessera/common/clock.h"
#include "tessera/common/error.h"
#include "tessera/common/threads.h"
#include "tessera/common/version.h"
#include "tessera/engine/engine_spec.h"
#include "tessera/model/dummy_inputs.h"
#include "tessera/model/model_info.h"
#include "tessera/runtime/child_process.h"
#include "tessera/topology/binding.h"
#include "tessera/topology/placement.h"
#include "tessera/topology/topology.h"

namespace tessera {
namespace {

// What one worker measured in one case.
struct WorkerTimes {
  std::vector<double> batch_ms;
  std::vector<Clock::time_point> rep_start, rep_end;
  double session_s = 0;
};

struct Case {
  EngineSpec engine;  // backend, device and precision
  std::string layout;
  int64_t batch;

  std::string label() const {
    return fmt::format("{} {} {} b={}", engine.device(), engine.label(), layout, batch);
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
                                            double* session_s) {
  EngineSpec spec = engine;
  spec.threads = worker.threads;
  spec.spinning = options.spinning;
  spec.max_batch = max_batch;
  if (spec.on_cpu() && options.pin) spec.cpus = worker.cpus;
  if (spec.backend == "ort")
    spec.backend_options["optimization_level"] = std::to_string(options.optimization_level);
  std::unique_ptr<Engine> built = make_engine(options.model_path, spec);
  if (session_s) *session_s = built->build_seconds();
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
  for (int rep = 0; rep < options.reps; ++rep) {
    if (worker.index == 0 && options.progress)
      options.progress(fmt::format("{} rep {}/{}", c.label(), rep + 1, options.reps));
    mine.rep_start.push_back(Clock::now());
    for (int b = 0; b < options.batches; ++b) {
      const auto start = Clock::now();
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

int64_t to_ns(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
Clock::time_point from_ns(int64_t ns) {
  return Clock::time_point(std::chrono::nanoseconds(ns));
}

// All workers of a plan as child processes (`tessera bench-worker`), each binding itself, as
// the study did with numactl. The children report "phase" and wait for "go" (or "stop") at
// every phase; the steady clock is system-wide, so their timestamps compare directly.
CaseError measure_in_processes(const BenchOptions& options, const Case& c, const Plan& plan,
                               std::vector<WorkerTimes>& times) {
  const std::string exe = self_executable();
  std::vector<std::unique_ptr<ChildProcess>> children;
  for (const WorkerPlan& worker : plan.workers) {
    std::vector<std::string> argv = {exe,           "bench-worker",
                                     "--model",     options.model_path,
                                     "--device",    c.engine.device(),
                                     "--engine",    c.engine.backend,
                                     "--precision", c.engine.precision,
                                     "--batch",     std::to_string(c.batch),
                                     "--batches",   std::to_string(options.batches),
                                     "--reps",      std::to_string(options.reps),
                                     "--warmup",    std::to_string(options.warmup),
                                     "--seed",      std::to_string(options.seed),
                                     "--opt-level", std::to_string(options.optimization_level),
                                     "--membind",   memory_policy_name(plan.policy),
                                     "--index",     std::to_string(worker.index),
                                     "--cpus",      cpu_list_string(worker.cpus),
                                     "--nodes",     cpu_list_string(worker.memory_nodes)};
    if (!options.spinning) argv.push_back("--no-spin");
    if (!options.pin) argv.push_back("--no-pin");
    children.push_back(std::make_unique<ChildProcess>(argv));
  }
  CaseError error;
  const int phases = 2 + options.reps;
  for (int phase = 0; phase < phases && !error.failed(); ++phase) {
    for (size_t i = 0; i < children.size(); ++i) {
      const auto line = children[i]->read_line();
      if (error.failed()) continue;
      if (!line) {
        error.message = fmt::format("worker process {} ended unexpectedly", i);
      } else if (line->rfind("error ", 0) == 0 || line->rfind("oom ", 0) == 0) {
        error.out_of_memory = line->rfind("oom ", 0) == 0;
        error.message = line->substr(line->find(' ') + 1);
      }
    }
    for (auto& child : children) child->send_line(error.failed() ? "stop" : "go");
  }
  if (!error.failed()) {
    for (size_t i = 0; i < children.size(); ++i) {
      const auto line = children[i]->read_line();
      if (!line || line->rfind("result ", 0) != 0) {
        error.message = fmt::format("worker process {} sent no result", i);
        break;
      }
      const auto doc = nlohmann::json::parse(line->substr(7));
      WorkerTimes& t = times[i];
      t.session_s = doc["session_s"];
      t.batch_ms = doc["batch_ms"].get<std::vector<double>>();
      for (int64_t ns : doc["rep_start_ns"]) t.rep_start.push_back(from_ns(ns));
      for (int64_t ns : doc["rep_end_ns"]) t.rep_end.push_back(from_ns(ns));
    }
  }
  for (auto& child : children) child->wait();
  return error;
}

// The row of a case from its workers' times, or from the first error: an "oom" row for
// running out of memory, an "error" row otherwise (what every case would share, such as an
// unusable model or a missing GPU, is found before the first case: check_sweep).
BenchRow make_row(const BenchOptions& options, const Case& c, const Plan& plan,
                  const CaseError& first_error, const std::vector<WorkerTimes>& times) {
  BenchRow row;
  row.engine = c.engine.backend;
  row.device = c.engine.device();
  row.precision = c.engine.precision;
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
  if (options.reps < 1)
    throw UsageError(fmt::format("-r must be at least 1 (got {})", options.reps));
  if (options.warmup < 0)
    throw UsageError(fmt::format("--warmup must be 0 or more (got {})", options.warmup));
  for (const auto& d : options.devices) {
    for (const auto& e : options.engines) {
      for (const auto& p : options.precisions) engine_cannot_run(e, d, p);  // grammar: throws
    }
  }
  check_backend_option("ort", "optimization_level", std::to_string(options.optimization_level));
  if (options.spawn != "thread" && options.spawn != "process") {
    throw UsageError("unknown --spawn '" + options.spawn + "' (expected thread or process)");
  }
  parse_memory_policy(options.membind);
}

// What every case of a sweep would share, checked once before the first: the model's inputs
// and output, and that this machine can run every engine of the sweep (a GPU's provider, the
// CPU instructions of a precision). Throws the one-line Error the first case would have.
void check_sweep(const BenchOptions& options, const std::vector<Case>& cases) {
  for (const Case& c : cases) check_engine_can_run(c.engine, options.model_path);
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
          skipped.push_back(fmt::format("{} {} {}: {}", device, engine,
                                        precision.empty() ? "(default)" : precision, why));
          continue;
        }
        const EngineSpec spec = parse_engine_spec(engine, device, precision);
        const bool seen = std::any_of(specs.begin(), specs.end(), [&](const EngineSpec& s) {
          return s.device() == spec.device() && s.label() == spec.label();
        });
        if (!seen) specs.push_back(spec);
      }
    }
  }
  return specs;
}

}  // namespace

int run_bench_worker(const BenchOptions& options, const EngineSpec& engine, int64_t batch,
                     const WorkerPlan& worker) {
  auto next_phase = [] {
    std::cout << "phase" << std::endl;
    std::string reply;
    return static_cast<bool>(std::getline(std::cin, reply)) && reply == "go";
  };
  try {
    if (options.pin) bind_worker_thread(worker, parse_memory_policy(options.membind));
    const WorkerTimes t = measure_worker(options, Case{engine, "", batch}, worker, next_phase);
    if (static_cast<int>(t.rep_end.size()) != options.reps) return 0;  // told to stop
    nlohmann::json result = {{"session_s", t.session_s}, {"batch_ms", t.batch_ms}};
    result["rep_start_ns"] = nlohmann::json::array();
    result["rep_end_ns"] = nlohmann::json::array();
    for (auto p : t.rep_start) result["rep_start_ns"].push_back(to_ns(p));
    for (auto p : t.rep_end) result["rep_end_ns"].push_back(to_ns(p));
    std::cout << "result " << result.dump() << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::string message = e.what();
    std::replace(message.begin(), message.end(), '\n', ' ');
    const bool oom = dynamic_cast<const OutOfMemoryError*>(&e) != nullptr;
    std::cout << (oom ? "oom " : "error ") << message << std::endl;
    return 1;
  }
}

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

  check_sweep(options, cases);
  result.machine = describe_machine(machine);
  result.model = describe_model(options.model_path);
  result.gpu_baseline_ms_per_pixel = options.gpu_baseline_ms_per_pixel;
  for (size_t i = 0; i < cases.size(); ++i) {
    if (options.progress) {
      options.progress(fmt::format("[{}/{}] {}", i + 1, cases.size(), cases[i].label()));
    }
    result.rows.push_back(run_case(options, machine, cases[i]));
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

std::string bench_failures(const BenchResult& result) {
  const BenchRow* first = nullptr;
  int failed = 0;
  for (const auto& row : result.rows) {
    if (row.status != RowStatus::kError) continue;
    if (!first) first = &row;
    ++failed;
  }
  if (!first) return "";
  return fmt::format("{} of {} cases failed (first: {} {} b={}: {})", failed, result.rows.size(),
                     first->device, first->layout, first->batch, first->error);
}

std::string row_status_name(RowStatus status) {
  switch (status) {
    case RowStatus::kOk:
      return "ok";
    case RowStatus::kOutOfMemory:
      return "oom";
    case RowStatus::kError:
      break;
  }
  return "error";
}

RowStatus parse_row_status(const std::string& name) {
  if (name == "ok") return RowStatus::kOk;
  if (name == "oom") return RowStatus::kOutOfMemory;
  return RowStatus::kError;
}

Table bench_table(const BenchResult& result) {
  std::vector<Column> columns = {
      {"device", "device", -1, false},
      {"layout", "layout", -1, false},
      {"workers", "jobs"},
      {"threads", "threads/job"},
      {"batch", "batch"},
      {"engine", "engine", -1, false},
      {"batches", "batches"},
      {"total_s", "total s", 2},
      {"ms_per_batch", "ms/batch", 1},
      {"ms_per_batch_sd", "± sd", 1},
      {"ms_per_pixel_per_worker", "ms/px per job", 3},
      {"ms_per_pixel", "ms/px aggregate", 3},
      {"pixels_per_s", "px/s", 1},
      {"speedup", "speedup", 2},
  };
  const bool vs_gpu = result.gpu_baseline_ms_per_pixel > 0;
  if (vs_gpu) columns.push_back({"vs_gpu", "vs GPU", 2});
  columns.push_back({"status", "status", -1, false});
  Table table(columns);
  for (const auto& r : result.rows) {
    const bool ok = r.status == RowStatus::kOk;
    auto num = [&](double v) { return ok ? nlohmann::json(v) : nlohmann::json(); };
    std::string layout = r.layout;
    if (r.spawn == "process") layout += " (processes)";
    if (!r.pinned) layout += " (unpinned)";
    std::vector<nlohmann::json> cells = {r.device,
                                         layout,
                                         r.workers,
                                         r.threads,
                                         r.batch,
                                         r.engine + " " + r.precision,
                                         r.batches,
                                         num(r.total_s),
                                         num(r.ms_per_batch),
                                         num(r.ms_per_batch_sd),
                                         num(r.ms_per_pixel_per_worker),
                                         num(r.ms_per_pixel),
                                         num(r.pixels_per_s),
                                         r.speedup > 0 ? num(r.speedup) : nlohmann::json()};
    if (vs_gpu) cells.push_back(num(result.gpu_baseline_ms_per_pixel / r.ms_per_pixel));
    const std::string status = row_status_name(r.status);
    cells.push_back(ok ? status : status + ": " + r.error);
    table.add_row(std::move(cells));
  }
  return table;
}

std::string bench_footer(const BenchResult& result) {
  const auto& m = result.machine;
  std::string model = result.model.value("path", "");
  if (result.model.contains("parameters") && result.model["parameters"].is_number()) {
    model += fmt::format(" ({} parameters)", result.model["parameters"].get<int64_t>());
  }
  return fmt::format("{}, {} cores / {} PUs / {} NUMA node(s), ONNX Runtime {}; model {}",
                     m.value("cpu_model", "unknown CPU"), m.value("cores", 0), m.value("pus", 0),
                     m.value("numa_nodes", 0), m.value("ort_version", "?"), model);
}

std::string skipped_lines(const BenchResult& result) {
  std::string out;
  for (const auto& line : result.skipped) out += "skipped: " + line + "\n";
  return out;
}

int default_thread_count() {
  return std::max(1, Topology::this_machine().info().cores);
}

nlohmann::json bench_json(const BenchResult& result) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& r : result.rows) {
    rows.push_back({{"engine", r.engine},
                    {"device", r.device},
                    {"precision", r.precision},
                    {"layout", r.layout},
                    {"spawn", r.spawn},
                    {"pinned", r.pinned},
                    {"workers", r.workers},
                    {"threads", r.threads},
                    {"batch", r.batch},
                    {"batches", r.batches},
                    {"reps", r.reps},
                    {"pixels", r.pixels},
                    {"session_s", r.session_s},
                    {"total_s", r.total_s},
                    {"ms_per_batch", r.ms_per_batch},
                    {"ms_per_batch_sd", r.ms_per_batch_sd},
                    {"ms_per_batch_median", r.ms_per_batch_median},
                    {"ms_per_batch_p99", r.ms_per_batch_p99},
                    {"ms_per_pixel", r.ms_per_pixel},
                    {"ms_per_pixel_per_worker", r.ms_per_pixel_per_worker},
                    {"pixels_per_s", r.pixels_per_s},
                    {"speedup", r.speedup > 0 ? nlohmann::json(r.speedup) : nlohmann::json()},
                    {"status", row_status_name(r.status)},
                    {"error", r.error},
                    {"samples_ms", r.samples_ms}});
  }
  nlohmann::json out = {{"tool", "tessera bench"}, {"skipped", result.skipped},
                        {"version", kVersion},     {"machine", result.machine},
                        {"model", result.model},   {"rows", rows}};
  if (result.gpu_baseline_ms_per_pixel > 0)
    out["gpu_baseline_ms_per_pixel"] = result.gpu_baseline_ms_per_pixel;
  return out;
}

std::string run_worker_phases(int phases, std::barrier<>& meet, std::atomic<bool>& failed,
                              const std::function<void(const std::function<bool()>&)>& body,
                              bool* out_of_memory) {
  int arrived = 0;
  const auto next_phase = [&] {
    meet.arrive_and_wait();
    ++arrived;
    return !failed.load();
  };
  std::string error;
  try {
    body(next_phase);
  } catch (const std::exception& e) {
    failed = true;
    error = e.what();
    if (out_of_memory) *out_of_memory = dynamic_cast<const OutOfMemoryError*>(&e) != nullptr;
  }
  while (arrived < phases) next_phase();
  return error;
}

// Worker threads that stay bound and keep their engines between measurements. A measurement
// is a "generation": every worker runs it through one shared barrier (1 + reps phases,
// run_worker_phases), so no worker waits forever for one that failed or stopped.
struct BenchPool::State {
  BenchOptions options;
  EngineSpec engine;
  std::string layout;
  Plan plan;
  int64_t max_batch = 0;
  double session_s = 0;
  ThreadGroup threads;
  std::unique_ptr<std::barrier<>> sync;
  std::mutex mutex;
  std::condition_variable wake;
  int ready = 0;            // workers whose engine build has ended (built or not)
  CaseError build_error;    // the first failed build
  uint64_t generation = 0;  // of the measurement asked for last
  bool stopping = false;
  Case job;  // the measurement asked for
  int warmup = 0;
  int done = 0;  // workers finished with the current generation
  std::atomic<bool> failed{false};
  CaseError first_error;
  std::vector<WorkerTimes> times;
  std::set<int64_t> warmed;  // batch sizes every engine has run

  void work(const WorkerPlan& worker) {
    std::unique_ptr<Engine> built;
    try {
      if (options.pin) bind_worker_thread(worker, plan.policy);
      double built_s = 0;
      built = build_worker_engine(options, engine, worker, max_batch, &built_s);
      std::lock_guard lock(mutex);
      session_s = std::max(session_s, built_s);
    } catch (const std::exception& e) {
      std::lock_guard lock(mutex);
      if (!build_error.failed())
        build_error = {e.what(), dynamic_cast<const OutOfMemoryError*>(&e) != nullptr};
    }
    {
      std::lock_guard lock(mutex);
      ++ready;
    }
    wake.notify_all();
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock lock(mutex);
        wake.wait(lock, [&] { return stopping || generation != seen; });
        if (stopping) return;
        seen = generation;
      }
      WorkerTimes mine;
      bool out_of_memory = false;
      const std::string error = run_worker_phases(
          1 + options.reps, *sync, failed,
          [&](const std::function<bool()>& next_phase) {
            time_worker(options, job, worker, *built, warmup, next_phase, mine);
          },
          &out_of_memory);
      {
        std::lock_guard lock(mutex);
        times[worker.index] = std::move(mine);
        if (!error.empty() && !first_error.failed()) first_error = {error, out_of_memory};
        ++done;
      }
      wake.notify_all();
    }
  }

  // Asks every worker to leave (each does once its engine build has ended).
  void ask_to_stop() {
    {
      std::lock_guard lock(mutex);
      stopping = true;
    }
    wake.notify_all();
  }

  void stop() {
    ask_to_stop();
    threads.join();
  }
};

BenchPool::BenchPool(const BenchOptions& options, const MachineInfo& machine,
                     const EngineSpec& engine, const std::string& layout, int64_t max_batch)
    : state_(std::make_unique<State>()) {
  validate(options);
  if (options.spawn != "thread") throw UsageError("a bench pool runs its workers as threads");
  State& s = *state_;
  s.options = options;
  s.engine = engine;
  s.layout = layout;
  s.max_batch = max_batch;
  s.plan = plan_layout(machine, layout, parse_memory_policy(options.membind));
  s.sync = std::make_unique<std::barrier<>>(static_cast<std::ptrdiff_t>(s.plan.workers.size()));
  for (const WorkerPlan& worker : s.plan.workers) {
    s.threads.start([&s, worker] { s.work(worker); }, [&s] { s.ask_to_stop(); });
  }
  std::unique_lock lock(s.mutex);
  s.wake.wait(lock, [&] { return s.ready == static_cast<int>(s.plan.workers.size()); });
  if (s.build_error.failed()) {
    const CaseError error = s.build_error;
    lock.unlock();
    s.stop();
    if (error.out_of_memory) throw OutOfMemoryError(error.message);
    throw Error(error.message);
  }
}

BenchPool::~BenchPool() {
  state_->stop();
}

const std::string& BenchPool::layout() const {
  return state_->layout;
}

int64_t BenchPool::max_batch() const {
  return state_->max_batch;
}

double BenchPool::session_s() const {
  return state_->session_s;
}

BenchRow BenchPool::measure(int64_t batch, int batches, int warmup) {
  State& s = *state_;
  if (batch < 1 || batch > s.max_batch) {
    throw UsageError(fmt::format("batch {} is outside this pool's 1..{}", batch, s.max_batch));
  }
  if (batches < 1) throw UsageError(fmt::format("--batches must be at least 1 (got {})", batches));
  BenchOptions options = s.options;
  options.batches = batches;
  {
    std::lock_guard lock(s.mutex);
    s.options.batches = batches;
    s.job = Case{s.engine, s.layout, batch};
    s.warmup = s.warmed.count(batch) ? 0 : warmup;
    s.done = 0;
    s.failed = false;
    s.first_error = {};
    s.times.assign(s.plan.workers.size(), WorkerTimes{});
    ++s.generation;
  }
  s.wake.notify_all();
  std::unique_lock lock(s.mutex);
  s.wake.wait(lock, [&] { return s.done == static_cast<int>(s.plan.workers.size()); });
  if (!s.first_error.failed()) s.warmed.insert(batch);
  return make_row(options, s.job, s.plan, s.first_error, s.times);
}

}  // namespace tessera
