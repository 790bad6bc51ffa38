// `tessera infer` as a user runs it: skip / force, and bad input that must leave no output.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "run_cli.h"
#include "tessera/model/model_family.h"
#include "test_models.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using tessera::testing::run_cli;
using tessera::testing::slurp;

// ctest runs each case as its own process, in parallel: a directory per process.
const tessera::testing::ProcessTestDir kTestDir("infer_cli");
const std::string& kDir = kTestDir.path();

const std::string& small_model() {
  static const std::string path = tessera::testing::make_small_model(kDir);
  return path;
}

// A fresh synthetic tile at kDir/<name>.
std::string make_tile(const std::string& name) {
  return tessera::testing::make_small_tile(kDir, name);
}

// The first line of a run with the default engine on this machine (the native engine runs the
// small model).
const std::string kEngineLine =
    "tessera: engine: native fp32 (default: fastest fp32 engine here)\n";

int count_lines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

TEST(InferCli, OldOutSpellingStillWorksWithOneLine) {
  const std::string tile = make_tile("grid_1.05_2.15");
  const std::string out = kDir + "/out_old_spelling";
  fs::remove_all(out);
  auto r = run_cli("infer " + tile + " --out " + out + " -m " + small_model() + " --layout 1x1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "tessera infer: '--out' is deprecated, use '--output'\n" + kEngineLine);
  EXPECT_TRUE(fs::exists(out + "/grid_1.05_2.15.npy"));
  r = run_cli("infer " + tile + " --out " + out + " --output " + out);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: infer: give the output directory once, with -o/--output\n");
}

TEST(InferCli, WritesBothOutputsThenSkipsThemUnlessForced) {
  const std::string tile = make_tile("grid_1.05_2.05");
  const std::string out = kDir + "/out_skip";
  fs::remove_all(out);
  auto r = run_cli("infer " + tile + " -o " + out + " -m " + small_model() + " --layout 1x1 -b 8");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("grid_1.05_2.05: "), std::string::npos) << r.out;
  EXPECT_EQ(fs::file_size(out + "/grid_1.05_2.05_scales.npy"), 128u + 6 * 5 * 4);
  EXPECT_EQ(fs::file_size(out + "/grid_1.05_2.05.npy"), 128u + 6 * 5 * 128);

  // A journal left by a run stopped between committing the outputs and removing the journal
  // is stale: skipping the tile removes it and keeps the outputs.
  std::ofstream(out + "/grid_1.05_2.05.journal") << "tessera-journal v1 stale\n";
  r = run_cli("infer " + tile + " -o " + out + " -m " + small_model() + " --layout 1x1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "grid_1.05_2.05: skipped, outputs exist in " + out + " (--force recomputes)\n");
  EXPECT_FALSE(fs::exists(out + "/grid_1.05_2.05.journal"));
  EXPECT_EQ(fs::file_size(out + "/grid_1.05_2.05.npy"), 128u + 6 * 5 * 128);

  r = run_cli("infer " + tile + " -o " + out + " -m " + small_model() + " --layout 1x1 --force");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find("skipped"), std::string::npos) << r.out;
}

