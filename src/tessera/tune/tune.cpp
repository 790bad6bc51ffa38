#include "tessera/tune/tune.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <numeric>
#include <set>

#include "tessera/bench/bench_case.h"
#include "tessera/bench/stats.h"
#include "tessera/common/clock.h"
#include "tessera/common/error.h"
#include "tessera/engine/engine_spec.h"
#include "tessera/model/model_info.h"
#include "tessera/topology/placement.h"

namespace tessera {
namespace {

// Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom.
constexpr double kT975[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                            2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                            2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};

bool measured_ok(const Measurement& m) {
  return m.status == RowStatus::kOk && !m.ms_per_pixel.empty();
}

// Timed batches per worker and repetition for `work` pixels at `batch` (as tune measures).
double batches_for(double work, int64_t batch) {
  return std::max(1.0, std::round(work / static_cast<double>(batch)));
}

// What measuring candidate r again at `scale` times its last work is predicted to cost: the
// timed part scales with the number of batches (a batch larger than the work still runs once),
// session creation does not.
double predicted_s(const CandidateResult& r, double scale) {
  const Measurement& m = r.last;
  const double w = static_cast<double>(r.work);
  const double ratio =
      batches_for(w * scale, r.candidate.batch) / batches_for(w, r.candidate.batch);
  return std::max(0.0, m.seconds - m.session_s) * ratio + m.session_s;
}

// What a round at `growth` times the last work is predicted to cost.
double predicted_round_s(const std::vector<CandidateResult>& results, const std::vector<int>& alive,
                         int growth) {
  double total = 0;
  for (int i : alive) total += predicted_s(results[i], growth);
  return total;
}

// Rounds still to measure, this one included, until one candidate is left (each round keeps
// the larger half): 12 -> 4 (12, 6, 3, 2), 3 -> 2, 2 -> 1.
int rounds_to_one(size_t n) {
  int rounds = 0;
  for (; n > 1; n = (n + 1) / 2) ++rounds;
  return rounds;
}

// What all remaining rounds are predicted to cost when every one of them but the last grows
// the work `growth` times and the last grows it `last_growth` times. A later round with n
// candidates is costed at n times the mean prediction over the candidates alive now.
double predicted_rounds_s(const std::vector<CandidateResult>& results,
                          const std::vector<int>& alive, int growth, int last_growth) {
  size_t n = alive.size();
  const int rounds = rounds_to_one(n);
  double total = 0, scale = 1;
  for (int r = 0; r < rounds; ++r, n = (n + 1) / 2) {
    scale *= r == rounds - 1 ? last_growth : growth;
    double mean = 0;
    for (int i : alive) mean += predicted_s(results[i], scale);
    total += static_cast<double>(n) * mean / static_cast<double>(alive.size());
  }
  return total;
}

// The growth of the next round. The last round, where the two best meet, decides the search,
// so it keeps the full growth if any plan allows: the rounds before it shrink first. When no
// plan of the remaining rounds fits, the next round alone takes the largest growth that fits
// (0 when none does).
int next_growth(const std::vector<CandidateResult>& results, const std::vector<int>& alive,
                const SearchOptions& options, double spent_s) {
  const double left = options.budget_s - spent_s;
  if (rounds_to_one(alive.size()) > 1) {
    for (int last = options.growth; last >= 2; --last) {
      for (int growth = last; growth >= 2; --growth) {
        if (predicted_rounds_s(results, alive, growth, last) <= left) return growth;
      }
    }
  }
  for (int growth = options.growth; growth >= 2; --growth) {
    if (predicted_round_s(results, alive, growth) <= left) return growth;
  }
  return 0;
}

// A key equal for plans that put the same workers on the same CPUs and memory.
std::string plan_key(const Plan& plan) {
  std::string key;
  for (const auto& w : plan.workers) {
    key += fmt::format("[{}|{}|{}]", cpu_list_string(w.cpus), cpu_list_string(w.memory_nodes),
                       w.threads);
  }
  return key;
}

std::vector<int> divisors(int n) {
  std::vector<int> out;
  for (int d = 1; d <= n; ++d) {
    if (n % d == 0) out.push_back(d);
  }
  return out;
}

// Per-repetition aggregate ms/pixel from a bench row: each repetition's time is the slowest
// worker's sum of batch times (samples_ms holds worker 0's reps x batches, then worker 1's...).
std::vector<double> per_rep_ms_per_pixel(const BenchRow& row) {
  std::vector<double> out;
  const size_t per_worker = static_cast<size_t>(row.reps) * static_cast<size_t>(row.batches);
  if (row.status != RowStatus::kOk || per_worker == 0 ||
      row.samples_ms.size() != per_worker * static_cast<size_t>(row.workers))
    return out;
  for (int rep = 0; rep < row.reps; ++rep) {
    double slowest = 0;
    for (int w = 0; w < row.workers; ++w) {
      const auto first =
          row.samples_ms.begin() + static_cast<std::ptrdiff_t>(w * per_worker + rep * row.batches);
      slowest = std::max(slowest, std::accumulate(first, first + row.batches, 0.0));
    }
    out.push_back(slowest / static_cast<double>(row.pixels));
  }
  return out;
}

void set_measurement(CandidateResult& r, const Measurement& m, int64_t work) {
  r.last = m;
  r.work = work;
  r.seconds += m.seconds;
  ++r.rounds;
  if (measured_ok(m)) {
    r.mean = summarize(m.ms_per_pixel).mean;
    r.ci95 = confidence95(m.ms_per_pixel);
  }
}

}  // namespace

double confidence95(const std::vector<double>& samples) {
  if (samples.size() < 2) return 0;
  const SampleStats s = summarize(samples);
  const size_t df = samples.size() - 1;
  const double t = df <= 30 ? kT975[df - 1] : 1.960;
  return t * s.sd / std::sqrt(static_cast<double>(samples.size()));
}

namespace {

// "ort fp32 core b=256": a candidate in progress lines.
std::string candidate_label(const TuneCandidate& c) {
  return fmt::format("{} b={}", c.group(), c.batch);
}

// "0.0123 ms/px ± 0.0004" or the failed status: a measurement in progress lines.
std::string measured_label(const CandidateResult& r) {
  if (!measured_ok(r.last)) return r.outcome;
  return fmt::format("{:.4f} ms/px ± {:.4f}", r.mean, r.ci95);
}

// One successive-halving search (see tune.h): the candidates' results, those still in it, and
// what every measurement so far cost (to predict the next one).
class HalvingSearch {
 public:
  HalvingSearch(const std::vector<TuneCandidate>& candidates, const SearchOptions& options,
                const MeasureFn& measure)
      : candidates_(candidates), options_(options), measure_(measure) {
    results_.resize(candidates.size());
    for (size_t i = 0; i < candidates.size(); ++i) results_[i].candidate = candidates[i];
    alive_.resize(candidates.size());
    std::iota(alive_.begin(), alive_.end(), 0);
  }

