#pragma once
// `tessera report`: reads one or more `tessera bench --format json` files (or rows from a peer tool
// that writes the same schema with fewer keys) and writes a Markdown report with SVG charts:
// all rows, thread scaling, batch sweep, layouts, device/engine comparison and projections.
//
// Reading is tolerant: a missing key takes a default (documented on ReportRow) and ms/pixel is
// derived from whatever timing keys are present. A file that cannot be read, is not JSON, or
// holds a key of the wrong type is an Error naming the file, before anything is written.

#include <optional>
#include <string>
#include <vector>

#include "tessera/common/table.h"
#include "tessera/report/projection.h"

namespace tessera {

// One measured configuration as read back from a bench file.
struct ReportRow {
  size_t source = 0;               // index into the list of files read
  std::string engine = "unknown";  // "ort", "torch", ...
  std::string device = "cpu";      // "cpu", "cuda:0", ...
  std::string precision = "fp32";
  std::string layout = "single";  // placement layout, e.g. "single:16", "24x16", "numa"
  std::string status = "ok";      // "ok" | "oom" | "error" | ...
  int workers = 1;                // concurrent sessions (jobs)
  int threads = 0;                // threads per worker; 0 = not recorded
  long long batch = 0;            // 0 = not recorded
  std::optional<double> ms_per_batch;
  std::optional<double> ms_per_batch_sd;
  // Aggregate: wall time over the pixels of all workers. When the key is missing it is derived
  // from total_s and pixels, or from ms_per_batch / (batch x workers).
  std::optional<double> ms_per_pixel;
  // One job's view: its batch time over its batch. Defaults to ms_per_pixel x workers.
  std::optional<double> ms_per_pixel_per_worker;
  std::optional<double> pixels_per_s;
  std::optional<double> speedup;

  bool ok() const { return status == "ok" && ms_per_pixel.has_value(); }
};

// One bench file: where it came from, the machine it describes, and its rows.
struct ReportSource {
  std::string path;
  std::string hostname;
  std::string cpu_model;
  int cores = 0;
  int numa_nodes = 0;
  std::string ort_version;
  std::vector<std::string> gpus;
  std::string model_path;
  std::vector<ReportRow> rows;
};

// Reads one bench JSON file (rows get `source` = source_index). Throws Error:
//   "<path>: cannot read (<reason>)", "<path>: not valid JSON (parse error at byte N)",
//   "<path>: not a bench file (no \"rows\" array)", "<path>: row N: not an object",
//   "<path>: row N: '<key>' must be an integer" (or "a string", "a number").
ReportSource load_bench_file(const std::string& path, size_t source_index = 0);
std::vector<ReportSource> load_bench_files(const std::vector<std::string>& paths);

// engine/device[/precision unless fp32]/layout/b<batch>, e.g. "ort/cpu/single:16/b256".
std::string row_label(const ReportRow& row);

// A projection input for every ok row. Labels are made unique by appending "/t<threads>" and,
// when several files are read, "@<file stem>".
std::vector<ProjectionInput> projection_inputs(const std::vector<ReportSource>& sources);

// A rendered report, not yet on disk. Chart names are bare file names ("batch_sweep.svg").
struct ReportChart {
  std::string file_name;
  std::string title;
  std::string svg;
};
struct RenderedReport {
  std::string markdown;
  std::vector<ReportChart> charts;
};

// Builds the report. `chart_dir_link` is the relative link prefix from the Markdown file to the
// chart directory (e.g. "report_charts"); images are embedded as ![title](<prefix>/<file>).
RenderedReport render_report(const std::vector<ReportSource>& sources,
                             const std::string& chart_dir_link);

struct ReportOptions {
  std::vector<std::string> inputs;  // bench JSON files, at least one
  std::string markdown_path;        // e.g. "report.md"
  std::string svg_dir;              // empty: "<dir of markdown>/<stem>_charts"
};

// Reads every input, renders, then writes the charts and the Markdown so that each file
// appears whole or not at all (temp file + rename; nothing is written if any input is bad).
// Returns the paths written, Markdown last.
std::vector<std::string> write_report(const ReportOptions& options);

}  // namespace tessera
