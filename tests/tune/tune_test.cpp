// The tune search and profiles without ONNX Runtime: successive halving driven by a fake,
// deterministic measure function; candidate layouts on synthetic machines; profile files.

#include "tessera/tune/tune.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "tessera/common/error.h"
#include "tessera/tune/profile.h"

namespace tessera {
namespace {

const std::string kDir = std::string(TESSERA_TEST_TMP) + "/tune_test";

// A fake machine: candidate speed is a table keyed by "layout/batch"; every repetition yields
// speed +- a spread, and a measurement costs `work` x 1e-4 s plus 0.5 s of session creation.
struct FakeBench {
  std::map<std::string, double> ms_per_pixel;
  std::map<std::string, std::string> errors;  // candidates that fail, and why
  double spread = 0.01;
  std::vector<std::pair<std::string, int64_t>> calls;  // (key, work) in call order

  Measurement operator()(const TuneCandidate& c, int64_t work) {
    const std::string key = c.layout + "/" + std::to_string(c.batch);
    calls.emplace_back(key, work);
    Measurement m;
    if (const auto error = errors.find(key); error != errors.end()) {
      m.status = RowStatus::kError;
      m.error = error->second;
      m.seconds = 0.5;
      return m;
    }
    const auto it = ms_per_pixel.find(key);
    if (it == ms_per_pixel.end()) {
      m.status = RowStatus::kOutOfMemory;
      m.seconds = 0.5;
      return m;
    }
    m.ms_per_pixel = {it->second - spread, it->second, it->second + spread};
    m.session_s = 0.5;
    m.seconds = 0.5 + static_cast<double>(work) * 1e-4;
    return m;
  }
};

std::vector<TuneCandidate> grid(const std::vector<std::string>& layouts,
                                const std::vector<int64_t>& batches) {
  std::vector<TuneCandidate> out;
  for (const auto& l : layouts) {
    for (int64_t b : batches) out.push_back({l, 1, 1, b});
  }
  return out;
}

MeasureFn bind(FakeBench& fake) {
  return [&fake](const TuneCandidate& c, int64_t work) { return fake(c, work); };
}

TEST(Tune, HalvesUntilOneIsLeftAndGrowsTheWork) {
  FakeBench fake;
  const auto candidates = grid({"a", "b"}, {32, 64, 128, 256});  // 8 candidates
  const std::vector<double> speeds = {1.0, 0.9, 0.8, 0.85, 0.7, 0.5, 0.6, 0.65};
  for (size_t i = 0; i < candidates.size(); ++i) {
    fake.ms_per_pixel[candidates[i].layout + "/" + std::to_string(candidates[i].batch)] = speeds[i];
  }
  SearchOptions options;
  options.initial_work = 100;
  options.growth = 4;
  options.budget_s = 1000;
  const SearchResult r = successive_halving(candidates, options, bind(fake));
  // 8 -> 4 -> 2 -> 1: rounds at work 100, 400, 1600.
  EXPECT_EQ(r.rounds, 3);
  EXPECT_EQ(r.measurements, 8 + 4 + 2);
  EXPECT_EQ(r.final_work, 1600);
  EXPECT_FALSE(r.budget_stop);
  ASSERT_EQ(r.ranking.size(), 8u);
  EXPECT_EQ(r.ranking[0].candidate.layout, "b");
  EXPECT_EQ(r.ranking[0].candidate.batch, 64);
  EXPECT_EQ(r.ranking[0].outcome, "winner");
  EXPECT_EQ(r.ranking[0].rounds, 3);
  EXPECT_EQ(r.ranking[0].work, 1600);
  EXPECT_DOUBLE_EQ(r.ranking[0].mean, 0.5);
  // Runner-up of the last round, then round-2 losers by mean, then round-1 losers by mean.
  const std::vector<std::string> order = {"b/64",  "b/128", "b/256", "b/32",
                                          "a/128", "a/256", "a/64",  "a/32"};
  for (size_t i = 0; i < order.size(); ++i) {
    EXPECT_EQ(r.ranking[i].candidate.layout + "/" + std::to_string(r.ranking[i].candidate.batch),
              order[i])
        << i;
  }
  EXPECT_EQ(r.ranking[1].outcome, "out in round 3");
  EXPECT_EQ(r.ranking[2].outcome, "out in round 2");
  EXPECT_EQ(r.ranking[7].outcome, "out in round 1");
  // Time: 14 sessions of 0.5 s + work 8*100 + 4*400 + 2*1600 at 1e-4 s.
  EXPECT_NEAR(r.session_s, 7.0, 1e-9);
  EXPECT_NEAR(r.seconds, 7.0 + (800 + 1600 + 3200) * 1e-4, 1e-9);
  // The 95% CI of {m-0.01, m, m+0.01}: t(2) = 4.303, sd = 0.01, n = 3.
  EXPECT_NEAR(r.ranking[0].ci95, 4.303 * 0.01 / std::sqrt(3.0), 1e-12);
}

TEST(Tune, OddCountsKeepTheLargerHalf) {
  FakeBench fake;
  const auto candidates = grid({"a", "b", "c"}, {8});
  fake.ms_per_pixel = {{"a/8", 3}, {"b/8", 1}, {"c/8", 2}};
  SearchOptions options;
  options.initial_work = 10;
  const SearchResult r = successive_halving(candidates, options, bind(fake));
  // 3 -> 2 -> 1. Round 2 starts with the layout round 1 ended on (c), then goes by candidate.
  ASSERT_EQ(fake.calls.size(), 5u);
  EXPECT_EQ(fake.calls[3], (std::pair<std::string, int64_t>{"c/8", 40}));
  EXPECT_EQ(fake.calls[4], (std::pair<std::string, int64_t>{"b/8", 40}));
  EXPECT_EQ(r.ranking[0].candidate.layout, "b");
}

TEST(Tune, EachRoundMeasuresOneLayoutAfterTheOther) {
  FakeBench fake;
  const auto candidates = grid({"a", "b"}, {1, 2, 3, 4});
  // After round 1 the faster half interleaves the layouts by speed: b/4, a/1, b/3, a/2.
  fake.ms_per_pixel = {{"a/1", 2}, {"a/2", 4}, {"a/3", 8}, {"a/4", 9},
                       {"b/1", 7}, {"b/2", 6}, {"b/3", 3}, {"b/4", 1}};
  SearchOptions options;
  options.initial_work = 12;
  successive_halving(candidates, options, bind(fake));
  ASSERT_GE(fake.calls.size(), 12u);
  std::vector<std::string> round2;
  for (size_t i = 8; i < 12; ++i) round2.push_back(fake.calls[i].first);
  // Round 1 ended on layout b: round 2 measures b's survivors first, then a's.
  EXPECT_EQ(round2, (std::vector<std::string>{"b/3", "b/4", "a/1", "a/2"}));
}

TEST(Tune, BudgetShrinksTheGrowthThenStops) {
  FakeBench fake;
  const auto candidates = grid({"a"}, {1, 2, 3, 4});
  fake.ms_per_pixel = {{"a/1", 4}, {"a/2", 3}, {"a/3", 2}, {"a/4", 1}};
  SearchOptions options;
  options.initial_work = 1000;  // 0.1 s of work + 0.5 s session per measurement
  options.growth = 4;
  // Round 1: 4 x 0.6 = 2.4 s. Round 2 (2 left) at growth 4 would cost 2 x 0.9 = 1.8 s; at
  // growth 3, 2 x 0.8 = 1.6 s: a 4.1 s budget allows growth 3 only. Then no round fits.
  options.budget_s = 4.1;
  const SearchResult r = successive_halving(candidates, options, bind(fake));
  EXPECT_EQ(r.rounds, 2);
  EXPECT_EQ(r.final_work, 3000);
  EXPECT_FALSE(r.budget_stop);  // two were left after round 1, one after round 2
  EXPECT_EQ(r.ranking[0].candidate.batch, 4);

  // A budget spent by round 1 stops with two candidates left; the faster one wins.
  FakeBench fake2;
  fake2.ms_per_pixel = fake.ms_per_pixel;
  options.budget_s = 2.5;
  const SearchResult s = successive_halving(candidates, options, bind(fake2));
  EXPECT_EQ(s.rounds, 1);
  EXPECT_TRUE(s.budget_stop);
  EXPECT_EQ(s.ranking[0].candidate.batch, 4);
  EXPECT_EQ(s.ranking[0].outcome, "winner");
  EXPECT_EQ(s.ranking[1].outcome, "left at budget");
  EXPECT_EQ(s.ranking[2].outcome, "out in round 1");
}

// Round 1 is cut short too: no measurement starts that is predicted (from those so far) not
// to finish in the time left; what was measured is ranked, the rest is named as not measured.
TEST(Tune, TheBudgetCutsRoundOneShortAndNamesWhatWasNotMeasured) {
  FakeBench fake;
  const auto candidates = grid({"a", "b"}, {1, 2, 3, 4});
  fake.ms_per_pixel = {{"a/1", 4}, {"a/2", 3}, {"a/3", 2}, {"a/4", 5},
                       {"b/1", 1}, {"b/2", 6}, {"b/3", 7}, {"b/4", 8}};
  SearchOptions options;
  options.initial_work = 1000;  // 0.6 s per measurement
  options.budget_s = 2.0;       // three fit: 1.8 s
  std::vector<std::string> lines;
  options.done = [&](const std::string& line) { lines.push_back(line); };
  const SearchResult r = successive_halving(candidates, options, bind(fake));
  EXPECT_EQ(fake.calls.size(), 3u);
  EXPECT_EQ(r.measurements, 3);
  EXPECT_EQ(r.rounds, 1);
  EXPECT_EQ(r.cut_round, 1);
  EXPECT_TRUE(r.budget_stop);
  EXPECT_LE(r.elapsed_s, options.budget_s);
  ASSERT_EQ(r.ranking.size(), 8u);
  EXPECT_EQ(r.ranking[0].candidate.batch, 3);  // a/3, the fastest of those measured
  EXPECT_EQ(r.ranking[0].outcome, "winner");
  for (size_t i = 3; i < 8; ++i) {
    EXPECT_EQ(r.ranking[i].outcome, "not measured (budget)") << i;
    EXPECT_EQ(r.ranking[i].rounds, 0) << i;
  }
  // One line per measurement and per candidate left out, then the round's.
  ASSERT_EQ(lines.size(), 9u);
  EXPECT_EQ(lines[0].rfind("round 1 1/8: ort fp32 a b=1: 4.0000 ms/px ± ", 0), 0u) << lines[0];
  EXPECT_EQ(lines[3], "round 1 4/8: ort fp32 a b=4: not measured, 0.6 s predicted, 0.2 s left");
  EXPECT_EQ(lines[8],
            "round 1 done: 3 of 8 measured at 1000 px/job/rep, 1.8 s of 2 s spent, cut short by "
            "the budget");

  TuneResult tuned;
  tuned.search = r;
  const std::string summary = tune_summary(tuned, options.budget_s);
  EXPECT_NE(summary.find("\nbudget: round 1 cut short; 5 of 8 candidates not measured: ort fp32 "
                         "a b=4, ort fp32 b b=1, ort fp32 b b=2, ort fp32 b b=3, ort fp32 b b=4\n"),
            std::string::npos)
      << summary;
}

// A first measurement longer than the whole budget runs (nothing predicts it) and is said.
TEST(Tune, AFirstMeasurementOverTheBudgetIsSaid) {
  FakeBench fake;
  fake.ms_per_pixel = {{"a/1", 1}, {"a/2", 2}};
  SearchOptions options;
  options.initial_work = 10000;  // 1.5 s per measurement
  options.budget_s = 1;
  const SearchResult r = successive_halving(grid({"a"}, {1, 2}), options, bind(fake));
  EXPECT_EQ(r.measurements, 1);
  EXPECT_DOUBLE_EQ(r.first_over_budget_s, 1.5);
  TuneResult tuned;
  tuned.search = r;
  EXPECT_NE(tune_summary(tuned, 1).find(
                "\nbudget: the first measurement alone took 1.5 s, more than the 1 s budget (a "
                "larger --budget, or a smaller --start-pixels or batch, measures more)\n"),
            std::string::npos)
      << tune_summary(tuned, 1);
}

// The budget is the caller's clock (tune: the wall clock), not only the measurements' time:
// time spent before or between them counts.
TEST(Tune, TheBudgetCountsTheCallersClock) {
  FakeBench fake;
  fake.ms_per_pixel = {{"a/1", 1}, {"a/2", 2}, {"a/3", 3}};
  SearchOptions options;
  options.initial_work = 1000;  // 0.6 s per measurement
  options.budget_s = 2.05;
  const double overhead = 0.8;  // spent before the search (engine checks, reading the model)
  options.elapsed_s = [&] {
    double measured = 0;
    for (const auto& call : fake.calls) measured += 0.5 + static_cast<double>(call.second) * 1e-4;
    return overhead + measured;
  };
  const SearchResult r = successive_halving(grid({"a"}, {1, 2, 3}), options, bind(fake));
  EXPECT_EQ(r.measurements, 2);  // 0.8 + 2 x 0.6 = 2.0
  EXPECT_NEAR(r.elapsed_s, 2.0, 1e-9);
}

// The profile records each candidate's spread; when the best two overlap, the ranking is
// within noise and the summary says so.
TEST(Tune, OverlappingSpreadsOfTheBestTwoAreWithinNoise) {
  FakeBench fake;
  fake.ms_per_pixel = {{"a/1", 1.0}, {"a/2", 1.015}, {"a/3", 3}};
  fake.spread = 0.01;  // [0.99, 1.01] and [1.005, 1.025] overlap
  SearchOptions options;
  options.initial_work = 10;
  options.budget_s = 1000;
  const SearchResult r = successive_halving(grid({"a"}, {1, 2, 3}), options, bind(fake));
  const nlohmann::json ranking = ranking_json(r.ranking);
  ASSERT_EQ(ranking.size(), 3u);
  const auto samples = ranking[0]["samples_ms_per_pixel"].get<std::vector<double>>();
  ASSERT_EQ(samples.size(), 3u);
  EXPECT_NEAR(samples[0], 0.99, 1e-12);
  EXPECT_NEAR(samples[2], 1.01, 1e-12);
  EXPECT_DOUBLE_EQ(ranking[0]["median_ms_per_pixel"].get<double>(), 1.0);
  EXPECT_NEAR(ranking[0]["min_ms_per_pixel"].get<double>(), 0.99, 1e-12);
  EXPECT_NEAR(ranking[0]["max_ms_per_pixel"].get<double>(), 1.01, 1e-12);
  EXPECT_NEAR(ranking[0]["sd_ms_per_pixel"].get<double>(), 0.01, 1e-12);
  EXPECT_TRUE(ranking_within_noise(ranking));
  TuneResult tuned;
  tuned.search = r;
  tuned.within_noise = true;
  EXPECT_NE(
      tune_summary(tuned, 1000)
          .find("\nwithin noise: the best two overlap (ms/pixel per repetition: ort fp32 a b=1 "
                "0.9900-1.0100 and ort fp32 a b=2 1.0050-1.0250); either would do, a longer "
                "--budget or more --reps can separate them\n"),
      std::string::npos)
      << tune_summary(tuned, 1000);

  // Apart, or without recorded spreads (older profiles): not within noise.
  nlohmann::json apart = ranking;
  apart[1]["min_ms_per_pixel"] = 1.02;
  EXPECT_FALSE(ranking_within_noise(apart));
  apart[1].erase("min_ms_per_pixel");
  EXPECT_FALSE(ranking_within_noise(apart));
  EXPECT_FALSE(ranking_within_noise(nlohmann::json::array({ranking[0]})));
  EXPECT_FALSE(ranking_within_noise(nlohmann::json::object()));
}

TEST(Tune, FailedCandidatesAreDroppedAndRankedLast) {
  FakeBench fake;
  const auto candidates = grid({"a"}, {8, 4096});
  fake.ms_per_pixel = {{"a/8", 2}};  // a/4096 runs out of memory
  SearchOptions options;
  options.initial_work = 10;
  const SearchResult r = successive_halving(candidates, options, bind(fake));
  EXPECT_EQ(r.rounds, 1);
  EXPECT_EQ(r.ranking[0].candidate.batch, 8);
  EXPECT_EQ(r.ranking[1].candidate.batch, 4096);
  EXPECT_EQ(r.ranking[1].outcome, "oom");
  EXPECT_EQ(ranking_table(r.ranking).rows()[1][7], nullptr);  // no ms/px for a failed row

  FakeBench none;
  try {
    successive_halving(grid({"a"}, {1}), options, bind(none));
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "tune: every candidate failed (oom at layout a batch 1)");
  }
  FakeBench broken;
  broken.errors = {{"a/1", "ort-cpu: inference failed (Reshape)"}};
  try {
    successive_halving(grid({"a"}, {1}), options, bind(broken));
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "tune: every candidate failed (error at layout a batch 1: ort-cpu: inference "
                 "failed (Reshape))");
  }
}