  SearchResult run() {
    int64_t work = options_.initial_work;
    while (true) {
      if (result_.rounds > 0) {
        // The next round multiplies the work by `growth`, or by less if only that fits.
        const int growth = next_growth(results_, alive_, options_, spent_s());
        if (growth < 2) {
          result_.budget_stop = true;
          break;
        }
        work *= growth;
      }
      ++result_.rounds;
      const bool cut = measure_round(work);
      result_.final_work = work;
      keep_measured();
      if (cut) {
        result_.cut_round = result_.rounds;
        result_.budget_stop = alive_.size() > 1;
        break;
      }
      if (alive_.size() == 1) break;
      const size_t keep = (alive_.size() + 1) / 2;
      for (size_t k = keep; k < alive_.size(); ++k)
        results_[alive_[k]].outcome = fmt::format("out in round {}", result_.rounds);
      alive_.resize(keep);
      if (keep == 1) break;
    }
    result_.elapsed_s = spent_s();
    rank();
    return result_;
  }

 private:
  // Seconds of the budget spent so far.
  double spent_s() const { return options_.elapsed_s ? options_.elapsed_s() : result_.seconds; }

  void say(const std::function<void(const std::string&)>& to, const std::string& line) const {
    if (to) to(line);
  }

  // The candidates still in the search, one group after the other in candidate order, starting
  // with the group measured last: a measure function that keeps a group's engines alive
  // builds each at most once a round.
  std::vector<int> round_order() const {
    std::vector<int> order = alive_;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      const bool a_last = candidates_[a].group() == last_group_;
      const bool b_last = candidates_[b].group() == last_group_;
      if (a_last != b_last) return a_last;
      return a < b;
    });
    return order;
  }

