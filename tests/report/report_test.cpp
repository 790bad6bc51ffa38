// tessera report on the sample bench files in tests/report/data: tolerant reading (a PyTorch
// row with most keys missing), exact errors, which charts exist, and atomic writing.

#include "tessera/report/report.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "tessera/common/error.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

std::string data(const std::string& name) {
  return std::string(TESSERA_SOURCE_DIR) + "/tests/report/data/" + name;
}

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// A directory of this test process's own.
std::string testing_dir() {
  static const std::string dir = [] {
    const std::string d =
        std::string(TESSERA_TEST_TMP) + "/report_test_" + std::to_string(::getpid());
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

std::string error_of(const std::string& path) {
  try {
    load_bench_file(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::set<std::string> chart_names(const RenderedReport& r) {
  std::set<std::string> names;
  for (const auto& c : r.charts) names.insert(c.file_name);
  return names;
}

const ReportChart& chart(const RenderedReport& r, const std::string& name) {
  for (const auto& c : r.charts) {
    if (c.file_name == name) return c;
  }
  throw std::runtime_error("no chart " + name);
}

TEST(Report, ReadsRowsAndDerivesMissingKeys) {
  const ReportSource s = load_bench_file(data("layouts_torch.json"), 2);
  EXPECT_EQ(s.hostname, "epyc-9965");
  EXPECT_EQ(s.cores, 384);
  ASSERT_EQ(s.gpus, std::vector<std::string>{"NVIDIA L4"});
  ASSERT_EQ(s.rows.size(), 3u);
  EXPECT_EQ(s.rows[0].layout, "24x16");
  EXPECT_EQ(s.rows[0].workers, 24);
  EXPECT_DOUBLE_EQ(*s.rows[0].ms_per_pixel, 0.22);
  EXPECT_DOUBLE_EQ(*s.rows[0].ms_per_pixel_per_worker, 5.21);

  const ReportRow& torch = s.rows[2];  // engine, device, threads, batch, ms_per_batch, status only
  EXPECT_EQ(torch.source, 2u);
  EXPECT_EQ(torch.engine, "torch");
  EXPECT_EQ(torch.layout, "single");
  EXPECT_EQ(torch.precision, "fp32");
  EXPECT_EQ(torch.workers, 1);
  EXPECT_TRUE(torch.ok());
  EXPECT_DOUBLE_EQ(*torch.ms_per_pixel, 14016.0 / 2048.0);
  EXPECT_DOUBLE_EQ(*torch.ms_per_pixel_per_worker, 14016.0 / 2048.0);
  EXPECT_DOUBLE_EQ(*torch.pixels_per_s, 1000.0 / (14016.0 / 2048.0));
  EXPECT_FALSE(torch.speedup.has_value());
  EXPECT_EQ(row_label(torch), "torch/cpu/single/b2048");

  const ReportSource b = load_bench_file(data("sweep_batch.json"));
  ASSERT_EQ(b.rows.size(), 18u);
  EXPECT_EQ(b.rows.back().status, "oom");
  EXPECT_FALSE(b.rows.back().ok());
}

TEST(Report, ExactErrors) {
  const std::string missing = data("no_such_file.json");
  EXPECT_EQ(error_of(missing), missing + ": cannot read (No such file or directory)");
  const std::string bad = data("not_json.json");
  EXPECT_EQ(error_of(bad), bad + ": not valid JSON (parse error at byte 54)");
  const std::string type = data("bad_type.json");
  EXPECT_EQ(error_of(type), type + ": row 1: 'threads' must be an integer");
  const std::string dir = data("");
  EXPECT_EQ(error_of(dir), dir + ": cannot read (is a directory)");
  const std::string huge = testing_dir() + "/huge.json";
  std::ofstream(huge) << "{\"rows\": [1e999]}";
  EXPECT_EQ(error_of(huge).rfind(huge + ": not valid JSON ([json.exception.out_of_range.406]", 0),
            0u)
      << error_of(huge);
  EXPECT_THROW(load_bench_files({}), UsageError);
}

TEST(Report, ProjectionInputsAreUniqueOkRows) {
  const auto sources = load_bench_files({data("sweep_threads.json"), data("layouts_torch.json")});
  const auto inputs = projection_inputs(sources);
  ASSERT_EQ(inputs.size(), 9u + 3u);
  EXPECT_EQ(inputs[0].label, "ort/cpu/single:1/b2048@sweep_threads");
  EXPECT_DOUBLE_EQ(inputs[0].ms_per_pixel, 23.51953);  // as written, 5 decimals
  EXPECT_EQ(inputs[8].label, "ort/cuda:0/single/b2048@sweep_threads");
  EXPECT_EQ(inputs[9].label, "ort/cpu/24x16/b256@layouts_torch");
  std::set<std::string> labels;
  for (const auto& i : inputs) labels.insert(i.label);
  EXPECT_EQ(labels.size(), inputs.size());
}

TEST(Report, AllChartsFromTheThreeSampleRuns) {
  const auto sources = load_bench_files(
      {data("sweep_threads.json"), data("sweep_batch.json"), data("layouts_torch.json")});
  const RenderedReport r = render_report(sources, "charts");
  EXPECT_EQ(chart_names(r),
            (std::set<std::string>{"thread_scaling_ms_per_pixel.svg", "thread_scaling_speedup.svg",
                                   "batch_sweep.svg", "layouts.svg", "devices.svg",
                                   "projection_mgrs_tile.svg"}));
  for (const auto& c : r.charts) {
    EXPECT_NE(r.markdown.find("![" + c.title + "](<charts/" + c.file_name + ">)"),
              std::string::npos)
        << c.file_name;
    EXPECT_NE(c.svg.find("<title>" + c.title + "</title>"), std::string::npos) << c.file_name;
  }
  // One thread sweep (the GPU row has a single thread count); CPU and GPU batch sweeps.
  EXPECT_EQ(count(chart(r, "thread_scaling_speedup.svg").svg, "<polyline class=\"series\""), 1u);
  EXPECT_EQ(count(chart(r, "batch_sweep.svg").svg, "<polyline class=\"series\""), 2u);
  EXPECT_NE(chart(r, "batch_sweep.svg").svg.find("log scale"), std::string::npos);  // CPU vs GPU
  // Two layouts x (per-job, aggregate).
  EXPECT_EQ(count(chart(r, "layouts.svg").svg, "<rect class=\"bar\""), 4u);
  EXPECT_NE(r.markdown.find("## Thread scaling"), std::string::npos);
  EXPECT_NE(r.markdown.find("| oom "), std::string::npos);
  EXPECT_EQ(r.markdown.find("_No "), std::string::npos);
  // The study's 24-job layout: 0.22 ms/pixel -> 7.4 h per MGRS tile.
  EXPECT_NE(chart(r, "projection_mgrs_tile.svg").svg.find(">7.4 h</text>"), std::string::npos);
}

TEST(Report, SaysWhichChartsAreMissing) {
  const RenderedReport r = render_report({load_bench_file(data("layouts_torch.json"))}, ".");
  EXPECT_EQ(chart_names(r),
            (std::set<std::string>{"layouts.svg", "devices.svg", "projection_mgrs_tile.svg"}));
  EXPECT_NE(r.markdown.find("_No thread-scaling chart: the data needs one configuration at two or "
                            "more thread counts._"),
            std::string::npos);
  EXPECT_NE(r.markdown.find("_No batch-size chart: "), std::string::npos);
  EXPECT_NE(r.markdown.find("![Layouts: per-job vs aggregate ms per pixel](<./layouts.svg>)"),
            std::string::npos);
  // torch/cpu at 6.84 ms/pixel vs the fastest ort/cpu layout at 0.22 ms/pixel.
  EXPECT_NE(chart(r, "devices.svg").svg.find(">torch/cpu (single)</text>"), std::string::npos);
}

TEST(Report, WritesFilesAtomically) {
  const fs::path dir = fs::path(TESSERA_TEST_TMP) / "report_test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  ReportOptions options;
  options.inputs = {data("sweep_batch.json")};
  options.markdown_path = (dir / "run.md").string();
  const auto written = write_report(options);
  ASSERT_FALSE(written.empty());
  EXPECT_EQ(written.back(), (dir / "run.md").string());
  EXPECT_TRUE(fs::exists(dir / "run_charts" / "batch_sweep.svg"));
  std::ifstream md(dir / "run.md");
  const std::string text((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("](<run_charts/batch_sweep.svg>)"), std::string::npos);
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    EXPECT_EQ(entry.path().string().find(".partial"), std::string::npos) << entry.path();
  }

  // A bad input anywhere in the list: an error naming it, and nothing written.
  ReportOptions bad = options;
  bad.inputs = {data("sweep_batch.json"), data("not_json.json")};
  bad.markdown_path = (dir / "bad.md").string();
  bad.svg_dir = (dir / "elsewhere").string();
  try {
    write_report(bad);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              data("not_json.json") + ": not valid JSON (parse error at byte 54)");
  }
  EXPECT_FALSE(fs::exists(dir / "bad.md"));
  EXPECT_FALSE(fs::exists(dir / "elsewhere"));

  // The report cannot be renamed into place (a directory holds its name): the charts directory
  // this run made is removed again, with no temp file left.
  fs::create_directories(dir / "taken.md");
  ReportOptions blocked = options;
  blocked.markdown_path = (dir / "taken.md").string();
  EXPECT_THROW(write_report(blocked), Error);
  EXPECT_FALSE(fs::exists(dir / "taken_charts"));
  EXPECT_FALSE(fs::exists(dir / "taken.md.partial"));
}

}  // namespace
}  // namespace tessera
