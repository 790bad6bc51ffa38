// `tessera tune` as a user runs it: a ranking and a profile that `bench --profile` follows,
// the warning for a profile of another model, and one-line errors for bad profiles and flags.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "run_cli.h"
#include "test_support.h"

namespace {

using tessera::testing::run_cli;

// ctest runs each case as its own process, in parallel: a directory per process.
const tessera::testing::ProcessTestDir kTestDir("tune_cli");
const std::string& kDir = kTestDir.path();

std::string make_model(const std::string& name, int d_model) {
  std::filesystem::create_directories(kDir);
  const std::string p = kDir + "/" + name;
  const auto r = run_cli("make-model --force -o " + p + " --d-model " + std::to_string(d_model) +
                         " --layers 1 --heads 2 --ffn 64 --s2-steps 8 --s1-steps 6");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return p;
}

const std::string& small_model() {
  static const std::string path = make_model("small.onnx", 32);
  return path;
}

// One tune run shared by the tests below: two batch sizes, short rounds.
const std::string& tuned_profile() {
  static const std::string path = [] {
    const std::string p = kDir + "/p.json";
    const auto r =
        run_cli("tune -m " + small_model() + " --budget 20 -b 8,32 --start-pixels 32 -q -o " + p);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("| rank | layout"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("| winner"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("\nbest: "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("profile: " + p), std::string::npos) << r.out;
    EXPECT_EQ(r.err, "");  // -q: no progress
    return p;
  }();
  return path;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// What infer --profile adds to its line when the profile's best two were within noise.
const std::string kNoiseNote = "; its best two candidates were within noise (either would do)";

// The per-repetition ranges of a profile's best two candidates meet (its ranking is noise).
bool best_two_overlap(const nlohmann::json& ranking) {
  if (ranking.size() < 2 || !ranking[1]["min_ms_per_pixel"].is_number()) return false;
  return std::max(ranking[0]["min_ms_per_pixel"].get<double>(),
                  ranking[1]["min_ms_per_pixel"].get<double>()) <=
         std::min(ranking[0]["max_ms_per_pixel"].get<double>(),
                  ranking[1]["max_ms_per_pixel"].get<double>());
}

TEST(TuneCli, OldSpellingsOfOutputAndBatchAreDeprecatedButStillWork) {
  const std::string p = kDir + "/old_spellings.json";
  auto r =
      run_cli("tune -m " + small_model() +
              " --budget 10 --layouts single:1 --batch-list 8 --start-pixels 16 -q --out " + p);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err,
            "tessera tune: '--out' is deprecated, use '--output'\n"
            "tessera tune: '--batch-list' is deprecated, use '--batch'\n");
  EXPECT_EQ(read_json(p)["plan"]["batch"], 8);
  // -o was always a path in tune: a format name is a file name here, not a deprecation.
  r = run_cli("tune -m " + small_model() + " --budget 10 --layouts single:1 -b 8 -q -o json", kDir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(read_json(kDir + "/json")["plan"]["batch"], 8);
  r = run_cli("tune -m " + small_model() + " -b 8 --batch-list 16");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: tune: give the batch sizes once, with -b/--batch\n");
  r = run_cli("tune -m " + small_model() + " -o a.json --out b.json");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: tune: give the profile's path once, with -o/--output\n");
}

TEST(TuneCli, WritesAProfileThatBenchFollows) {
  const auto profile = read_json(tuned_profile());
  EXPECT_EQ(profile["tool"], "tessera tune");
  EXPECT_EQ(profile["device"], "cpu");
  EXPECT_EQ(profile["model"]["path"], small_model());
  EXPECT_EQ(profile["model"]["bytes"].get<int64_t>(),
            static_cast<int64_t>(std::filesystem::file_size(small_model())));
  EXPECT_EQ(profile["model"]["hash"].get<std::string>().rfind("fnv1a64:", 0), 0u);
  // The engine's library: ONNX Runtime's version for an ort profile, oneDNN's for a native one.
  const std::string engine_version = profile["machine"]["engine_version"];
  EXPECT_EQ(engine_version.rfind(profile["engine"] == "native" ? "oneDNN " : "1.", 0), 0u)
      << engine_version;
  const auto& plan = profile["plan"];
  const int64_t batch = plan["batch"];
  EXPECT_TRUE(batch == 8 || batch == 32) << plan;
  EXPECT_EQ(plan["membind"], "local");
  // Every distinct layout x 2 batches is ranked, the winner first.
  ASSERT_GE(profile["ranking"].size(), 2u);
  EXPECT_EQ(profile["ranking"][0]["outcome"], "winner");
  EXPECT_EQ(profile["ranking"][0]["layout"], plan["layout"]);
  EXPECT_EQ(profile["ranking"].size() % 2, 0u);

  const auto r = run_cli("bench -m " + small_model() + " --profile " + tuned_profile() +
                         " --batches 1 -r 1 -q --format json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const auto doc = nlohmann::json::parse(r.out);
  ASSERT_EQ(doc["rows"].size(), 1u);
  EXPECT_EQ(doc["rows"][0]["layout"], plan["layout"]);
  EXPECT_EQ(doc["rows"][0]["batch"], plan["batch"]);
  EXPECT_EQ(doc["rows"][0]["workers"], plan["workers"]);

  // A flag the user gives wins over the profile.
  const auto given = run_cli("bench -m " + small_model() + " --profile " + tuned_profile() +
                             " -b 4 --batches 1 -r 1 --format json");
  ASSERT_EQ(given.exit_code, 0) << given.err;
  EXPECT_EQ(nlohmann::json::parse(given.out)["rows"][0]["batch"], 4);
}

TEST(TuneCli, AProfileOfAnotherModelWarnsAndIsNotUsed) {
  const std::string other = make_model("other.onnx", 16);
  const auto profile = read_json(tuned_profile());
  const auto r = run_cli("bench -m " + other + " --profile " + tuned_profile() +
                         " -t 1 --batches 1 -r 1 --format json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string expected_prefix =
      "tessera: warning: " + tuned_profile() + ": tuned for another model (" + small_model() +
      ", " + profile["model"]["hash"].get<std::string>() + "; this one: " + other + ", fnv1a64:";
  EXPECT_EQ(r.err.rfind(expected_prefix, 0), 0u) << r.err;
  EXPECT_NE(r.err.find("); not using it\n"), std::string::npos) << r.err;
  const auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["rows"][0]["layout"], "single:1");  // bench's own defaults
  EXPECT_EQ(doc["rows"][0]["batch"], 256);
}

TEST(TuneCli, BadProfileAndFlags) {
  const std::string bad = kDir + "/bad.json";
  std::filesystem::create_directories(kDir);
  std::ofstream(bad) << "[1, 2";
  auto r = run_cli("bench -m " + small_model() + " --profile " + bad + " --batches 1 -r 1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + bad + ": invalid JSON at byte 6\n");

  r = run_cli("bench -m " + small_model() + " --profile " + kDir + "/none.json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + kDir + "/none.json: no such file\n");

  r = run_cli("tune -m " + small_model() + " --budget soon");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: --budget soon: expected seconds, e.g. 120, 120s, 2m or 1h\n");

  r = run_cli("tune -m " + small_model() + " --layouts 9x9 -b 8");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("9x9"), std::string::npos) << r.err;

  r = run_cli("tune -m " + kDir + "/missing.onnx");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tessera: " + kDir + "/missing.onnx: cannot read the model\n");
}

TEST(TuneCli, InferFollowsAMatchingProfileOnly) {
  std::filesystem::create_directories(kDir);
  const std::string model = kDir + "/infer.onnx";
  auto r =
      run_cli("make-model --force -o " + model + " --d-model 32 --layers 1 --heads 2 --ffn 64");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string profile = kDir + "/infer_profile.json";
  r = run_cli("tune -m " + model + " --budget 20 -b 8,16 --start-pixels 16 -o " + profile);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto plan = read_json(profile)["plan"];
  const std::string tile = kDir + "/tiles/t1";
  std::filesystem::remove_all(tile);
  r = run_cli("synth -o " + tile + " --size 6x5 --s2-steps 12 --s1-steps 4/4 --seed 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;

  const std::string out = kDir + "/infer_out", summary = kDir + "/summary.json";
  std::filesystem::remove_all(out);
  r = run_cli("infer " + tile + " -o " + out + " -m " + model + " --profile " + profile +
              " --summary " + summary);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const bool noise = best_two_overlap(read_json(profile)["ranking"]);
  // The profile's engine wins over the default one (native on this CPU), and the run says so.
  EXPECT_EQ(r.err, "tessera: profile " + profile + ": engine ort, precision fp32, layout " +
                       plan["layout"].get<std::string>() + ", membind local, batch " +
                       plan["batch"].dump() + (noise ? kNoiseNote : "") + "\n" +
                       "tessera: engine: ort fp32 (from profile " + profile + ")\n");
  auto doc = read_json(summary);
  EXPECT_EQ(doc["engine"], "ort");
  EXPECT_EQ(doc["engine_reason"], "from profile " + profile);
  EXPECT_EQ(doc["layout"], plan["layout"]);
  EXPECT_EQ(doc["batch"], plan["batch"]);
  EXPECT_EQ(doc["profile"]["path"], profile);
  EXPECT_EQ(doc["profile"]["applied"], true);
  EXPECT_EQ(doc["profile"]["taken"]["layout"], plan["layout"]);
  EXPECT_EQ(doc["profile"]["within_noise"], noise);

  // The profile of another model: one warning, and infer's own defaults (core, 256).
  r = run_cli("infer " + tile + " -o " + out + " --force -m " + small_model() + " --profile " +
              profile + " --summary " + summary);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.rfind("tessera: warning: " + profile + ": tuned for another model (", 0), 0u)
      << r.err;
  EXPECT_NE(r.err.find("\ntessera: engine: native fp32 (default: fastest fp32 engine here)\n"),
            std::string::npos)
      << r.err;
  doc = read_json(summary);
  EXPECT_EQ(doc["engine"], "native");
  EXPECT_EQ(doc["layout"], "core");
  EXPECT_EQ(doc["batch"], 256);
  EXPECT_EQ(doc["profile"]["applied"], false);
}

// infer --profile says what it took (flags given win) in one stderr line and in the summary,
// and whether the profile's best two candidates were within noise: a profile edited by hand to
// give its best two overlapping spreads, then spreads apart.
TEST(TuneCli, InferSaysWhatItTookFromAProfileAndWhenItsRankingWasNoise) {
  nlohmann::json profile = read_json(tuned_profile());
  const auto spread = [](double min, double max) {
    return nlohmann::json{{"min_ms_per_pixel", min}, {"max_ms_per_pixel", max}};
  };
  const std::string tile = kDir + "/tiles/noise";
  std::filesystem::remove_all(tile);
  ASSERT_EQ(
      run_cli("synth -o " + tile + " --size 6x5 --s2-steps 12 --s1-steps 4/4 --seed 2").exit_code,
      0);
  const std::string edited = kDir + "/noise_profile.json", summary = kDir + "/noise.json";
  const std::string taken = "tessera: profile " + edited + ": engine ort, precision fp32, layout " +
                            profile["plan"]["layout"].get<std::string>() + ", membind local";
  for (const bool overlap : {true, false}) {
    profile["ranking"] = {spread(7.45, 9.0), overlap ? spread(8.5, 29.07) : spread(9.5, 29.07)};
    std::ofstream(edited) << profile.dump(2);
    const auto r = run_cli("infer " + tile + " -o " + kDir + "/noise_out --force -m " +
                           small_model() + " --profile " + edited + " -b 4 --summary " + summary);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.err, taken + (overlap ? kNoiseNote : "") + "\n" +
                         "tessera: engine: ort fp32 (from profile " + edited + ")\n");
    const auto doc = read_json(summary);
    EXPECT_EQ(doc["batch"], 4);  // given: not taken
    EXPECT_EQ(doc["profile"]["taken"], (nlohmann::json{{"engine", "ort"},
                                                       {"precision", "fp32"},
                                                       {"layout", profile["plan"]["layout"]},
                                                       {"membind", "local"}}));
    EXPECT_EQ(doc["profile"]["within_noise"], overlap);
  }
}

// --budget bounds the whole run's wall clock, round 1 and engine builds included: 12
// candidates whose round 1 alone would take far longer are cut short, and the summary names
// the ones not measured. A bound, not a speed test: only the upper end is checked.
TEST(TuneCli, TheBudgetBoundsTheWallClockAndNamesWhatWasNotMeasured) {
  const std::string model = make_model("budget.onnx", 64);
  const auto start = std::chrono::steady_clock::now();
  const auto r = run_cli("tune -m " + model +
                         " --budget 6 --layouts single:1,single:2 -b 64,128,256,512,1024,2048 "
                         "--start-pixels 12000 -q");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LT(seconds, 10.0) << r.out;
  EXPECT_NE(r.out.find("\nbudget: round 1 cut short; "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" candidates not measured: ort fp32 single:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| not measured (budget) |"), std::string::npos) << r.out;
}

// Piped, progress is one timestamped line per finished measurement and round on stderr; stdout
// holds the table alone. -q silences stderr.
TEST(TuneCli, ProgressGoesToStderrAndTheTableAloneToStdout) {
  const std::string args = "tune -m " + small_model() +
                           " --budget 20 --layouts single:1 -b 8,16 --start-pixels 16 "
                           "--format csv";
  auto r = run_cli(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // 2 candidates: round 1 (2 measurements), round 2 (the last, 1 left: no measurement needed
  // beyond 2 -> 1), each measurement and round one line.
  const std::string line(
      "[0-9]{4}-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z tessera tune: round 1 "
      "([0-9]/2: ort fp32 single:1 b=(8|16): [0-9.]+ ms/px ± [0-9.]+, [0-9.]+ s \\([0-9.]+ s of 20 "
      "s "
      "spent\\)|done: 2 of 2 measured at 16 px/job/rep, [0-9.]+ s of 20 s spent)");
  std::istringstream err(r.err);
  int lines = 0;
  for (std::string text; std::getline(err, text); ++lines)
    EXPECT_TRUE(tessera::testing::matches_whole(text, line)) << text;
  EXPECT_EQ(lines, 3) << r.err;
  // stdout: the CSV header and one row per candidate, nothing else.
  EXPECT_EQ(r.out.rfind("rank,layout,workers,threads,batch,", 0), 0u) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 3) << r.out;
  EXPECT_EQ(r.out.find("tessera tune:"), std::string::npos) << r.out;

  r = run_cli(args + " -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 3) << r.out;
}

TEST(TuneCli, VerifyComparesWithTheSweep) {
  const auto r = run_cli("tune -m " + small_model() +
                         " --budget 20 --layouts core -b 8,16,32 --start-pixels 32 --verify");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\nverify: sweep of 3 candidates at "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("% of the sweep's time"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\nsweep:\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| best"), std::string::npos) << r.out;
  // Piped progress: a line per sweep measurement too.
  const std::vector<std::string> batches = {"8", "16", "32"};
  for (size_t i = 0; i < batches.size(); ++i) {
    EXPECT_NE(r.err.find("tessera tune: verify sweep " + std::to_string(i + 1) +
                         "/3: ort fp32 core b=" + batches[i] + ": "),
              std::string::npos)
        << r.err;
  }
}

}  // namespace

namespace tessera {
namespace {

using testing::run_cli;

// tune searches only the precisions it is given, records the winner's engine and precision in
// the profile, lists what it left out, and infer --profile then computes with them.
TEST(TuneCli, SearchesEnginesAndOnlyTheGivenPrecisions) {
  const std::string p = kDir + "/engines.json";
  const auto r = run_cli("tune -m " + small_model() +
                         " --budget 10 --layouts single:1 -b 8 --start-pixels 16 --engine "
                         "ort,native --precision bf16 -o " +
                         p);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| native bf16 |"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("fp32 |"), std::string::npos) << r.out;  // fp32 was not asked for
  EXPECT_NE(r.out.find("skipped: ort bf16: the ort engine computes fp32 on cpu, not bf16 "
                       "(--engine native does)\n"),
            std::string::npos)
      << r.out;
  const auto profile = read_json(p);
  EXPECT_EQ(profile["engine"], "native");
  EXPECT_EQ(profile["precision"], "bf16");

  const std::string tile = kDir + "/grid_0.35_0.45";
  ASSERT_EQ(
      run_cli("synth -o " + tile + " --size 6x5 --s2-steps 12 --s1-steps 4/4 --force").exit_code,
      0);
  const auto inferred =
      run_cli("infer " + tile + " -m " + small_model() + " -o " + kDir + "/engines_out --profile " +
              p + " --summary " + kDir + "/engines_summary.json --force");
  ASSERT_EQ(inferred.exit_code, 0) << inferred.err;
  const auto summary = read_json(kDir + "/engines_summary.json");
  EXPECT_EQ(summary["engine"], "native");
  EXPECT_EQ(summary["precision"], "bf16");
  EXPECT_EQ(summary["tiles"][0]["engines"], "cpu native bf16");
}

// A model with symbolic step axes is tuned at the steps asked for: the summary and the profile
// say which; steps a model cannot take are the same one-line errors as bench's.
TEST(TuneCli, StepsOfASymbolicModel) {
  const std::string model = tessera::testing::make_tiny_v2_model(kDir);
  ASSERT_FALSE(::testing::Test::HasFailure());
  const std::string p = kDir + "/steps.json";
  auto r =
      run_cli("tune -m " + model +
              " --steps 68/9 --budget 10 --layouts single:1 -b 4,8 --start-pixels 8 -q -o " + p);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\nsteps: every run at 68 + 9 steps (S2 + S1; --steps sets them)\n"),
            std::string::npos)
      << r.out;
  const auto profile = read_json(p);
  EXPECT_EQ(profile["search"]["s2_steps"], 68);
  EXPECT_EQ(profile["search"]["s1_steps"], 9);

  r = run_cli("tune -m " + model + " --steps 257 -b 4");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: --steps: need 1..256 per branch, got '257'\n");
  r = run_cli("tune -m " + model + " --steps 0 -b 4");
  EXPECT_EQ(r.err, "tessera: --steps: need 1..256 per branch, got '0'\n");
  r = run_cli("tune -m " + small_model() + " --steps 68 -b 4");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "tessera: --steps: " + small_model() +
                       " takes 8 + 6 fixed steps; other step counts need a model with symbolic "
                       "step axes (v1.0 early, v1.1, v2)\n");
  // A fixed-step model's profile records the model's own steps.
  const auto fixed = read_json(tuned_profile());
  EXPECT_EQ(fixed["search"]["s2_steps"], 8);
  EXPECT_EQ(fixed["search"]["s1_steps"], 6);
}

}  // namespace
}  // namespace tessera