TEST(Tune, ConfidenceInterval) {
  EXPECT_EQ(confidence95({1.0}), 0.0);
  // {1, 3}: sd = sqrt(2), t(1) = 12.706.
  EXPECT_NEAR(confidence95({1.0, 3.0}), 12.706 * std::sqrt(2.0) / std::sqrt(2.0), 1e-12);
}

TEST(Tune, CandidateLayoutsDropIdenticalPlans) {
  // 2 cores, 1 node, 1 L3: single == 1x2 == numa == l3; core == 2x1.
  const MachineInfo two = Topology::from_synthetic("pack:1 numa:1 l3:1 core:2 pu:1").info();
  EXPECT_EQ(candidate_layouts(two), (std::vector<std::string>{"single", "core"}));
  // 2 packages x 2 nodes x 2 cores: numa:2 pairs the nodes of a package (== 2x4); 4x2 ==
  // numa; l3 == numa.
  const MachineInfo big = Topology::from_synthetic("pack:2 numa:2 l3:1 core:2 pu:2").info();
  EXPECT_EQ(candidate_layouts(big), (std::vector<std::string>{"single", "core", "numa", "numa:2"}));

  const auto c = make_candidates(two, {"single", "1x2", "core"}, {64, 32, 64}, "local");
  ASSERT_EQ(c.size(), 4u);  // 1x2 is single; the repeated 64 is dropped
  EXPECT_EQ(c[0].layout, "single");
  EXPECT_EQ(c[0].threads, 2);
  EXPECT_EQ(c[2].layout, "core");
  EXPECT_EQ(c[2].workers, 2);
  EXPECT_EQ(c[3].batch, 32);
  EXPECT_THROW(make_candidates(two, {"3x1"}, {64}, "local"), UsageError);
  EXPECT_THROW(make_candidates(two, {"core"}, {0}, "local"), UsageError);
}

