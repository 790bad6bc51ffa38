#include "tessera/report/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <tuple>

#include "tessera/common/error.h"
#include "tessera/io/atomic_file.h"
#include "tessera/report/svg_chart.h"

namespace tessera {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// ---- reading ---------------------------------------------------------------------------

std::string read_text(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec))
    throw Error(fmt::format("{}: cannot read (is a directory)", path));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("{}: cannot read ({})", path, std::strerror(errno)));
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw Error(fmt::format("{}: cannot read ({})", path, std::strerror(errno)));
  return buffer.str();
}

// Typed access to one row's keys: absent or null keys keep the default, a wrong type throws.
class RowReader {
 public:
  RowReader(const json& row, const std::string& path, size_t index)
      : row_(row), path_(path), index_(index) {}

  void string(const char* key, std::string& out) const {
    const json* v = find(key);
    if (!v) return;
    if (!v->is_string()) fail(key, "a string");
    out = v->get<std::string>();
  }
  template <typename Int>
  void integer(const char* key, Int& out) const {
    const json* v = find(key);
    if (!v) return;
    if (!v->is_number() || std::floor(v->get<double>()) != v->get<double>())
      fail(key, "an integer");
    out = static_cast<Int>(v->get<double>());
  }
  void number(const char* key, std::optional<double>& out) const {
    const json* v = find(key);
    if (!v) return;
    if (!v->is_number()) fail(key, "a number");
    out = v->get<double>();
  }