  // Measures the round's candidates at `work`, each unless it is predicted not to finish in the
  // time left. Returns whether one was left out (the round was cut short).
  bool measure_round(int64_t work) {
    const std::vector<int> order = round_order();
    bool cut = false;
    int measured = 0;
    for (size_t k = 0; k < order.size(); ++k) {
      CandidateResult& r = results_[order[k]];
      const std::string where = fmt::format("round {} {}/{}: {}", result_.rounds, k + 1,
                                            order.size(), candidate_label(r.candidate));
      const double predicted = predicted_measurement_s(r.candidate, work);
      const double left = options_.budget_s - spent_s();
      if (predicted >= 0 && predicted > left) {
        cut = true;
        if (r.rounds == 0) r.outcome = kNotMeasured;
        say(options_.done, fmt::format("{}: not measured, {:.1f} s predicted, {:.1f} s left", where,
                                       predicted, std::max(0.0, left)));
        continue;
      }
      say(options_.progress, where);
      measure_one(r, work);
      ++measured;
      say(options_.done,
          fmt::format("{}: {}, {:.1f} s ({:.1f} s of {:.0f} s spent)", where, measured_label(r),
                      r.last.seconds, spent_s(), options_.budget_s));
    }
    say(options_.done,
        fmt::format(
            "round {} done: {} of {} measured at {} px/job/rep, {:.1f} s of {:.0f} s spent{}",
            result_.rounds, measured, order.size(), work, spent_s(), options_.budget_s,
            cut ? ", cut short by the budget" : ""));
    return cut;
  }

  void measure_one(CandidateResult& r, int64_t work) {
    last_group_ = r.candidate.group();
    const Measurement m = measure_(r.candidate, work);
    set_measurement(r, m, work);
    history_.push_back({r.candidate, work, m});
    result_.seconds += m.seconds;
    result_.session_s += m.session_s;
    if (++result_.measurements == 1 && m.seconds > options_.budget_s)
      result_.first_over_budget_s = m.seconds;
    if (!measured_ok(m))
      r.outcome = m.status == RowStatus::kOk ? "no samples" : row_status_name(m.status);
  }

  // What measuring `c` at `work` is predicted to cost, from the measurements so far: the timed
  // part at the slowest rate per pixel of a worker that the same group measured (else any group:
  // a worker with fewer threads than the one measured is taken as that much slower, one with
  // more as no faster), plus an engine build as long as the slowest so far when the group's
  // engines are not the ones alive (else as the group's cheapest). Negative before any
  // measurement ran ok.
  double predicted_measurement_s(const TuneCandidate& c, int64_t work) const {
    const bool group_seen = std::any_of(history_.begin(), history_.end(), [&](const Done& d) {
      return d.candidate.group() == c.group() && measured_ok(d.m);
    });
    double rate = -1, build = -1, same_group_build = -1;
    for (const Done& d : history_) {
      const bool same = d.candidate.group() == c.group();
      build = std::max(build, d.m.session_s);
      if (same) {
        same_group_build =
            same_group_build < 0 ? d.m.session_s : std::min(same_group_build, d.m.session_s);
      }
      if (!measured_ok(d.m) || (group_seen && !same)) continue;
      const double pixels = batches_for(static_cast<double>(d.work), d.candidate.batch) *
                            static_cast<double>(d.candidate.batch);
      const double fewer_threads = static_cast<double>(std::max(1, d.candidate.threads)) /
                                   static_cast<double>(std::max(1, c.threads));
      rate = std::max(
          rate, std::max(0.0, d.m.seconds - d.m.session_s) / pixels * std::max(1.0, fewer_threads));
    }
    if (rate < 0) return -1;
    const double timed =
        rate * batches_for(static_cast<double>(work), c.batch) * static_cast<double>(c.batch);
    return timed + (c.group() == last_group_ && same_group_build >= 0 ? same_group_build : build);
  }

  // Drops the candidates that failed or were never measured, and sorts the rest by mean.
  void keep_measured() {
    std::erase_if(alive_, [&](int i) { return !measured_ok(results_[i].last); });
    if (alive_.empty()) {
      const Measurement& first = history_.front().m;
      const TuneCandidate& c = history_.front().candidate;
      throw Error(
          fmt::format("tune: every candidate failed ({} at layout {} batch {}{})",
                      row_status_name(first.status), c.layout, c.batch,
                      first.status == RowStatus::kError ? ": " + first.error : std::string()));
    }
    std::stable_sort(alive_.begin(), alive_.end(),
                     [&](int a, int b) { return results_[a].mean < results_[b].mean; });
  }

