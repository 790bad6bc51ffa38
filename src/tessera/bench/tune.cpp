#include "tessera/bench/tune.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <numeric>
#include <set>

#include "tessera/bench/stats.h"
#include "tessera/common/clock.h"
#include "tessera/common/error.h"
#include "tessera/engine/engine_spec.h"
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

  SearchResult result;
  std::vector<CandidateResult> results(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) results[i].candidate = candidates[i];
  std::vector<int> alive(candidates.size());
  std::iota(alive.begin(), alive.end(), 0);
  int64_t work = options.initial_work;
  auto by_mean = [&](int a, int b) { return results[a].mean < results[b].mean; };
  std::string last_layout;

  while (true) {
    if (result.rounds > 0) {
      // The next round multiplies the work by `growth`, or by less if only that fits.
      const int growth = next_growth(results, alive, options, result.seconds);
      if (growth < 2) {
        result.budget_stop = true;
        break;
      }
      work *= growth;
    }
    ++result.rounds;
    // One layout after the other, in candidate order, starting with the layout measured last:
    // a measure function that keeps a layout's sessions alive builds each at most once a round.
    std::vector<int> order = alive;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      const bool a_last = candidates[a].group() == last_layout;
      const bool b_last = candidates[b].group() == last_layout;
      if (a_last != b_last) return a_last;
      return a < b;
    });
    for (size_t k = 0; k < order.size(); ++k) {
      CandidateResult& r = results[order[k]];
      last_layout = r.candidate.group();
      if (options.progress) {
        options.progress(fmt::format("round {}: {} b={} ({}/{})", result.rounds,
                                     r.candidate.group(), r.candidate.batch, k + 1, alive.size()));
      }
      const Measurement m = measure(r.candidate, work);
      set_measurement(r, m, work);
      result.seconds += m.seconds;
      result.session_s += m.session_s;
      ++result.measurements;
      if (!measured_ok(m))
        r.outcome = m.status == RowStatus::kOk ? "no samples" : row_status_name(m.status);
    }
    result.final_work = work;
    std::erase_if(alive, [&](int i) { return !measured_ok(results[i].last); });
    if (alive.empty()) {
      const Measurement& first = results[0].last;
      throw Error(fmt::format(
          "tune: every candidate failed ({} at layout {} batch {}{})",
          row_status_name(first.status), results[0].candidate.layout, results[0].candidate.batch,
          first.status == RowStatus::kError ? ": " + first.error : std::string()));
    }
    std::stable_sort(alive.begin(), alive.end(), by_mean);
    if (alive.size() == 1) break;
    const size_t keep = (alive.size() + 1) / 2;
    for (size_t k = keep; k < alive.size(); ++k)
      results[alive[k]].outcome = fmt::format("out in round {}", result.rounds);
    alive.resize(keep);
    if (keep == 1) break;
  }

  for (size_t k = 1; k < alive.size(); ++k) results[alive[k]].outcome = "left at budget";
  results[alive[0]].outcome = "winner";
  const int winner = alive[0];
  std::vector<int> order(results.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    const bool ok_a = measured_ok(results[a].last), ok_b = measured_ok(results[b].last);
    if ((a == winner) != (b == winner)) return a == winner;
    if (ok_a != ok_b) return ok_a;
    if (results[a].rounds != results[b].rounds) return results[a].rounds > results[b].rounds;
    return results[a].mean < results[b].mean;
  });
  for (int i : order) result.ranking.push_back(results[i]);
  return result;
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
EngineSpec candidate_engine(const TuneCandidate& c, const std::string& device) {
  return parse_engine_spec(c.engine, device, c.precision);
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
        skipped.push_back(
            fmt::format("{} {}: {}", engine, precision.empty() ? "(default)" : precision, why));
        continue;
      }
      EngineSpec spec = parse_engine_spec(engine, options.device, precision);
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
  p.machine = machine_fingerprint(machine, backend_version("ort"));
  p.model = model;
  p.device = candidate_engine(winner.candidate, options.device).device();
  p.engine = winner.candidate.engine;
  p.precision = winner.candidate.precision;
  p.plan = {winner.candidate.layout, winner.candidate.batch, winner.candidate.workers,
            winner.candidate.threads, options.membind};
  p.ranking = ranking_table(search.ranking).to_json();
  p.search = {{"rounds", search.rounds},
              {"measurements", search.measurements},
              {"seconds", search.seconds},
              {"session_s", search.session_s},
              {"budget_s", options.budget_s},
              {"reps", options.reps},
              {"final_pixels_per_job", search.final_work}};
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
  search.growth = options.growth;
  search.progress = options.progress;

  result.search = successive_halving(candidates, search, measure);
  pool.reset();
  result.profile = winner_profile(options, machine, model, result.search);
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

std::string tune_summary(const TuneResult& result, double budget_s) {
  const SearchResult& s = result.search;
  const CandidateResult& w = s.ranking.front();
  std::string out = fmt::format(
      "best: {}, {} ({} job(s) x {} thread(s)), batch {}: {:.4f} ± {:.4f} ms/pixel (95% CI), "
      "{:.0f} px/s\n",
      w.candidate.engine_label(), w.candidate.layout, w.candidate.workers, w.candidate.threads,
      w.candidate.batch, w.mean, w.ci95, 1e3 / w.mean);
  out += fmt::format(
      "search: {} round(s), {} measurements, {:.1f} s of a {:.0f} s budget (session creation "
      "{:.1f} s){}\n",
      s.rounds, s.measurements, s.seconds, budget_s, s.session_s,
      s.budget_stop ? "; stopped by the budget with several candidates left" : "");
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