 private:
  const json* find(const char* key) const {
    auto it = row_.find(key);
    if (it == row_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  [[noreturn]] void fail(const char* key, const char* type) const {
    throw Error(fmt::format("{}: row {}: '{}' must be {}", path_, index_ + 1, key, type));
  }
  const json& row_;
  const std::string& path_;
  size_t index_;
};

// Machine/model descriptions are informative only: wrong types are ignored, not fatal.
std::string loose_string(const json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}
int loose_int(const json& object, const char* key) {
  if (!object.is_object()) return 0;
  auto it = object.find(key);
  return it != object.end() && it->is_number() ? static_cast<int>(it->get<double>()) : 0;
}

ReportRow read_row(const json& row, const std::string& path, size_t index, size_t source) {
  if (!row.is_object()) throw Error(fmt::format("{}: row {}: not an object", path, index + 1));
  RowReader r(row, path, index);
  ReportRow out;
  out.source = source;
  r.string("engine", out.engine);
  r.string("device", out.device);
  r.string("precision", out.precision);
  r.string("layout", out.layout);
  r.string("status", out.status);
  r.integer("workers", out.workers);
  r.integer("threads", out.threads);
  r.integer("batch", out.batch);
  std::optional<double> total_s, pixels;
  r.number("total_s", total_s);
  r.number("pixels", pixels);
  r.number("ms_per_batch", out.ms_per_batch);
  r.number("ms_per_batch_sd", out.ms_per_batch_sd);
  r.number("ms_per_pixel", out.ms_per_pixel);
  r.number("ms_per_pixel_per_worker", out.ms_per_pixel_per_worker);
  r.number("pixels_per_s", out.pixels_per_s);
  r.number("speedup", out.speedup);
  if (out.workers < 1) out.workers = 1;

  // Derive what a peer tool left out, from the keys it did write.
  if (!out.ms_per_pixel && total_s && pixels && *pixels > 0) {
    out.ms_per_pixel = *total_s * 1000.0 / *pixels;
  }
  if (!out.ms_per_pixel && out.ms_per_batch && out.batch > 0) {
    out.ms_per_pixel = *out.ms_per_batch / static_cast<double>(out.batch * out.workers);
  }
  if (!out.ms_per_pixel_per_worker && out.ms_per_batch && out.batch > 0) {
    out.ms_per_pixel_per_worker = *out.ms_per_batch / static_cast<double>(out.batch);
  }
  if (!out.ms_per_pixel_per_worker && out.ms_per_pixel) {
    out.ms_per_pixel_per_worker = *out.ms_per_pixel * out.workers;
  }
  if (!out.pixels_per_s && out.ms_per_pixel && *out.ms_per_pixel > 0) {
    out.pixels_per_s = 1000.0 / *out.ms_per_pixel;
  }
  if (out.ms_per_pixel && !(*out.ms_per_pixel > 0)) out.ms_per_pixel.reset();
  return out;
}

// ---- grouping --------------------------------------------------------------------------

std::string stem_of(const std::string& path) {
  return fs::path(path).stem().string();
}

// "@<stem>" when several files are read, so series from different runs stay apart.
std::string source_tag(const std::vector<ReportSource>& sources, size_t index) {
  return sources.size() > 1 ? "@" + stem_of(sources[index].path) : "";
}

std::string precision_part(const ReportRow& row) {
  return row.precision == "fp32" ? "" : "/" + row.precision;
}

std::string engine_device(const ReportRow& row) {
  return row.engine + "/" + row.device + precision_part(row);
}

json opt(const std::optional<double>& v) {
  return v ? json(*v) : json(nullptr);
}

double ms(const ReportRow& row) {
  return *row.ms_per_pixel;
}

// Rows grouped by a key, groups in order of first appearance (deterministic output).
template <typename Key>
struct Groups {
  std::vector<Key> order;
  std::map<Key, std::vector<const ReportRow*>> rows;
  void add(const Key& key, const ReportRow* row) {
    auto [it, inserted] = rows.try_emplace(key);
    if (inserted) order.push_back(key);
    it->second.push_back(row);
  }
};

// Distinct values of `field` among a group's ok rows.
template <typename F>
size_t distinct_ok(const std::vector<const ReportRow*>& rows, F field) {
  std::set<decltype(field(*rows.front()))> seen;
  for (const ReportRow* r : rows) {
    if (r->ok()) seen.insert(field(*r));
  }
  return seen.size();
}

double ratio_log_hint(const std::vector<double>& values) {
  double lo = 0, hi = 0;
  for (double v : values) {
    if (!(v > 0)) continue;
    lo = lo == 0 ? v : std::min(lo, v);
    hi = std::max(hi, v);
  }
  return lo > 0 ? hi / lo : 1.0;
}

// A log y axis when the values span more than a factor of 10, said in the axis label.
void use_log_scale_if_wide(LineChart& chart, const std::vector<double>& values) {
  chart.log10_y = ratio_log_hint(values) > 10;
  if (chart.log10_y) chart.y_label += ", log scale";
}

std::string no_chart(const std::string& what, const std::string& need) {
  return fmt::format("_No {} chart: the data needs {}._\n\n", what, need);
}

// ---- report sections -------------------------------------------------------------------

struct Builder {
  const std::vector<ReportSource>& sources;
  std::string link;
  std::vector<const ReportRow*> all;
  std::string md;
  std::vector<ReportChart> charts;

  void chart(const std::string& file, const std::string& title, std::string svg) {
    charts.push_back({file, title, std::move(svg)});
    // <...> keeps a link with spaces or parentheses one link (CommonMark).
    md += fmt::format("![{}](<{}/{}>)\n\n", title, link, file);
  }
  std::string tag(const ReportRow& r) const { return source_tag(sources, r.source); }

  void header() {
    md += "# Tessera benchmark report\n\n";
    Table t({{"file", "File", -1, false},
             {"host", "Host", -1, false},
             {"cpu", "CPU", -1, false},
             {"cores", "Cores", 0},
             {"numa_nodes", "NUMA nodes", 0},
             {"ort", "ONNX Runtime", -1, false},
             {"gpus", "GPUs", -1, false},
             {"model", "Model", -1, false},
             {"rows", "Rows", 0}});
    for (const auto& s : sources) {
      std::string gpus;
      for (const auto& g : s.gpus) gpus += (gpus.empty() ? "" : ", ") + g;
      t.add_row({fs::path(s.path).filename().string(), s.hostname, s.cpu_model,
                 s.cores ? json(s.cores) : json(nullptr),
                 s.numa_nodes ? json(s.numa_nodes) : json(nullptr), s.ort_version,
                 gpus.empty() ? "none" : gpus, fs::path(s.model_path).filename().string(),
                 static_cast<long long>(s.rows.size())});
    }
    md += "## Sources\n\n" + t.to_markdown() + "\n";
    md +=
        "ms/pixel is aggregate throughput (wall time over the pixels of all jobs); per-job "
        "ms/pixel is one job's batch time over its batch.\n\n";
  }

  void all_rows() {
    const bool many = sources.size() > 1;
    std::vector<Column> cols = {{"n", "#", 0}};
    if (many) cols.push_back({"file", "File", -1, false});
    for (Column c : std::vector<Column>{{"engine", "Engine", -1, false},
                                        {"device", "Device", -1, false},
                                        {"precision", "Precision", -1, false},
                                        {"layout", "Layout", -1, false},
                                        {"workers", "Jobs", 0},
                                        {"threads", "Threads/job", 0},
                                        {"batch", "Batch", 0},
                                        {"ms_per_batch", "ms/batch", 1},
                                        {"ms_per_batch_sd", "± sd", 1},
                                        {"ms_per_pixel", "ms/pixel", 4},
                                        {"ms_per_pixel_per_worker", "per-job ms/pixel", 4},
                                        {"pixels_per_s", "pixels/s", 0},
                                        {"speedup", "Speedup", 2},
                                        {"status", "Status", -1, false}}) {
      cols.push_back(c);
    }
    Table t(std::move(cols));
    long long n = 0;
    for (const ReportRow* r : all) {
      std::vector<json> cells = {++n};
      if (many) cells.push_back(stem_of(sources[r->source].path));
      for (json c : {json(r->engine), json(r->device), json(r->precision), json(r->layout),
                     json(r->workers), r->threads ? json(r->threads) : json(nullptr),
                     r->batch ? json(r->batch) : json(nullptr), opt(r->ms_per_batch),
                     opt(r->ms_per_batch_sd), opt(r->ms_per_pixel), opt(r->ms_per_pixel_per_worker),
                     opt(r->pixels_per_s), opt(r->speedup), json(r->status)}) {
        cells.push_back(std::move(c));
      }
      t.add_row(std::move(cells));
    }
    md += "## All rows\n\n" + t.to_markdown() + "\n";
  }

  void thread_scaling() {
    md += "## Thread scaling\n\n";
    using Key = std::tuple<size_t, std::string, std::string, std::string, int, long long>;
    Groups<Key> groups;
    for (const ReportRow* r : all) {
      if (r->threads > 0) {
        groups.add({r->source, r->engine, r->device, r->precision, r->workers, r->batch}, r);
      }
    }
    Table t({{"configuration", "Configuration", -1, false},
             {"threads", "Threads/job", 0},
             {"ms_per_batch", "ms/batch", 1},
             {"ms_per_pixel", "ms/pixel", 4},
             {"speedup", "Speedup vs fewest threads", 2}});
    LineChart by_ms{"Thread scaling: ms per pixel",
                    "threads per job (log2 scale)",
                    "ms per pixel (aggregate)",
                    true,
                    false,
                    true,
                    {}};
    LineChart by_speedup{"Thread scaling: speedup",
                         "threads per job (log2 scale)",
                         "speedup vs fewest threads (x)",
                         true,
                         false,
                         true,
                         {}};
    std::vector<double> all_ms;
    for (const Key& key : groups.order) {
      auto rows = groups.rows[key];
      if (distinct_ok(rows, [](const ReportRow& r) { return r.threads; }) < 2) continue;
      std::stable_sort(rows.begin(), rows.end(), [](const ReportRow* a, const ReportRow* b) {
        return a->threads < b->threads;
      });
      const ReportRow& first = *rows.front();
      std::string name =
          engine_device(first) + (first.batch ? fmt::format("/b{}", first.batch) : "");
      if (first.workers > 1) name += fmt::format("/{} jobs", first.workers);
      name += tag(first);
      LineSeries s_ms{name, {}, {}}, s_up{name, {}, {}};
      double base = 0;
      for (const ReportRow* r : rows) {
        if (!r->ok()) continue;
        if (base == 0) base = ms(*r);
        t.add_row({name, r->threads, opt(r->ms_per_batch), ms(*r), base / ms(*r)});
        s_ms.x.push_back(r->threads);
        s_ms.y.push_back(ms(*r));
        s_up.x.push_back(r->threads);
        s_up.y.push_back(base / ms(*r));
        all_ms.push_back(ms(*r));
      }
      by_ms.series.push_back(std::move(s_ms));
      by_speedup.series.push_back(std::move(s_up));
    }
    if (by_ms.series.empty()) {
      md += no_chart("thread-scaling", "one configuration at two or more thread counts");
      return;
    }
    md += t.to_markdown() + "\n";
    use_log_scale_if_wide(by_ms, all_ms);
    chart("thread_scaling_ms_per_pixel.svg", by_ms.title, render_line_chart(by_ms));
    chart("thread_scaling_speedup.svg", by_speedup.title, render_line_chart(by_speedup));
  }

  void batch_sweep() {
    md += "## Batch size\n\n";
    using Key = std::tuple<size_t, std::string, std::string, std::string, std::string, int, int>;
    Groups<Key> groups;
    for (const ReportRow* r : all) {
      if (r->batch > 0) {
        groups.add(
            {r->source, r->engine, r->device, r->precision, r->layout, r->workers, r->threads}, r);
      }
    }
    Table t({{"configuration", "Configuration", -1, false},
             {"batch", "Batch", 0},
             {"ms_per_batch", "ms/batch", 1},
             {"ms_per_pixel", "ms/pixel", 4},
             {"status", "Status", -1, false}});
    LineChart c{"ms per pixel by batch size",
                "batch size (pixels, log2 scale)",
                "ms per pixel (aggregate)",
                true,
                false,
                true,
                {}};
    std::vector<double> all_ms;
    for (const Key& key : groups.order) {
      auto rows = groups.rows[key];
      if (distinct_ok(rows, [](const ReportRow& r) { return r.batch; }) < 2) continue;
      std::stable_sort(rows.begin(), rows.end(),
                       [](const ReportRow* a, const ReportRow* b) { return a->batch < b->batch; });
      const ReportRow& first = *rows.front();
      std::string name = engine_device(first) + "/" + first.layout;
      if (first.device == "cpu" && first.threads > 0 &&
          first.layout.find(std::to_string(first.threads)) == std::string::npos) {
        name += fmt::format("/t{}", first.threads);
      }
      name += tag(first);
      LineSeries s{name, {}, {}};
      for (const ReportRow* r : rows) {
        t.add_row({name, r->batch, opt(r->ms_per_batch),
                   opt(r->ok() ? r->ms_per_pixel : std::nullopt), r->status});
        if (!r->ok()) continue;
        s.x.push_back(static_cast<double>(r->batch));
        s.y.push_back(ms(*r));
        all_ms.push_back(ms(*r));
      }
      c.series.push_back(std::move(s));
    }
    if (c.series.empty()) {
      md += no_chart("batch-size", "one configuration at two or more batch sizes");
      return;
    }
    md += t.to_markdown() + "\n";
    use_log_scale_if_wide(c, all_ms);
    chart("batch_sweep.svg", c.title, render_line_chart(c));
  }

  void layouts() {
    md += "## Layouts (same cores, different arrangement)\n\n";
    using Key = std::tuple<size_t, std::string, std::string, std::string, long long, long long>;
    Groups<Key> groups;
    for (const ReportRow* r : all) {
      if (r->ok()) {
        groups.add({r->source, r->engine, r->device, r->precision, r->batch,
                    static_cast<long long>(r->workers) * r->threads},
                   r);
      }
    }
    Table t({{"configuration", "Configuration", -1, false},
             {"layout", "Layout", -1, false},
             {"workers", "Jobs", 0},
             {"threads", "Threads/job", 0},
             {"per_job_ms_per_pixel", "Per-job ms/pixel", 4},
             {"ms_per_pixel", "Aggregate ms/pixel", 4},
             {"speedup", "Aggregate speedup vs first", 2}});
    BarChart c{"Layouts: per-job vs aggregate ms per pixel",
               "layout (jobs x threads per job)",
               "ms per pixel",
               {},
               {{"per-job ms/pixel", {}}, {"aggregate ms/pixel", {}}}};
    std::vector<Key> shown;
    for (const Key& key : groups.order) {
      if (distinct_ok(groups.rows[key], [](const ReportRow& r) { return r.layout; }) >= 2) {
        shown.push_back(key);
      }
    }
    for (const Key& key : shown) {
      const auto& rows = groups.rows[key];
      const ReportRow& first = *rows.front();
      std::string name =
          engine_device(first) + (first.batch ? fmt::format("/b{}", first.batch) : "");
      if (std::get<5>(key) > 0) name += fmt::format("/{} cores", std::get<5>(key));
      name += tag(first);
      std::set<std::string> seen;
      for (const ReportRow* r : rows) {
        if (!seen.insert(r->layout).second) continue;
        t.add_row({name, r->layout, r->workers, r->threads ? json(r->threads) : json(nullptr),
                   opt(r->ms_per_pixel_per_worker), ms(*r), ms(first) / ms(*r)});
        c.categories.push_back(shown.size() > 1 ? r->layout + " · " + name : r->layout);
        c.series[0].values.push_back(r->ms_per_pixel_per_worker.value_or(NAN));
        c.series[1].values.push_back(ms(*r));
      }
    }
    if (shown.empty()) {
      md += no_chart("layout", "two or more layouts of the same engine, device, batch and cores");
      return;
    }
    md += t.to_markdown() + "\n";
    chart("layouts.svg", c.title, render_bar_chart(c));
  }

  // The fastest ok row of each engine/device/precision (per file).
  std::vector<const ReportRow*> best_per(bool with_layout) const {
    using Key = std::tuple<size_t, std::string, std::string, std::string, std::string>;
    std::map<Key, const ReportRow*> best;
    std::vector<Key> order;
    for (const ReportRow* r : all) {
      if (!r->ok()) continue;
      Key key{r->source, r->engine, r->device, r->precision, with_layout ? r->layout : ""};
      auto [it, inserted] = best.try_emplace(key, r);
      if (inserted) order.push_back(key);
      if (ms(*r) < ms(*it->second)) it->second = r;
    }
    std::vector<const ReportRow*> out;
    for (const Key& k : order) out.push_back(best[k]);
    return out;
  }

  void devices() {
    md += "## Devices and engines (fastest configuration of each)\n\n";
    auto best = best_per(false);
    if (best.size() < 2) {
      md += no_chart("device/engine", "two or more engine/device/precision combinations");
      return;
    }
    double fastest = ms(*best.front());
    for (const ReportRow* r : best) fastest = std::min(fastest, ms(*r));
    Table t({{"configuration", "Engine/device", -1, false},
             {"layout", "Layout", -1, false},
             {"threads", "Threads/job", 0},
             {"batch", "Batch", 0},
             {"ms_per_pixel", "ms/pixel", 4},
             {"vs_fastest", "× fastest", 2}});
    HBarChart c{"Fastest ms per pixel by engine and device",
                "ms per pixel (aggregate, lower is better)",
                {},
                {},
                {}};
    for (const ReportRow* r : best) {
      const std::string name = engine_device(*r) + tag(*r);
      t.add_row({name, r->layout, r->threads ? json(r->threads) : json(nullptr),
                 r->batch ? json(r->batch) : json(nullptr), ms(*r), ms(*r) / fastest});
      c.labels.push_back(name + " (" + r->layout + ")");
      c.values.push_back(ms(*r));
      c.value_texts.push_back(fmt::format("{:.4g} ms", ms(*r)));
    }
    md += t.to_markdown() + "\n";
    chart("devices.svg", c.title, render_hbar_chart(c));
  }

  void projections() {
    md += "## Projections\n\n";
    auto best = best_per(true);
    std::stable_sort(best.begin(), best.end(),
                     [](const ReportRow* a, const ReportRow* b) { return ms(*a) < ms(*b); });
    if (best.empty()) {
      md += "_No ok rows to project._\n\n";
      return;
    }
    std::vector<Projection> ps;
    for (const ReportRow* r : best) {
      ps.push_back(project({row_label(*r) + tag(*r), ms(*r)}, ProjectionOptions{}));
    }
    md +=
        "Fastest row of each engine/device/layout at its aggregate ms/pixel: one MGRS tile "
        "(10,980 × 10,980 px), one 0.1° tile (1,000 × 1,000 px) and the land surface "
        "(1,593,480 such tiles) on one machine. `tessera project` adds costs and machine "
        "counts.\n\n";
    md += projection_table(ps, false).to_markdown() + "\n";
    if (ps.size() < 2) {
      md += no_chart("projection", "two or more configurations");
      return;
    }
    constexpr size_t kMaxBars = 20;
    HBarChart c{"Hours per MGRS tile (120.6 Mpx, one machine)", "hours per MGRS tile", {}, {}, {}};
    for (size_t i = 0; i < std::min(ps.size(), kMaxBars); ++i) {
      c.labels.push_back(ps[i].label);
      c.values.push_back(ps[i].mgrs_tile_s / 3600.0);
      c.value_texts.push_back(human_duration(ps[i].mgrs_tile_s));
    }
    if (ps.size() > kMaxBars) {
      md += fmt::format("The chart shows the {} fastest of {} configurations.\n\n", kMaxBars,
                        ps.size());
    }
    chart("projection_mgrs_tile.svg", c.title, render_hbar_chart(c));
  }
};

}  // namespace

ReportSource load_bench_file(const std::string& path, size_t source_index) {
  const std::string text = read_text(path);
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(fmt::format("{}: not valid JSON (parse error at byte {})", path, e.byte));
  } catch (const json::exception& e) {  // e.g. a number too large for a double
    throw Error(fmt::format("{}: not valid JSON ({})", path, e.what()));
  }
  if (!doc.is_object() || !doc.contains("rows") || !doc["rows"].is_array()) {
    throw Error(fmt::format("{}: not a bench file (no \"rows\" array)", path));
  }
  ReportSource source;
  source.path = path;
  const json machine = doc.value("machine", json::object());
  source.hostname = loose_string(machine, "hostname");
  source.cpu_model = loose_string(machine, "cpu_model");
  source.cores = loose_int(machine, "cores");
  source.numa_nodes = loose_int(machine, "numa_nodes");
  source.ort_version = loose_string(machine, "ort_version");
  if (machine.is_object() && machine.contains("gpus") && machine["gpus"].is_array()) {
    for (const auto& g : machine["gpus"]) {
      if (g.is_string()) source.gpus.push_back(g.get<std::string>());
    }
  }
  source.model_path = loose_string(doc.value("model", json::object()), "path");
  const json& rows = doc["rows"];
  for (size_t i = 0; i < rows.size(); ++i) {
    source.rows.push_back(read_row(rows[i], path, i, source_index));
  }
  return source;
}