  // The ranking: the winner; then by rounds survived (desc), mean (asc); failed ones, then
  // those never measured, last.
  void rank() {
    for (size_t k = 1; k < alive_.size(); ++k) results_[alive_[k]].outcome = "left at budget";
    results_[alive_[0]].outcome = "winner";
    const int winner = alive_[0];
    std::vector<int> order(results_.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      const bool ok_a = measured_ok(results_[a].last), ok_b = measured_ok(results_[b].last);
      if ((a == winner) != (b == winner)) return a == winner;
      if (ok_a != ok_b) return ok_a;
      if (results_[a].rounds != results_[b].rounds) return results_[a].rounds > results_[b].rounds;
      return results_[a].mean < results_[b].mean;
    });
    for (int i : order) result_.ranking.push_back(results_[i]);
  }

  struct Done {
    TuneCandidate candidate;
    int64_t work = 0;
    Measurement m;
  };

  const std::vector<TuneCandidate>& candidates_;
  const SearchOptions& options_;
  const MeasureFn& measure_;
  SearchResult result_;
  std::vector<CandidateResult> results_;
  std::vector<int> alive_;     // indices into results_, by mean after each round
  std::vector<Done> history_;  // every measurement, in order
  std::string last_group_;     // of the last measurement
};

}  // namespace

SearchResult successive_halving(const std::vector<TuneCandidate>& candidates,
                                const SearchOptions& options, const MeasureFn& measure) {
  if (candidates.empty()) throw UsageError("tune has no candidates to measure");
  if (options.initial_work < 1)
    throw UsageError(
        fmt::format("--start-pixels must be at least 1 (got {})", options.initial_work));
  if (options.growth < 2)
    throw UsageError(fmt::format("--growth must be at least 2 (got {})", options.growth));
  if (!(options.budget_s > 0))
    throw UsageError(fmt::format("--budget must be positive (got {})", options.budget_s));
  return HalvingSearch(candidates, options, measure).run();
}

std::vector<std::string> candidate_layouts(const MachineInfo& machine) {
  std::vector<std::string> names = {"single", "core", "numa"};
  std::map<int, int> nodes_per_package;
  for (const auto& node : machine.numa_nodes) ++nodes_per_package[node.package];
  std::set<int> ks;
  for (const auto& [package, count] : nodes_per_package) {
    for (int k : divisors(count)) {
      if (k > 1) ks.insert(k);
    }
  }
  for (int k : ks) names.push_back(fmt::format("numa:{}", k));
  if (!machine.l3_domains.empty()) names.push_back("l3");
  for (int j : divisors(machine.cores)) names.push_back(fmt::format("{}x{}", j, machine.cores / j));

  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& name : names) {
    try {
      const Plan plan = plan_layout(machine, name, MemoryPolicy::kLocal);
      if (plan.workers.empty()) continue;
      if (seen.insert(plan_key(plan)).second) out.push_back(name);
    } catch (const UsageError&) {
      // A layout this machine cannot have (e.g. numa without NUMA nodes holding cores).
    }
  }
  return out;
}

std::vector<TuneCandidate> make_candidates(const MachineInfo& machine,
                                           const std::vector<std::string>& layouts,
                                           const std::vector<int64_t>& batches,
                                           const std::string& membind) {
  if (layouts.empty()) throw UsageError("--layouts needs at least one layout");
  if (batches.empty()) throw UsageError("-b needs at least one batch size");
  for (int64_t b : batches) {
    if (b < 1) throw UsageError(fmt::format("batch size must be at least 1 (got {})", b));
  }
  const MemoryPolicy policy = parse_memory_policy(membind);
  std::vector<TuneCandidate> out;
  std::set<std::string> seen;
  for (const auto& layout : layouts) {
    const Plan plan = plan_layout(machine, layout, policy);
    if (plan.workers.empty() || !seen.insert(plan_key(plan)).second) continue;
    std::set<int64_t> seen_batch;
    for (int64_t b : batches) {
      if (!seen_batch.insert(b).second) continue;
      out.push_back(
          {layout, static_cast<int>(plan.workers.size()), plan.workers.front().threads, b});
    }
  }
  return out;
}

