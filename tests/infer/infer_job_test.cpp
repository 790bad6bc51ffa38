// run_infer_job in a job of one (no launcher): the tile list, the checks before any tile runs,
// the per-tile lines and the summary.

#include "tessera/infer/infer_job.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tessera/common/error.h"
#include "tessera/io/synth_tile.h"
#include "test_models.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

const std::string kDir = std::string(TESSERA_TEST_TMP) + "/infer_job";

const std::string& small_model() {
  static const std::string path =
      testing::write_test_model(kDir, "small.onnx", testing::tiny_model_config());
  return path;
}

std::string write_tile(const std::string& grid) {
  SynthOptions synth;
  synth.height = 6;
  synth.width = 5;
  synth.s2_steps = 12;
  synth.s1_asc_steps = 4;
  synth.s1_desc_steps = 4;
  synth.nodata = 0;  // every pixel valid
  const std::string dir = kDir + "/tiles/" + grid;
  write_synth_tile(dir, synth, true);
  return dir;
}

// A job on the small model with one CPU worker, writing into a fresh directory `name`.
InferJobOptions job_options(const std::string& name) {
  const std::string out = kDir + "/" + name;
  fs::remove_all(out);
  InferJobOptions options;
  options.infer.model_path = small_model();
  options.infer.out_dir = out;
  options.infer.batch = 8;
  options.layout = "single:1";
  return options;
}

int count_lines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

TEST(InferJob, TileListedTwiceRunsOnce) {
  const std::string tile = write_tile("grid_0.15_2.25");
  InferJobOptions options = job_options("twice");
  options.tiles = {tile, tile + "/", fs::path(tile).parent_path().string() + "/./grid_0.15_2.25"};
  std::ostringstream out, err;
  run_infer_job(options, out, err);
  EXPECT_EQ(count_lines(out.str()), 1) << out.str();
  EXPECT_EQ(out.str().rfind("grid_0.15_2.25: 30 of 30 pixels valid", 0), 0u) << out.str();
  EXPECT_EQ(err.str(), "tessera: warning: " + tile + "/ is listed again; it runs once\n" +
                           "tessera: warning: " + options.tiles[2] +
                           " is listed again; it runs once\n" +
                           "tessera: engine: ort fp32 (--engine)\n");
  EXPECT_TRUE(fs::exists(options.infer.out_dir + "/grid_0.15_2.25.npy"));
}

TEST(InferJob, SummaryNamesEnginesAndEveryTile) {
  InferJobOptions options = job_options("summary");
  options.tiles = {write_tile("grid_0.25_2.25"), write_tile("grid_0.35_2.25")};
  options.summary = options.infer.out_dir + "/run.json";  // inside the directory the run creates
  std::ostringstream out, err;
  run_infer_job(options, out, err);
  EXPECT_EQ(count_lines(out.str()), 2) << out.str();
  EXPECT_EQ(out.str().rfind("[1/2] grid_0.25_2.25: ", 0), 0u) << out.str();
  // From the second tile on, the line says when the job should end.
  const std::string second = out.str().substr(out.str().find('\n') + 1);
  EXPECT_EQ(second.rfind("[2/2, job ETA ", 0), 0u) << second;
  EXPECT_NE(second.find(" s] grid_0.35_2.25: "), std::string::npos) << second;
  std::ifstream file(options.summary);
  const nlohmann::json summary = nlohmann::json::parse(file);
  EXPECT_EQ(summary["tool"], "tessera infer");
  EXPECT_EQ(summary["engine"], "ort");
  EXPECT_EQ(summary["precision"], "fp32");
  EXPECT_TRUE(summary.contains("engines"));
  EXPECT_EQ(summary["layout"], "single:1");
  EXPECT_EQ(summary["tiles"].size(), 2u);
  EXPECT_EQ(summary["pixels_valid"], 60);
  EXPECT_FALSE(summary.contains("ranks"));  // a job of one
  // What made the outputs, and when.
  EXPECT_EQ(summary["weights"], "random (seed 42), for benchmarking");
  EXPECT_EQ(summary["model_sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(summary["tessera"], "0.1.0");
  EXPECT_EQ(summary["finished"].get<std::string>().size(), 20u);  // 2026-12-05T18:32:22Z
}

// An engine left unnamed ("") is the default for the model and devices (the native engine for a
// Tessera model on the CPU), chosen after fill_defaults, which may name one itself (a profile).
TEST(InferJob, AnUnnamedEngineIsTheDefaultUnlessFillDefaultsNamesOne) {
  InferJobOptions options = job_options("default_engine");
  options.tiles = {write_tile("grid_0.55_2.25")};
  options.infer.engine = "";
  options.summary = options.infer.out_dir + "/run.json";
  std::ostringstream out, err;
  run_infer_job(options, out, err);
  EXPECT_EQ(err.str(), "tessera: engine: native fp32 (default: fastest fp32 engine here)\n");
  nlohmann::json summary = nlohmann::json::parse(std::ifstream(options.summary));
  EXPECT_EQ(summary["engine"], "native");
  EXPECT_EQ(summary["engine_reason"], "default: fastest fp32 engine here");

  options.infer.force = true;
  options.fill_defaults = [](InferJobOptions& job) {
    job.infer.engine = kOrtBackend;
    job.engine_reason = "from profile p.json";
  };
  std::ostringstream out2, err2;
  run_infer_job(options, out2, err2);
  EXPECT_EQ(err2.str(), "tessera: engine: ort fp32 (from profile p.json)\n");
  summary = nlohmann::json::parse(std::ifstream(options.summary));
  EXPECT_EQ(summary["engine"], "ort");
  EXPECT_EQ(summary["tiles"][0]["engine"], "ort");
}

TEST(InferJob, FillDefaultsRunsBeforeThePlan) {
  InferJobOptions options = job_options("defaults");
  options.tiles = {write_tile("grid_0.45_2.25")};
  options.layout = "no-such-layout";
  options.fill_defaults = [](InferJobOptions& job) { job.layout = "single:1"; };
  int progress_calls = 0;
  options.progress = [&](const std::string& label, bool in_place) -> ProgressCallback {
    EXPECT_EQ(label, "grid_0.45_2.25");
    EXPECT_FALSE(in_place);
    return [&](int64_t, int64_t, double) { ++progress_calls; };
  };
  std::ostringstream out, err;
  run_infer_job(options, out, err);
  EXPECT_EQ(count_lines(out.str()), 1) << out.str();
  EXPECT_GT(progress_calls, 0);
}

TEST(InferJob, ChecksBeforeAnyTileRuns) {
  InferJobOptions options = job_options("collide");
  const std::string first = write_tile("grid_0.55_2.25");
  const std::string other_dir = kDir + "/elsewhere/grid_0.55_2.25";
  fs::create_directories(fs::path(other_dir).parent_path());
  fs::remove_all(other_dir);
  fs::copy(first, other_dir, fs::copy_options::recursive);
  options.tiles = {first, other_dir};
  std::ostringstream out, err;
  try {
    run_infer_job(options, out, err);
    FAIL() << "expected a UsageError";
  } catch (const UsageError& e) {
    EXPECT_EQ(std::string(e.what()), "tiles " + first + " and " + other_dir +
                                         " are both named grid_0.55_2.25: their outputs would "
                                         "collide");
  }
  EXPECT_EQ(out.str(), "");
  EXPECT_FALSE(fs::exists(options.infer.out_dir));

  options.tiles = {};
  EXPECT_THROW(run_infer_job(options, out, err), UsageError);
}

}  // namespace
}  // namespace tessera