// Outputs record what made them (<grid>.tessera.json); a run with another model, engine or
// precision refuses the tile instead of skipping it, and so does one finding outputs that record
// nothing. The same run skips it; --force recomputes it. Outputs that ONNX Runtime made (the
// default engine of earlier releases) are refused by a run with the default engine, with the
// flag that keeps them.
TEST(InferCli, OutputsOfAnotherModelOrEngineAreRefusedNotSkipped) {
  const std::string tile = make_tile("grid_1.25_2.05");
  const std::string out = kDir + "/out_record";
  fs::remove_all(out);
  const std::string infer = "infer " + tile + " -o " + out + " --layout 1x1 -m ";
  const std::string ort = " --engine ort";
  ASSERT_EQ(run_cli(infer + small_model() + ort).exit_code, 0);
  const nlohmann::json record = nlohmann::json::parse(slurp(out + "/grid_1.25_2.05.tessera.json"));
  EXPECT_EQ(record["weights"], "random (seed 42), for benchmarking");
  EXPECT_EQ(record["engine"], "ort");
  EXPECT_EQ(record["precision"], "fp32");
  const std::string sha = record["model_sha256"];
  ASSERT_EQ(sha.size(), 64u);

  const std::string other = kDir + "/seed43.onnx";
  ASSERT_EQ(run_cli("make-model --force -o " + other +
                    " --d-model 32 --layers 1 --heads 2 --ffn 64 --seed 43")
                .exit_code,
            0);
  const std::string engine_line = "tessera: engine: ort fp32 (--engine)\n";
  auto r = run_cli(infer + other + ort);
  EXPECT_EQ(r.exit_code, 1);
  const std::string npy = out + "/grid_1.25_2.05.npy";
  EXPECT_EQ(r.err.substr(0, r.err.find(" (this run")),
            engine_line + "tessera: " + npy + ": made with model sha256 " + sha.substr(0, 12));
  EXPECT_NE(r.err.find("): --force recomputes the tile, or write to another directory\n"),
            std::string::npos)
      << r.err;

  r = run_cli(infer + small_model());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "tessera: engine: native fp32 (default: fastest fp32 engine here)\n"
            "tessera: " +
                npy +
                ": made with engine ort (this run: native): --force recomputes the tile, "
                "--engine ort keeps it, or write to another directory\n");
  r = run_cli(infer + small_model() + ort);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "grid_1.25_2.05: skipped, outputs exist in " + out + " (--force recomputes)\n");

  fs::remove(out + "/grid_1.25_2.05.tessera.json");
  r = run_cli(infer + small_model() + ort);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, engine_line + "tessera: " + npy + ": exists, but " + out +
                       "/grid_1.25_2.05.tessera.json (what made it) does not: --force recomputes "
                       "the tile\n");
  r = run_cli(infer + other + ort + " --force");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(slurp(out + "/grid_1.25_2.05.tessera.json").find("seed 43"), std::string::npos);
}

// A run killed between its outputs' renames and its record leaves both outputs (perhaps the
// embeddings new and the scales old), no record, and the tile's journal. The rerun computes the
// tile again without --force and ends byte-identical to a clean run; the same outputs without a
// tessera journal beside them are still refused.
TEST(InferCli, ARunStoppedBetweenItsOutputsAndItsRecordIsComputedAgain) {
  const std::string tile = make_tile("grid_1.65_2.05");
  const std::string out = kDir + "/out_stopped_commit";
  fs::remove_all(out);
  const std::string infer = "infer " + tile + " -o " + out + " --layout 1x1 -m " + small_model();
  ASSERT_EQ(run_cli(infer).exit_code, 0);
  const std::string npy = out + "/grid_1.65_2.05.npy", scales = out + "/grid_1.65_2.05_scales.npy";
  const std::string record = out + "/grid_1.65_2.05.tessera.json";
  const std::string journal = out + "/grid_1.65_2.05.journal";
  const std::string clean_npy = slurp(npy), clean_scales = slurp(scales);

  fs::remove(record);
  std::string old_scales = clean_scales;
  std::fill(old_scales.begin() + 128, old_scales.end(), '\0');  // the scales of an earlier run
  std::ofstream(scales, std::ios::binary | std::ios::trunc) << old_scales;
  std::ofstream(journal) << "tessera-journal v5 grid=grid_1.65_2.05\n";
  auto r = run_cli(infer);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err,
            "tessera: engine: native fp32 (default: fastest fp32 engine here)\ntessera: " + tile +
                ": a run stopped while replacing its outputs (its journal is left, its "
                "record " +
                record + " is not there): computing the tile again\n");
  EXPECT_EQ(slurp(npy), clean_npy);
  EXPECT_EQ(slurp(scales), clean_scales);
  EXPECT_TRUE(fs::exists(record));
  EXPECT_FALSE(fs::exists(journal));

  fs::remove(record);
  std::ofstream(journal) << "not a journal of tessera's\n";
  r = run_cli(infer);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: engine: native fp32 (default: fastest fp32 engine here)\ntessera: " +
                       npy + ": exists, but " + record +
                       " (what made it) does not: --force recomputes the tile\n");
  EXPECT_EQ(slurp(scales), clean_scales);
}