double parse_budget(const std::string& text) {
  const auto bad = [&] {
    return UsageError(fmt::format("--budget {}: expected seconds, e.g. 120, 120s, 2m or 1h", text));
  };
  if (text.empty()) throw bad();
  double scale = 1;
  std::string number = text;
  switch (text.back()) {
    case 's':
      number.pop_back();
      break;
    case 'm':
      scale = 60;
      number.pop_back();
      break;
    case 'h':
      scale = 3600;
      number.pop_back();
      break;
    default:
      break;
  }
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(number, &used);
  } catch (const std::exception&) {
    throw bad();
  }
  if (used != number.size() || !(value > 0) || !std::isfinite(value)) throw bad();
  return value * scale;
}

namespace {

// How tune measures: as `bench` would, on one device, options.reps repetitions.
BenchOptions tune_bench_options(const TuneOptions& options) {
  BenchOptions bench;
  bench.model_path = options.model_path;
  bench.devices = {options.device};
  bench.reps = options.reps;
  bench.warmup = 1;
  bench.membind = options.membind;
  bench.spinning = options.spinning;
  bench.s2_steps = options.s2_steps;
  bench.s1_steps = options.s1_steps;
  return bench;
}

// Batches per repetition for `work` pixels per job (at least one).
int timed_batches(const TuneCandidate& c, int64_t work) {
  return static_cast<int>(
      std::max<int64_t>(1, std::llround(static_cast<double>(work) / static_cast<double>(c.batch))));
}

Measurement to_measurement(const BenchRow& row, double seconds, double session_s) {
  Measurement m;
  m.seconds = seconds;
  m.session_s = session_s;
  m.status = row.status;
  m.error = row.error;
  m.ms_per_pixel = per_rep_ms_per_pixel(row);
  return m;
}

// The engine a candidate runs on `device`.
EngineSpec candidate_engine(const TuneCandidate& c, const Device& device) {
  return resolve_engine_spec(c.engine, device, c.precision);
}

// The engines of the search (engines x precisions on the device, each checked against this
// machine and the model); a combination an engine cannot run is described in `skipped`.
std::vector<EngineSpec> search_engines(const TuneOptions& options,
                                       std::vector<std::string>& skipped) {
  std::vector<EngineSpec> specs;
  for (const auto& engine : options.engines) {
    for (const auto& precision : options.precisions) {
      const std::string why = engine_cannot_run(engine, options.device, precision);
      if (!why.empty()) {
        skipped.push_back(fmt::format("{} {}: {}", engine,
                                      precision ? precision_name(*precision) : "(default)", why));
        continue;
      }
      EngineSpec spec = resolve_engine_spec(engine, options.device, precision);
      check_engine_can_run(spec, options.model_path);
      const bool seen = std::any_of(specs.begin(), specs.end(),
                                    [&](const EngineSpec& s) { return s.label() == spec.label(); });
      if (!seen) specs.push_back(std::move(spec));
    }
  }
  if (specs.empty()) throw UsageError("tune: no engine can run: " + skipped.front());
  return specs;
}

// Every candidate of every engine: make_candidates once per engine of the search.
std::vector<TuneCandidate> engine_candidates(const std::vector<TuneCandidate>& placements,
                                             const std::vector<EngineSpec>& engines) {
  std::vector<TuneCandidate> out;
  for (const EngineSpec& engine : engines) {
    for (TuneCandidate c : placements) {
      c.engine = engine.backend;
      c.precision = engine.precision;
      out.push_back(std::move(c));
    }
  }
  return out;
}

// The profile of the search's winner.
Profile winner_profile(const TuneOptions& options, const MachineInfo& machine,
                       const ModelFingerprint& model, const SearchResult& search) {
  const CandidateResult& winner = search.ranking.front();
  Profile p;
  p.machine = machine_fingerprint(machine, winner.candidate.engine,
                                  backend_version(winner.candidate.engine));
  p.model = model;
  p.device = candidate_engine(winner.candidate, options.device).device.name();
  p.engine = winner.candidate.engine;
  p.precision = precision_name(winner.candidate.precision);
  p.plan = {winner.candidate.layout, winner.candidate.batch, winner.candidate.workers,
            winner.candidate.threads, options.membind};
  p.ranking = ranking_json(search.ranking);
  nlohmann::json not_measured = nlohmann::json::array();
  for (const auto& r : search.ranking)
    if (r.outcome == kNotMeasured) not_measured.push_back(candidate_label(r.candidate));
  p.search = {{"rounds", search.rounds},       {"measurements", search.measurements},
              {"seconds", search.seconds},     {"elapsed_s", search.elapsed_s},
              {"session_s", search.session_s}, {"budget_s", options.budget_s},
              {"reps", options.reps},          {"final_pixels_per_job", search.final_work},
              {"cut_round", search.cut_round}, {"not_measured", not_measured}};
  return p;
}

// --verify: every candidate measured as bench would, at the last round's length; the sweep's
// best, the gap between the search's winner and it, and tune's time over the sweep's.
void verify_by_sweep(const std::vector<TuneCandidate>& candidates, const TuneOptions& options,
                     const MeasureFn& measure_as_bench, TuneResult& result) {
  const CandidateResult& winner = result.search.ranking.front();
  result.verified = true;
  SweepResult& sweep = result.sweep;
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (options.progress) {
      options.progress(fmt::format("verify sweep: {} b={} ({}/{})", candidates[i].group(),
                                   candidates[i].batch, i + 1, candidates.size()));
    }
    CandidateResult r;
    r.candidate = candidates[i];
    set_measurement(r, measure_as_bench(candidates[i], result.search.final_work),
                    result.search.final_work);
    r.outcome = measured_ok(r.last) ? "ok" : row_status_name(r.last.status);
    sweep.seconds += r.last.seconds;
    if (options.done) {
      options.done(fmt::format("verify sweep {}/{}: {}: {}, {:.1f} s", i + 1, candidates.size(),
                               candidate_label(r.candidate), measured_label(r), r.last.seconds));
    }
    sweep.rows.push_back(r);
  }
  for (size_t i = 0; i < sweep.rows.size(); ++i) {
    if (!measured_ok(sweep.rows[i].last)) continue;
    if (sweep.best < 0 || sweep.rows[i].mean < sweep.rows[sweep.best].mean)
      sweep.best = static_cast<int>(i);
  }
  if (sweep.best >= 0) {
    sweep.rows[sweep.best].outcome = "best";
    for (const auto& r : sweep.rows) {
      if (r.candidate.group() == winner.candidate.group() &&
          r.candidate.batch == winner.candidate.batch && measured_ok(r.last))
        result.gap_percent = 100.0 * (r.mean / sweep.rows[sweep.best].mean - 1.0);
    }
  }
  result.time_fraction = sweep.seconds > 0 ? result.search.seconds / sweep.seconds : 0;
}

}  // namespace

