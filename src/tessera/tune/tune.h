#pragma once
// tessera tune: finds the fastest layout x batch (x threads per worker) for one model on this
// machine by successive halving. Round 1 measures every candidate briefly; each later round
// keeps the faster half (by mean aggregate ms/pixel) and measures it up to `growth` times
// longer, until one candidate is left or the next round would not fit the time budget. Before
// each round the cost of all remaining rounds is predicted, and the last round (where the two
// best meet) keeps its full growth while the rounds before it shrink first.
//
// The budget bounds the search's wall-clock time, round 1 and engine builds included: no
// measurement starts that is predicted not to finish in the time left (predicted from the
// measurements so far; the first one has no prediction and always runs). A round with such a
// measurement is cut short: the candidates measured are ranked, and those that round 1 never
// measured are ranked last as "not measured (budget)".
//
// The search (successive_halving) only sees a MeasureFn, so its selection logic runs without
// ONNX Runtime in tests; tune() binds it to a BenchPool per layout.
//
// Units: `work` is pixels per worker and repetition; a measurement runs
// max(1, round(work / batch)) batches per worker in each of `reps` repetitions, and yields one
// aggregate ms/pixel sample per repetition. All times include session creation. tune() measures
// through a BenchPool per layout (sessions built once while the search stays on that layout);
// the --verify sweep measures as `tessera bench` does, with new sessions per case.

#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tessera/bench/bench.h"
#include "tessera/common/table.h"
#include "tessera/topology/topology.h"
#include "tessera/tune/profile.h"

namespace tessera {

struct TuneCandidate {
  std::string layout;  // the first name among layouts with an identical plan
  int workers = 1;
  int threads = 1;  // intra-op threads per worker
  int64_t batch = 0;
  std::string engine = kOrtBackend;       // the backend (engine_spec.h's table)
  Precision precision = Precision::fp32;  // resolved, as EngineSpec::precision

