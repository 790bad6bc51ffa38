// bench --spawn process: the parent side (measure_in_processes: one `tessera bench-worker`
// child per worker, driven phase by phase over its stdin/stdout) and the child side
// (run_bench_worker). The protocol: the child prints "phase" and waits for "go" (or "stop") at
// every phase, then prints "result {json}" or "error <message>" ("oom <message>" when memory
// ran out). Timestamps cross as steady-clock nanoseconds, comparable between processes.

#include <fmt/format.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "tessera/bench/bench_case.h"
#include "tessera/common/error.h"
#include "tessera/runtime/child_process.h"
#include "tessera/topology/binding.h"

namespace tessera {
namespace {

int64_t to_ns(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
Clock::time_point from_ns(int64_t ns) {
  return Clock::time_point(std::chrono::nanoseconds(ns));
}

}  // namespace

// All workers of a plan as child processes (`tessera bench-worker`), each binding itself, as
// the study did with numactl. The children report "phase" and wait for "go" (or "stop") at
// every phase; the steady clock is system-wide, so their timestamps compare directly.
CaseError measure_in_processes(const BenchOptions& options, const Case& c, const Plan& plan,
                               std::vector<WorkerTimes>& times) {
  const std::string exe = self_executable();
  std::vector<std::unique_ptr<ChildProcess>> children;
  for (const WorkerPlan& worker : plan.workers) {
    std::vector<std::string> argv = {
        exe,           "bench-worker",
        "--model",     options.model_path,
        "--device",    c.engine.device.name(),
        "--engine",    c.engine.backend,
        "--precision", precision_name(c.engine.precision),
        "--batch",     std::to_string(c.batch),
        "--batches",   std::to_string(options.batches),
        "--reps",      std::to_string(options.reps),
        "--warmup",    std::to_string(options.warmup),
        "--seed",      std::to_string(options.seed),
        "--steps",     fmt::format("{}/{}", options.s2_steps, options.s1_steps),
        "--membind",   memory_policy_name(plan.policy),
        "--index",     std::to_string(worker.index),
        "--cpus",      cpu_list_string(worker.cpus),
        "--nodes",     cpu_list_string(worker.memory_nodes)};
    for (const auto& [key, value] : options.backend_options) {
      argv.push_back(backend_option(key).flag);
      argv.push_back(value);
    }
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

}  // namespace tessera