TuneResult tune(const TuneOptions& options) {
  const auto start = Clock::now();  // the budget counts from here
  if (options.reps < 2)
    throw UsageError(fmt::format("--reps must be at least 2 (got {})", options.reps));
  const MachineInfo machine = Topology::this_machine().info();
  const ModelFingerprint model = model_fingerprint(options.model_path);
  const std::vector<std::string> layouts =
      options.layouts.empty() ? candidate_layouts(machine) : options.layouts;
  TuneResult result;
  const auto candidates =
      engine_candidates(make_candidates(machine, layouts, options.batch_sizes, options.membind),
                        search_engines(options, result.skipped));
  const BenchOptions bench = tune_bench_options(options);
  check_bench_steps(bench);
  const ModelShape shape = read_model_shape(options.model_path);
  const StepCounts steps = bench_steps(bench, shape);
  result.s2_steps = steps.s2;
  result.s1_steps = steps.s1;
  result.symbolic_steps = shape.symbolic_steps;
  // The exhaustive sweep of --verify measures as `tessera bench` does: new sessions per case,
  // which get the two warm-up batches a fresh session needs (as in the pools below).
  const MeasureFn measure_as_bench = [&](const TuneCandidate& c, int64_t work) {
    BenchOptions o = bench;
    o.batches = timed_batches(c, work);
    o.warmup = std::max(2, bench.warmup);
    const auto start = Clock::now();
    const BenchRow row =
        run_bench_case(o, machine, candidate_engine(c, options.device), c.layout, c.batch);
    return to_measurement(row, seconds_since(start), row.session_s);
  };
  // The search keeps one group's workers and engines alive while it measures that group's
  // candidates (successive_halving measures them one group after the other: same engine,
  // precision and layout), built once for the group's largest batch. A group whose pool cannot
  // be built for lack of memory falls back to one session per measurement.
  std::map<std::string, int64_t> largest_batch;
  for (const auto& c : candidates)
    largest_batch[c.group()] = std::max(largest_batch[c.group()], c.batch);
  std::unique_ptr<BenchPool> pool;
  std::string pool_group;
  const MeasureFn measure = [&](const TuneCandidate& c, int64_t work) {
    const auto start = Clock::now();
    double session_s = 0;
    bool fresh = false;  // the pool was built for this measurement
    if (!pool || pool_group != c.group()) {
      pool.reset();
      try {
        pool = std::make_unique<BenchPool>(bench, machine, candidate_engine(c, options.device),
                                           c.layout, largest_batch[c.group()]);
        pool_group = c.group();
        session_s = pool->session_s();
        fresh = true;
      } catch (const OutOfMemoryError&) {
        return measure_as_bench(c, work);
      }
    }
    // A new session's first runs are slow (docs/PERFORMANCE.md: the first two, when ORT's
    // memory pattern is on, as on CUDA sessions): a pool's first measurement warms up with two
    // batches at least, a batch size new to it later with one.
    const int warmup = fresh ? std::max(2, bench.warmup) : bench.warmup;
    const BenchRow row = pool->measure(c.batch, timed_batches(c, work), warmup);
    return to_measurement(row, seconds_since(start), session_s);
  };

  SearchOptions search;
  search.initial_work =
      options.initial_work > 0
          ? options.initial_work
          : 2 * *std::min_element(options.batch_sizes.begin(), options.batch_sizes.end());
  search.budget_s = options.budget_s;
  search.elapsed_s = [start] { return seconds_since(start); };
  search.growth = options.growth;
  search.progress = options.progress;
  search.done = options.done;

  result.search = successive_halving(candidates, search, measure);
  pool.reset();
  result.profile = winner_profile(options, machine, model, result.search);
  result.within_noise = ranking_within_noise(result.profile.ranking);
  result.profile.search["within_noise"] = result.within_noise;
  result.profile.search["s2_steps"] = result.s2_steps;
  result.profile.search["s1_steps"] = result.s1_steps;
  if (options.verify) verify_by_sweep(candidates, options, measure_as_bench, result);
  return result;
}