// Without --engine, infer runs the fastest fp32 engine that runs the model here (the native
// engine on this CPU) and says so in its first line and in the summary; --engine ort runs ONNX
// Runtime and says it was asked for.
TEST(InferCli, TheDefaultEngineIsTheNativeOneOnACpuAndTheRunSaysWhy) {
  const std::string tile = make_tile("grid_1.35_2.05");
  const std::string summary = kDir + "/default_engine.json";
  const std::string infer = "infer " + tile + " -m " + small_model() + " --layout 1x1 --summary " +
                            summary + " --force -o " + kDir + "/out_default_";
  auto r = run_cli(infer + "native");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "tessera: engine: native fp32 (default: fastest fp32 engine here)\n");
  auto doc = nlohmann::json::parse(slurp(summary));
  EXPECT_EQ(doc["engine"], "native");
  EXPECT_EQ(doc["precision"], "fp32");
  EXPECT_EQ(doc["engine_reason"], "default: fastest fp32 engine here");
  EXPECT_EQ(doc["tiles"][0]["engines"], "cpu native fp32");

  r = run_cli(infer + "ort --engine ort");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "tessera: engine: ort fp32 (--engine)\n");
  doc = nlohmann::json::parse(slurp(summary));
  EXPECT_EQ(doc["engine"], "ort");
  EXPECT_EQ(doc["engine_reason"], "--engine");
  EXPECT_EQ(doc["tiles"][0]["engines"], "cpu ort fp32");
}

// A model the native engine cannot read (a graph with the Tessera inputs and output but none of
// its weights) runs on ONNX Runtime by default, and the first line gives the native engine's
// reason.
TEST(InferCli, AModelTheNativeEngineRefusesRunsOnOrtByDefaultWithTheReason) {
  const std::string tile = make_tile("grid_1.45_2.05");
  const std::string model = tessera::testing::write_batch_multiple_model(kDir, "plain.onnx", 1);
  const std::string summary = kDir + "/refused.json";
  const auto r = run_cli("infer " + tile + " -m " + model + " --layout 1x1 -o " + kDir +
                         "/out_refused --force --summary " + summary);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string reason =
      "native cannot run " + model +
      ": initializer 's2.embed.0.bias' is missing (not a Tessera v1.0 model?)";
  EXPECT_EQ(r.err, "tessera: engine: ort fp32 (" + reason + ")\n");
  const auto doc = nlohmann::json::parse(slurp(summary));
  EXPECT_EQ(doc["engine"], "ort");
  EXPECT_EQ(doc["engine_reason"], reason);
}

TEST(InferCli, ADirectoryOfTilesGivenAsATileSaysToUseTiles) {
  const std::string tiles = kDir + "/a_directory_of_tiles";
  fs::remove_all(tiles);
  tessera::testing::make_small_tile(tiles, "grid_1.35_2.05");  // tiles/tiles/grid_1.35_2.05
  const std::string dir = tiles + "/tiles";
  const auto r = run_cli("infer " + dir + " -o " + kDir + "/out_dir_of_tiles -m " + small_model());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: " + dir + ": is a directory of tiles, not a tile (grid_1.35_2.05 is " +
                       "one): give it with --tiles " + dir + "\n");
  EXPECT_FALSE(fs::exists(kDir + "/out_dir_of_tiles"));
  const auto listed =
      run_cli("infer --tiles " + dir + " -o " + kDir + "/out_dir_of_tiles -m " + small_model());
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
}

TEST(InferCli, MissingTileDirectory) {
  const std::string out = kDir + "/out_missing";
  fs::remove_all(out);
  const auto r = run_cli("infer " + kDir + "/no_such_tile -o " + out + " -m " + small_model());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(kDir + "/no_such_tile"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
}

TEST(InferCli, MalformedBandsFileNamesTheFileAndWritesNothing) {
  const std::string tile = make_tile("grid_3.00_4.00");
  std::ofstream(tile + "/s2/bands.npy", std::ios::trunc) << "not a numpy file";
  const std::string out = kDir + "/out_malformed";
  fs::remove_all(out);
  const auto r = run_cli("infer " + tile + " -o " + out + " -m " + small_model());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            kEngineLine + "tessera: " + tile + "/s2/bands.npy: not a .npy file (bad magic)\n");
  EXPECT_FALSE(fs::exists(out));
}