std::vector<ReportSource> load_bench_files(const std::vector<std::string>& paths) {
  if (paths.empty()) throw UsageError("no bench files given (--from FILE.json ...)");
  std::vector<ReportSource> sources;
  for (size_t i = 0; i < paths.size(); ++i) sources.push_back(load_bench_file(paths[i], i));
  return sources;
}

std::string row_label(const ReportRow& row) {
  std::string label = engine_device(row) + "/" + row.layout;
  if (row.batch > 0) label += fmt::format("/b{}", row.batch);
  return label;
}

std::vector<ProjectionInput> projection_inputs(const std::vector<ReportSource>& sources) {
  std::vector<ProjectionInput> inputs;
  std::map<std::string, int> uses;
  for (const auto& s : sources) {
    for (const auto& r : s.rows) {
      if (r.ok()) ++uses[row_label(r)];
    }
  }
  std::set<std::string> taken;
  for (const auto& s : sources) {
    for (const auto& r : s.rows) {
      if (!r.ok()) continue;
      std::string label = row_label(r);
      if (uses[label] > 1 && r.threads > 0) label += fmt::format("/t{}", r.threads);
      if (sources.size() > 1) label += source_tag(sources, r.source);
      const std::string base = label;
      for (int k = 2; !taken.insert(label).second; ++k) label = fmt::format("{}#{}", base, k);
      inputs.push_back({label, *r.ms_per_pixel});
    }
  }
  return inputs;
}