TEST(Tune, TheLastRoundKeepsItsGrowthWhileEarlierRoundsShrink) {
  FakeBench fake;
  const auto candidates = grid({"a", "b"}, {1, 2, 3, 4, 5, 6});
  for (int i = 0; i < 12; ++i) {
    fake.ms_per_pixel[(i < 6 ? "a/" : "b/") + std::to_string(i % 6 + 1)] = 1.0 + 0.1 * i;
  }
  SearchOptions options;
  options.initial_work = 1000;  // 0.1 s of work + 0.5 s session per measurement
  options.growth = 4;
  // Round 1: 12 x 0.6 = 7.2 s. Growing 4x every round, the 2 left for the last round would not
  // fit at all (a budget stop). Instead rounds 2 and 3 grow 3x (4.8 s, 4.2 s), which leaves
  // the last round its full 4x: 2 x (0.9 x 4 + 0.5) = 8.2 s; 24.4 s in all.
  options.budget_s = 24.7;
  const SearchResult r = successive_halving(candidates, options, bind(fake));
  EXPECT_EQ(r.rounds, 4);
  EXPECT_FALSE(r.budget_stop);
  EXPECT_EQ(r.final_work, 36000);
  EXPECT_NEAR(r.seconds, 24.4, 1e-9);
  EXPECT_EQ(r.ranking[0].candidate.layout, "a");
  EXPECT_EQ(r.ranking[0].candidate.batch, 1);
}