std::vector<CandidateResult> fastest_first(std::vector<CandidateResult> rows) {
  std::stable_sort(rows.begin(), rows.end(),
                   [](const CandidateResult& a, const CandidateResult& b) {
                     const bool a_ok = measured_ok(a.last), b_ok = measured_ok(b.last);
                     if (a_ok != b_ok) return a_ok;
                     return a_ok && a.mean < b.mean;
                   });
  return rows;
}

nlohmann::json ranking_json(const std::vector<CandidateResult>& ranking) {
  nlohmann::json rows = ranking_table(ranking).to_json();
  for (size_t i = 0; i < ranking.size(); ++i) {
    const std::vector<double>& samples = ranking[i].last.ms_per_pixel;
    nlohmann::json& row = rows[i];
    row["samples_ms_per_pixel"] = measured_ok(ranking[i].last) ? samples : std::vector<double>{};
    if (!measured_ok(ranking[i].last)) {
      for (const char* key :
           {"median_ms_per_pixel", "min_ms_per_pixel", "max_ms_per_pixel", "sd_ms_per_pixel"})
        row[key] = nullptr;
      continue;
    }
    const SampleStats s = summarize(samples);
    row["median_ms_per_pixel"] = s.median;
    row["min_ms_per_pixel"] = s.min;
    row["max_ms_per_pixel"] = s.max;
    row["sd_ms_per_pixel"] = s.sd;
  }
  return rows;
}

Table ranking_table(const std::vector<CandidateResult>& ranking) {
  Table table({{"rank", "rank"},
               {"layout", "layout", -1, false},
               {"workers", "jobs"},
               {"threads", "threads/job"},
               {"batch", "batch"},
               {"rounds", "rounds"},
               {"pixels_per_job", "px/job/rep"},
               {"ms_per_pixel", "ms/px", 4},
               {"ci95", "± 95% CI", 4},
               {"pixels_per_s", "px/s", 1},
               {"seconds", "s spent", 2},
               {"engine", "engine", -1, false},
               {"outcome", "outcome", -1, false}});
  int rank = 0;
  for (const auto& r : ranking) {
    const bool ok = measured_ok(r.last);
    auto num = [&](double v) { return ok ? nlohmann::json(v) : nlohmann::json(); };
    // What ran: whole batches, at least one.
    const int64_t batches = std::max<int64_t>(
        1, std::llround(static_cast<double>(r.work) / static_cast<double>(r.candidate.batch)));
    table.add_row({++rank, r.candidate.layout, r.candidate.workers, r.candidate.threads,
                   r.candidate.batch, r.rounds, batches * r.candidate.batch, num(r.mean),
                   num(r.ci95), num(r.mean > 0 ? 1e3 / r.mean : 0), r.seconds,
                   r.candidate.engine_label(), r.outcome});
  }
  return table;
}