RenderedReport render_report(const std::vector<ReportSource>& sources,
                             const std::string& chart_dir_link) {
  Builder b{sources, chart_dir_link, {}, {}, {}};
  for (const auto& s : sources) {
    for (const auto& r : s.rows) b.all.push_back(&r);
  }
  b.header();
  b.all_rows();
  b.thread_scaling();
  b.batch_sweep();
  b.layouts();
  b.devices();
  b.projections();
  return {std::move(b.md), std::move(b.charts)};
}

std::vector<std::string> write_report(const ReportOptions& options) {
  if (options.markdown_path.empty()) throw UsageError("-o REPORT.md is required");
  const auto sources = load_bench_files(options.inputs);

  const fs::path md_path = fs::absolute(options.markdown_path).lexically_normal();
  const fs::path md_dir = md_path.parent_path();
  const fs::path svg_dir = options.svg_dir.empty()
                               ? md_dir / (md_path.stem().string() + "_charts")
                               : fs::absolute(options.svg_dir).lexically_normal();
  std::string link = svg_dir.lexically_relative(md_dir).generic_string();
  if (link.empty()) link = ".";
  const RenderedReport report = render_report(sources, link);

  std::error_code ec;
  if (!fs::is_directory(md_dir, ec)) {
    throw Error(fmt::format("{}: directory does not exist", md_dir.string()));
  }
  const bool new_svg_dir = !report.charts.empty() && !fs::exists(svg_dir, ec);
  if (!report.charts.empty()) {
    fs::create_directories(svg_dir, ec);
    if (ec)
      throw Error(fmt::format("{}: cannot create directory ({})", svg_dir.string(), ec.message()));
  }
  // Every file is written under a temp name first; only when all are written are they renamed
  // into place, the Markdown last so it never links to a chart that is not there. A failure
  // removes the chart directory again if this run created it.
  std::vector<std::unique_ptr<AtomicFile>> files;
  auto stage = [&](const fs::path& path, const std::string& content) {
    files.push_back(std::make_unique<AtomicFile>(path.string()));
    files.back()->write(content.data(), content.size());
  };
  std::vector<std::string> written;
  try {
    for (const auto& c : report.charts) stage(svg_dir / c.file_name, c.svg);
    stage(md_path, report.markdown);
    for (auto& f : files) {
      f->commit();
      written.push_back(f->final_path());
    }
  } catch (...) {
    files.clear();  // removes the temp files not yet renamed
    if (new_svg_dir) fs::remove_all(svg_dir, ec);
    throw;
  }
  return written;
}

}  // namespace tessera