TEST(Tune, BadSearchOptionsNameTheFlag) {
  FakeBench fake;
  const auto candidates = grid({"a"}, {8});
  const auto message = [&](const SearchOptions& options) {
    try {
      successive_halving(candidates, options, bind(fake));
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  SearchOptions options;
  options.growth = 1;
  EXPECT_EQ(message(options), "--growth must be at least 2 (got 1)");
  options = SearchOptions{};
  options.initial_work = 0;
  EXPECT_EQ(message(options), "--start-pixels must be at least 1 (got 0)");
  options = SearchOptions{};
  options.budget_s = 0;
  EXPECT_EQ(message(options), "--budget must be positive (got 0)");
  EXPECT_TRUE(fake.calls.empty());
}

TEST(Tune, ParseBudget) {
  EXPECT_DOUBLE_EQ(parse_budget("120"), 120);
  EXPECT_DOUBLE_EQ(parse_budget("120s"), 120);
  EXPECT_DOUBLE_EQ(parse_budget("2m"), 120);
  EXPECT_DOUBLE_EQ(parse_budget("1.5h"), 5400);
  for (const char* bad : {"", "s", "-5", "0", "10x", "abc"}) {
    try {
      parse_budget(bad);
      FAIL() << bad;
    } catch (const UsageError& e) {
      EXPECT_EQ(std::string(e.what()),
                std::string("--budget ") + bad + ": expected seconds, e.g. 120, 120s, 2m or 1h");
    }
  }
}

Profile sample_profile() {
  Profile p;
  p.machine =
      machine_fingerprint(Topology::from_synthetic("pack:1 numa:1 core:2 pu:1").info(), "1.29.0");
  p.model = {"/models/m.onnx", 1234, "fnv1a64:0123456789abcdef"};
  p.device = "cpu";
  p.plan = {"core", 256, 2, 1, "local"};
  p.ranking = nlohmann::json::array({{{"rank", 1}, {"layout", "core"}}});
  p.search = {{"rounds", 3}};
  return p;
}

TEST(Profile, RoundTripThroughAFile) {
  std::filesystem::create_directories(kDir);
  const std::string path = kDir + "/round_trip.json";
  const Profile p = sample_profile();
  write_profile(p, path);
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
  const Profile q = read_profile(path);
  EXPECT_EQ(profile_json(q), profile_json(p));
  EXPECT_EQ(q.plan.layout, "core");
  EXPECT_EQ(q.plan.batch, 256);
  EXPECT_EQ(q.machine.fingerprint, machine_fingerprint_hash(q.machine));
  EXPECT_EQ(profile_mismatch(q, path, p.machine, p.model, "cpu"), "");
}

// infer --profile's line: what it took, in a fixed order, and the noise note.
TEST(Profile, TheLineSaysWhatWasTakenAndWhetherTheRankingWasNoise) {
  ProfileTaken taken;
  taken.values = {{"batch", 256}, {"layout", "core"}, {"engine", "native"}, {"precision", "bf16"}};
  EXPECT_EQ(profile_taken_line("p.json", taken),
            "profile p.json: engine native, precision bf16, layout core, batch 256");
  taken.within_noise = true;
  taken.values["membind"] = "local";
  EXPECT_EQ(profile_taken_line("p.json", taken),
            "profile p.json: engine native, precision bf16, layout core, membind local, batch "
            "256; its best two candidates were within noise (either would do)");
  EXPECT_EQ(profile_taken_line("p.json", ProfileTaken{}),
            "profile p.json: nothing taken (every setting was given)");
}

TEST(Profile, Fingerprints) {
  // FNV-1a 64 reference values.
  EXPECT_EQ(fnv1a64_hex("", 0), "cbf29ce484222325");
  EXPECT_EQ(fnv1a64_hex("a", 1), "af63dc4c8601ec8c");
  std::filesystem::create_directories(kDir);
  const std::string path = kDir + "/model.bin";
  std::ofstream(path, std::ios::binary) << "a";
  const ModelFingerprint m = model_fingerprint(path);
  EXPECT_EQ(m.bytes, 1);
  EXPECT_EQ(m.hash, "fnv1a64:af63dc4c8601ec8c");
  try {
    model_fingerprint(kDir + "/missing.onnx");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), kDir + "/missing.onnx: cannot read the model");
  }
}