  // "native bf16": the engine and precision it runs at.
  std::string engine_label() const { return engine + " " + precision_name(precision); }
  // Candidates of one group share their workers and engines while they are measured: the
  // same engine, precision and layout.
  std::string group() const { return engine_label() + " " + layout; }
};

// One timed run of one candidate.
struct Measurement {
  std::vector<double> ms_per_pixel;   // one aggregate value per repetition
  double seconds = 0;                 // wall time spent, session creation included
  double session_s = 0;               // of which session creation
  RowStatus status = RowStatus::kOk;  // not ok: dropped from the search
  std::string error;                  // why, when status is not ok
};

using MeasureFn = std::function<Measurement(const TuneCandidate&, int64_t work)>;

struct SearchOptions {
  int64_t initial_work = 1024;  // pixels per worker and repetition in round 1
  int growth = 4;               // work multiplier from one round to the next (>= 2)
  double budget_s = 120;  // no round, and no measurement, starts that is predicted to end past it
  // Seconds of the budget spent so far (tune: the wall clock since it started). Empty: the sum
  // of the measurements' seconds (a fake MeasureFn in tests).
  std::function<double()> elapsed_s;
  // Called before each measurement with a one-line status (for a TTY progress line).
  std::function<void(const std::string&)> progress;
  // Called with one line after each measurement, each candidate left out for the budget and
  // each round.
  std::function<void(const std::string&)> done;
};

struct CandidateResult {
  TuneCandidate candidate;
  int rounds = 0;      // rounds it was measured in; survivors of the last round have the most
  int64_t work = 0;    // of its last measurement
  Measurement last;    // its last measurement
  double mean = 0;     // of last.ms_per_pixel
  double ci95 = 0;     // half-width of the 95% confidence interval of the mean (Student t)
  double seconds = 0;  // all its measurements together
  // "winner", "out in round K", "left at budget" (measured in the last round, not the
  // fastest, search stopped by the budget), "not measured (budget)" (round 1 was cut short
  // before it) or the failed status ("oom").
  std::string outcome;
};

// The outcome of a candidate that round 1 left out for the budget.
inline constexpr const char* kNotMeasured = "not measured (budget)";

struct SearchResult {
  // Winner first; then the rest by rounds survived (desc), mean (asc); failed ones last.
  std::vector<CandidateResult> ranking;
  int rounds = 0;
  int measurements = 0;
  int64_t final_work = 0;    // work of the last round
  double seconds = 0;        // sum of Measurement::seconds
  double session_s = 0;      // sum of Measurement::session_s
  double elapsed_s = 0;      // of the budget, at the end (SearchOptions::elapsed_s)
  bool budget_stop = false;  // stopped with more than one candidate left
  int cut_round = 0;         // the round the budget cut short (0: none)
  // The first measurement's seconds when it alone took more than the budget (else 0).
  double first_over_budget_s = 0;
};

// Throws Error when every candidate fails; UsageError for an empty candidate list or bad
// options.
SearchResult successive_halving(const std::vector<TuneCandidate>& candidates,
                                const SearchOptions& options, const MeasureFn& measure);

// Half-width of the 95% confidence interval of the mean of `samples` (0 for fewer than 2).
double confidence95(const std::vector<double>& samples);

// The ranking as the profile records it: ranking_table's rows, each with its spread: the
// per-repetition samples ("samples_ms_per_pixel") and their median, min, max and sd (null for a
// candidate without samples).
nlohmann::json ranking_json(const std::vector<CandidateResult>& ranking);

// The layouts worth trying on `machine`: single, core, numa, numa:K (K dividing the nodes of a
// package), l3 (when known) and JxT (J*T = cores), with plan-identical ones removed (the first
// name is kept).
std::vector<std::string> candidate_layouts(const MachineInfo& machine);
// layouts x batches; layouts whose plans are identical to an earlier one are dropped.
// Throws UsageError for a layout the planner rejects.
std::vector<TuneCandidate> make_candidates(const MachineInfo& machine,
                                           const std::vector<std::string>& layouts,
                                           const std::vector<int64_t>& batches,
                                           const std::string& membind);

// "120", "120s", "2m", "1.5h" -> seconds; throws UsageError otherwise.
double parse_budget(const std::string& text);

struct TuneOptions {
  std::string model_path;
  Device device;
  std::vector<std::string> engines{kOrtBackend};  // engine_spec.h's table
  // A precision changes the numbers, so it is chosen, never searched beyond what is given:
  // nullopt is each engine's default on the device (fp32 on a CPU). Combinations an engine
  // cannot run are left out (TuneResult::skipped).
  std::vector<std::optional<Precision>> precisions{std::nullopt};
  std::vector<std::string> layouts;  // empty: candidate_layouts()
  std::vector<int64_t> batch_sizes{32, 64, 128, 256, 512, 1024};
  double budget_s = 120;
  int reps = 3;
  int64_t initial_work = 0;  // 0: twice the smallest batch size
  // Work multiplier per round (SearchOptions::growth). 8 rather than 4: the last round, where
  // the two best are compared, then holds most of the time spent (measured: 28 % of an
  // exhaustive sweep's time at growth 8 against 44-50 % at 4, same winner).
  int growth = 8;
  std::string membind = "local";
  bool spinning = true;
  // Steps of every run of a model with symbolic step axes (BenchOptions::s2_steps, s1_steps):
  // 0 is bench's default (40). Batch and layout are chosen at these lengths.
  int64_t s2_steps = 0, s1_steps = 0;
  // Also run the exhaustive sweep at the last round's work, after the search: its time comes on
  // top of the budget.
  bool verify = false;
  std::function<void(const std::string&)> progress;  // SearchOptions::progress
  std::function<void(const std::string&)> done;      // SearchOptions::done
};

struct SweepResult {
  std::vector<CandidateResult> rows;  // in candidate order
  int best = -1;                      // index into rows
  double seconds = 0;
};

struct TuneResult {
  // "<engine> <precision>: <why>" for each combination of --engine and --precision left out.
  std::vector<std::string> skipped;
  SearchResult search;
  // The best two candidates' per-repetition ms/pixel ranges overlap (ranking_within_noise):
  // their order is noise.
  bool within_noise = false;
  Profile profile;  // the winner's plan with this machine's and model's fingerprints
  // The steps every measurement ran (S2, S1), and whether the model's step axes are symbolic.
  int64_t s2_steps = 0, s1_steps = 0;
  bool symbolic_steps = false;
  bool verified = false;
  SweepResult sweep;
  // Tune's choice measured in the sweep against the sweep's best; NaN when the choice did not
  // run ok in the sweep.
  double gap_percent = std::numeric_limits<double>::quiet_NaN();
  double time_fraction = 0;  // tune's seconds / the sweep's seconds
};

TuneResult tune(const TuneOptions& options);

// rank | layout | jobs | threads/job | batch | rounds | px/job | ms/px | ± 95% CI | px/s |
// session s | status, in the order given (rank = position). px/job is what ran: whole batches.
Table ranking_table(const std::vector<CandidateResult>& ranking);

// The sweep's rows fastest first, failed ones last (the sweep measures in candidate order).
std::vector<CandidateResult> fastest_first(std::vector<CandidateResult> rows);
// The lines under the ranking: winner, whether it is within noise of the next, search cost,
// what the budget cut and, with --verify, the comparison.
std::string tune_summary(const TuneResult& result, double budget_s);

}  // namespace tessera
