// bench's outputs: the Markdown/CSV table, the JSON document, the footer, the lines for
// skipped engines and the one-line summary of failed cases.

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "tessera/bench/bench.h"
#include "tessera/common/error.h"
#include "tessera/common/version.h"

namespace tessera {

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
    model += fmt::format(" ({} parameters", result.model["parameters"].get<int64_t>());
    if (result.model.contains("s2_steps")) {
      model += fmt::format(", {} + {} steps", result.model["s2_steps"].get<int64_t>(),
                           result.model["s1_steps"].get<int64_t>());
    }
    model += ")";
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

std::string bench_stage_tables(const BenchResult& result, double peak_gops) {
  std::string out;
  for (size_t i = 0; i < result.rows.size(); ++i) {
    const BenchRow& r = result.rows[i];
    if (r.status != RowStatus::kOk) continue;
    out += fmt::format("\nStages of row {} ({} {} {} {} b={}, {} runs):\n", i + 1, r.device,
                       r.engine, r.precision, r.layout, r.batch, r.stages.runs);
    if (r.stages.runs == 0) {
      out += "this engine measures no stages (its time is the row's ms/batch)\n";
      continue;
    }
    out += stage_table(r.stages, peak_gops * r.threads).to_markdown();
  }
  return out;
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
    if (r.stages.runs > 0) rows.back()["stages"] = stage_json(r.stages);
  }
  nlohmann::json out = {{"tool", "tessera bench"}, {"skipped", result.skipped},
                        {"version", kVersion},     {"machine", result.machine},
                        {"model", result.model},   {"rows", rows}};
  if (result.gpu_baseline_ms_per_pixel > 0)
    out["gpu_baseline_ms_per_pixel"] = result.gpu_baseline_ms_per_pixel;
  return out;
}

}  // namespace tessera