TEST(Profile, MismatchesWarnWithOneLine) {
  const Profile p = sample_profile();
  MachineFingerprint other = p.machine;
  other.cpu_model = "Other CPU";
  other.cores = 64;
  other.fingerprint = machine_fingerprint_hash(other);
  EXPECT_EQ(profile_mismatch(p, "p.json", other, p.model, "cpu"),
            "p.json: tuned on another machine (unknown, 2 cores, ONNX Runtime 1.29.0; this one: "
            "Other CPU, 64 cores, ONNX Runtime 1.29.0); not using it");
  ModelFingerprint model = p.model;
  model.path = "/models/other.onnx";
  model.hash = "fnv1a64:fedcba9876543210";
  EXPECT_EQ(profile_mismatch(p, "p.json", p.machine, model, "cpu"),
            "p.json: tuned for another model (/models/m.onnx, fnv1a64:0123456789abcdef; this "
            "one: /models/other.onnx, fnv1a64:fedcba9876543210); not using it");
  EXPECT_EQ(profile_mismatch(p, "p.json", p.machine, p.model, "cuda:0"),
            "p.json: tuned for device cpu, not cuda:0; not using it");
  // The same model under another path is the same model.
  model = p.model;
  model.path = "/elsewhere/m.onnx";
  EXPECT_EQ(profile_mismatch(p, "p.json", p.machine, model, "cpu"), "");
}