TEST(InferCli, ExistingOutputsSurviveAFailedForcedRun) {
  const std::string tile = make_tile("grid_5.00_6.00");
  const std::string out = kDir + "/out_survive";
  fs::remove_all(out);
  ASSERT_EQ(
      run_cli("infer " + tile + " -o " + out + " -m " + small_model() + " --layout 1x1").exit_code,
      0);
  const auto before = fs::file_size(out + "/grid_5.00_6.00.npy");
  std::ofstream(kDir + "/broken.onnx") << "garbage";
  const auto r = run_cli("infer " + tile + " -o " + out + " -m " + kDir + "/broken.onnx --force");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(fs::file_size(out + "/grid_5.00_6.00.npy"), before);
  std::vector<std::string> left;
  for (const auto& entry : fs::directory_iterator(out))
    left.push_back(entry.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left,
            (std::vector<std::string>{"grid_5.00_6.00.lock", "grid_5.00_6.00.npy",
                                      "grid_5.00_6.00.tessera.json", "grid_5.00_6.00_scales.npy"}));
}

TEST(InferCli, NoTiles) {
  const auto r = run_cli("infer -o " + kDir + "/out_none -m " + small_model());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: infer needs at least one tile directory (or --tiles FILE)\n");
}

TEST(InferCli, BatchOutOfRange) {
  const std::string tile = make_tile("grid_7.00_8.00");
  auto r = run_cli("infer " + tile + " -o " + kDir + "/out_zero -m " + small_model() + " -b 0");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, kEngineLine + "tessera: batch size must be at least 1 (got 0)\n");
  r = run_cli("infer " + tile + " -o " + kDir + "/out_zero -m " + small_model() +
              " -b 99999999999");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, kEngineLine + "tessera: batch size must be at most 4194304 (got 99999999999)\n");
  EXPECT_FALSE(fs::exists(kDir + "/out_zero"));
}

TEST(InferCli, UnwritableOutputDirectory) {
  // A path under a regular file cannot be created, whoever runs the test (root included).
  const std::string tile = make_tile("grid_9.00_9.00");
  const std::string out = kDir + "/a_file/out";
  std::ofstream(kDir + "/a_file") << "x";
  const auto r = run_cli("infer " + tile + " -o " + out + " -m " + small_model());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind(kEngineLine + "tessera: " + out + ": cannot create output directory: ", 0),
            0u)
      << r.err;
}

TEST(InferCli, TilesAndTheSummaryAreCheckedBeforeTheFirstTileRuns) {
  const std::string tile = make_tile("grid_7.00_8.00");
  const std::string out = kDir + "/out_prechecks";
  const std::string run = "infer -m " + small_model() + " --layout 1x1 -o " + out + " ";
  fs::remove_all(out);
  // A missing second tile: the first is not computed.
  auto r = run_cli(run + tile + " " + kDir + "/typo_dir");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + kDir + "/typo_dir: not a directory\n");
  EXPECT_FALSE(fs::exists(out));
  // Two tiles of one name would write the same outputs.
  const std::string other = kDir + "/elsewhere/grid_7.00_8.00";
  fs::create_directories(other);
  r = run_cli(run + tile + " " + other);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: tiles " + tile + " and " + other +
                       " are both named grid_7.00_8.00: their outputs would collide\n");
  EXPECT_FALSE(fs::exists(out));
  // A summary that cannot be written.
  r = run_cli(run + tile + " --summary " + kDir + "/no_such_dir/s.json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + kDir + "/no_such_dir/s.json: directory " + kDir +
                       "/no_such_dir does not exist\n");
  EXPECT_FALSE(fs::exists(out));
  // ...but one inside the output directory, which the run creates, can.
  r = run_cli(run + tile + " --summary " + out + "/summary.json");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::ifstream summary_file(out + "/summary.json");
  const auto summary = nlohmann::json::parse(summary_file)["tiles"][0];
  EXPECT_GT(summary["scan_seconds"].get<double>(), 0.0);
  EXPECT_LT(summary["scan_seconds"].get<double>(), summary["seconds"].get<double>());
  // A summary named without a directory, beside a new output directory.
  const std::string here = kDir + "/bare";
  fs::create_directories(here);
  r = run_cli("infer " + tile + " -o new_out -m " + small_model() + " --summary s.json", here);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(here + "/s.json"));
  // One tile listed again under other spellings runs once.
  fs::remove_all(out);
  r = run_cli(run + tile + " " + tile + "/ " + kDir + "/tiles/./grid_7.00_8.00");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "tessera: warning: " + tile + "/ is listed again; it runs once\n" +
                       "tessera: warning: " + kDir +
                       "/tiles/./grid_7.00_8.00 is listed again; it runs once\n" + kEngineLine);
  EXPECT_EQ(count_lines(r.out), 1) << r.out;
}