namespace {

// "within noise: ..." when the best two candidates' ranges overlap, else "".
std::string noise_line(const TuneResult& result) {
  const auto& ranking = result.search.ranking;
  if (!result.within_noise || ranking.size() < 2) return "";
  const auto range = [](const CandidateResult& r) {
    const SampleStats s = summarize(r.last.ms_per_pixel);
    return fmt::format("{} {:.4f}-{:.4f}", candidate_label(r.candidate), s.min, s.max);
  };
  return fmt::format(
      "within noise: the best two overlap (ms/pixel per repetition: {} and {}); either would "
      "do, a longer --budget or more --reps can separate them\n",
      range(ranking[0]), range(ranking[1]));
}

// What the budget cut: the first measurement alone over it, and the candidates never measured.
std::string budget_lines(const SearchResult& s, double budget_s) {
  std::string out;
  if (s.first_over_budget_s > 0) {
    out += fmt::format(
        "budget: the first measurement alone took {:.1f} s, more than the {:.0f} s budget (a "
        "larger --budget, or a smaller --start-pixels or batch, measures more)\n",
        s.first_over_budget_s, budget_s);
  }
  std::vector<std::string> left_out;
  for (const auto& r : s.ranking)
    if (r.outcome == kNotMeasured) left_out.push_back(candidate_label(r.candidate));
  if (s.cut_round > 0) {
    out += fmt::format("budget: round {} cut short", s.cut_round);
    if (!left_out.empty())
      out += fmt::format("; {} of {} candidates not measured: {}", left_out.size(),
                         s.ranking.size(), fmt::join(left_out, ", "));
    out += "\n";
  }
  return out;
}

}  // namespace

std::string tune_summary(const TuneResult& result, double budget_s) {
  const SearchResult& s = result.search;
  const CandidateResult& w = s.ranking.front();
  std::string out = fmt::format(
      "best: {}, {} ({} job(s) x {} thread(s)), batch {}: {:.4f} ± {:.4f} ms/pixel (95% CI), "
      "{:.0f} px/s\n",
      w.candidate.engine_label(), w.candidate.layout, w.candidate.workers, w.candidate.threads,
      w.candidate.batch, w.mean, w.ci95, 1e3 / w.mean);
  out += noise_line(result);
  if (result.symbolic_steps) {
    out += fmt::format("steps: every run at {} + {} steps (S2 + S1; --steps sets them)\n",
                       result.s2_steps, result.s1_steps);
  }
  out += fmt::format(
      "search: {} round(s), {} measurements, {:.1f} s of a {:.0f} s budget (measuring {:.1f} s, "
      "engine builds {:.1f} s){}\n",
      s.rounds, s.measurements, s.elapsed_s, budget_s, s.seconds, s.session_s,
      s.budget_stop ? "; stopped by the budget with several candidates left" : "");
  out += budget_lines(s, budget_s);
  if (result.verified && result.sweep.best >= 0) {
    const CandidateResult& b = result.sweep.rows[result.sweep.best];
    const std::string choice =
        std::isnan(result.gap_percent)
            ? fmt::format("tune's choice {} batch {} did not run ok in the sweep",
                          w.candidate.layout, w.candidate.batch)
            : fmt::format("tune's choice {} batch {} is {:.1f} % slower", w.candidate.layout,
                          w.candidate.batch, result.gap_percent);
    out += fmt::format(
        "verify: sweep of {} candidates at {} px/job/rep took {:.1f} s; sweep best {} batch {} "
        "{:.4f} ms/pixel; {}; tune used {:.0f} % of the sweep's time\n",
        result.sweep.rows.size(), s.final_work, result.sweep.seconds, b.candidate.layout,
        b.candidate.batch, b.mean, choice, 100.0 * result.time_fraction);
  }
  return out;
}

}  // namespace tessera