void expect_read_error(const std::string& name, const std::string& text,
                       const std::string& message) {
  std::filesystem::create_directories(kDir);
  const std::string path = kDir + "/" + name;
  std::ofstream(path) << text;
  try {
    read_profile(path);
    FAIL() << name;
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), path + ": " + message);
  }
}

TEST(Tune, TheSweepTableIsFastestFirstAndShowsThePixelsThatRan) {
  const auto row = [](const std::string& layout, int64_t batch, double mean, const char* status) {
    CandidateResult r;
    r.candidate.layout = layout;
    r.candidate.batch = batch;
    r.work = 32;  // asked for 32 pixels: one whole batch of 64 ran
    r.mean = mean;
    r.last.status = parse_row_status(status);
    if (r.last.status == RowStatus::kOk) r.last.ms_per_pixel = {mean};
    return r;
  };
  const std::vector<CandidateResult> sweep = {
      row("single", 16, 0.5, "ok"), row("core", 64, 0.0, "oom"), row("core", 16, 0.3, "ok"),
      row("2x1", 16, 0.4, "ok")};
  const auto json = ranking_table(fastest_first(sweep)).to_json();
  ASSERT_EQ(json.size(), 4u);
  EXPECT_EQ(json[0]["layout"], "core");
  EXPECT_EQ(json[0]["batch"], 16);
  EXPECT_EQ(json[1]["layout"], "2x1");
  EXPECT_EQ(json[2]["layout"], "single");
  EXPECT_EQ(json[3]["batch"], 64);
  EXPECT_EQ(json[3]["pixels_per_job"], 64);
  EXPECT_EQ(json[0]["pixels_per_job"], 32);  // two batches of 16
}