TEST(InferCli, AnOutputNeverReplacesTheTilesOwnInput) {
  // A flat tile named "masks" written into itself: its output masks.npy is its input.
  const std::string tile = kDir + "/flat/masks";
  fs::remove_all(tile);
  ASSERT_EQ(run_cli("synth -o " + tile + " --size 4x4 --s2-steps 12 --s1-steps 4/4 --layout flat")
                .exit_code,
            0);
  const auto before = fs::file_size(tile + "/masks.npy");
  const auto r =
      run_cli("infer " + tile + " -o " + tile + " -m " + small_model() + " --layout 1x1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + tile + ": the output " + tile +
                       "/masks.npy would replace this tile's input file\n");
  EXPECT_EQ(fs::file_size(tile + "/masks.npy"), before);
}

}  // namespace

namespace {

std::string slurp_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Length-bucketed models on a streaming worker (a CPU engine behind the GPU workers' path: chunks
// of consecutive batches, run in segments of one shape), alone and beside CPU workers, agree with
// the CPU workers: every int8 value within one step, scales within 1e-5 relative. (Not bytes: a
// chunk runs up to 40 pixels at once, a CPU worker 8, and ONNX Runtime's rounding can depend on
// the run's size: about one scale in a thousand differs in its last bit.) A segment fed the wrong
// rows or steps would miss by far more.
TEST(InferCli, BucketedBatchesOnAStreamingWorkerMatchTheCpuWorkers) {
  const std::string tile = kDir + "/grid_3.05_4.15";
  ASSERT_EQ(
      run_cli("synth --force -o " + tile + " --size 40x24 --observations varied --s2-steps 90")
          .exit_code,
      0);
  for (const std::string arch : {"v1.1 --stats mpc --d-model 16", "v2 --latent 4"}) {
    const std::string model = kDir + "/bucketed.onnx";
    ASSERT_EQ(
        run_cli("make-model --force -o " + model + " --layers 1 --heads 2 --ffn 16 --arch " + arch)
            .exit_code,
        0);
    const std::string infer = "infer " + tile + " -m " + model + " -b 8 --gpu-batch 40 --force -o ";
    auto r = run_cli(infer + kDir + "/cpu --device cpu --layout 2x1");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (const std::string device : {"cpu+stream", "cpu,cpu+stream"}) {
      r = run_cli(infer + kDir + "/stream --layout 1x1 --device " + device);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      r = run_cli("compare " + kDir + "/cpu " + kDir +
                  "/stream --require within1=100,scale-rel=1e-5");
      EXPECT_EQ(r.exit_code, 0) << arch << " on " << device << ":\n" << r.out << r.err;
    }
  }
}

// A v1.1 or v2 file whose steps were fixed (run-model's copies) cannot take length buckets: one
// line before any tile, nothing written.
TEST(InferCli, ABucketedModelWithFixedStepsIsOneError) {
  fs::create_directories(kDir);
  const std::string model = kDir + "/v2.onnx", fixed = kDir + "/v2_fixed.onnx";
  ASSERT_EQ(
      run_cli("make-model --force --arch v2 --latent 4 --layers 1 --heads 2 --ffn 16 -o " + model)
          .exit_code,
      0);
  tessera::write_with_fixed_steps(model, 40, 40, fixed);
  const std::string out = kDir + "/out_fixed";
  fs::remove_all(out);
  const auto r = run_cli("infer " + make_tile("grid_5.05_6.15") + " -m " + fixed + " -o " + out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            kEngineLine + "tessera: " + fixed +
                ": a v2 model needs symbolic step axes (length buckets of 1 to 256 steps), "
                "this file takes exactly 40 + 40 steps (a fixed-step copy from run-model?)\n");
  EXPECT_FALSE(fs::exists(out + "/grid_5.05_6.15.npy"));
}

}  // namespace

// --summary never replaces an input (a tile's file, the model, the tile list, a profile) or
// another file of the run, not even with --force, and an existing file only with --force. Every
// refusal comes before the first tile runs, and leaves the file as it was.
TEST(InferCli, TheSummaryNeverReplacesAnInputOrAnOutputAndAFileOnlyWithForce) {
  const std::string tile = make_tile("grid_9.00_9.00");
  const std::string out = kDir + "/out_summary";
  fs::remove_all(out);
  const std::string list = kDir + "/summary_tiles.txt";
  std::ofstream(list) << tile << "\n";
  const std::string profile = kDir + "/summary_profile.json";
  std::ofstream(profile) << "{}";
  const std::string run = "infer -m " + small_model() + " --layout 1x1 -o " + out + " ";
  const auto refused = [&](const std::string& args, const std::string& file,
                           const std::string& message) {
    const std::string before = slurp_file(file);
    const auto r = run_cli(run + args);
    EXPECT_EQ(r.exit_code, 1) << args;
    EXPECT_EQ(r.err, "tessera: " + message + "\n") << args;
    EXPECT_EQ(slurp_file(file), before) << args;
    EXPECT_FALSE(fs::exists(out + "/grid_9.00_9.00.npy")) << args;
  };
  const std::string input = ": is also an input of this command";
  for (const std::string& file : {tile + "/s2/doys.npy", small_model()}) {
    refused(tile + " --force --summary " + file, file, file + input);
  }
  refused("--tiles " + list + " --force --summary " + list, list, list + input);
  refused(tile + " --profile " + profile + " --force --summary " + profile, profile,
          profile + input);
  // The run's own outputs, there or still to come.
  for (const char* name : {"grid_9.00_9.00.npy", "grid_9.00_9.00_scales.npy",
                           "grid_9.00_9.00.journal", "grid_9.00_9.00.lock"}) {
    const auto r = run_cli(run + tile + " --force --summary " + out + "/" + std::string(name));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(r.err, "tessera: " + out + "/" + std::string(name) +
                         ": is also an output of this run (" + out + "/" + name + ")\n");
    EXPECT_FALSE(fs::exists(out + "/grid_9.00_9.00.npy"));
  }
  // An existing file: only with --force.
  const std::string summary = kDir + "/existing_summary.json";
  std::ofstream(summary) << "mine";
  refused(tile + " --summary " + summary, summary,
          summary + ": already exists (use --force to overwrite)");
  const auto r = run_cli(run + tile + " --force --summary " + summary);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(slurp_file(summary))["tool"], "tessera infer");
}