TEST(Profile, BadFilesNameTheFileAndTheProblem) {
  try {
    read_profile(kDir + "/none.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), kDir + "/none.json: no such file");
  }
  expect_read_error("bad.json", "{\"tool\": ", "invalid JSON at byte 10");
  expect_read_error("bench.json", "{\"tool\": \"tessera bench\"}",
                    "not a tessera tune profile (no \"tool\": \"tessera tune\")");
  expect_read_error("number.json", "{\"tool\": 5}",
                    "not a tessera tune profile (no \"tool\": \"tessera tune\")");
  nlohmann::json doc = profile_json(sample_profile());
  doc["plan"].erase("batch");
  expect_read_error("no_batch.json", doc.dump(), "not a tessera tune profile (missing plan.batch)");
  doc = profile_json(sample_profile());
  doc["machine"]["cores"] = "two";
  expect_read_error("cores.json", doc.dump(),
                    "not a tessera tune profile (wrong type for machine.cores)");
  doc = profile_json(sample_profile());
  doc["plan"]["layout"] = "bogus";
  expect_read_error("layout.json", doc.dump(),
                    "not a tessera tune profile (plan.layout 'bogus' is not a layout)");
  doc = profile_json(sample_profile());
  doc["plan"]["membind"] = "far";
  expect_read_error("membind.json", doc.dump(),
                    "not a tessera tune profile (plan.membind 'far' is not local or interleave)");
}

}  // namespace
}  // namespace tessera