// A tile whose lock another process holds is skipped with one line and left untouched; the other
// tiles run; the job exits 1 at the end, saying how many tiles it skipped.
TEST(InferCli, ATileLockedByAnotherRunIsSkippedAndTheRunFailsAtTheEnd) {
  const std::string a = make_tile("grid_3.00_3.00");
  const std::string b = make_tile("grid_4.00_4.00");
  const std::string out = kDir + "/out_locked";
  fs::remove_all(out);
  fs::create_directories(out);
  const std::string lock = out + "/grid_3.00_3.00.lock";
  // Held here as another tessera run would hold it (an open file description of its own).
  const int fd = ::open(lock.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  const std::string summary = kDir + "/locked_summary.json";
  fs::remove(summary);
  auto r = run_cli("infer " + a + " " + b + " -m " + small_model() + " --layout 1x1 -o " + out +
                   " --summary " + summary);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out.substr(0, r.out.find('\n') + 1),
            "[1/2] grid_3.00_3.00: skipped, another tessera run is writing it (lock " + lock +
                " held)\n");
  EXPECT_EQ(
      r.err,
      kEngineLine +
          "tessera: 1 of 2 tiles skipped: another tessera run is writing them (run again once "
          "it has finished)\n");
  EXPECT_FALSE(fs::exists(out + "/grid_3.00_3.00.npy"));
  EXPECT_FALSE(fs::exists(out + "/grid_3.00_3.00.npy.partial"));
  EXPECT_TRUE(fs::exists(out + "/grid_4.00_4.00.npy"));
  const auto tiles = nlohmann::json::parse(std::ifstream(summary))["tiles"];
  EXPECT_EQ(tiles[0]["status"], "locked");
  EXPECT_EQ(tiles[1]["status"], "done");
  // Once released, the same command computes the tile (the other is skipped as done).
  ::close(fd);
  fs::remove(summary);
  r = run_cli("infer " + a + " " + b + " -m " + small_model() + " --layout 1x1 -o " + out);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out + "/grid_3.00_3.00.npy"));
}
