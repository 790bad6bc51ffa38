#include "tessera/infer/tile_dispatch.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <thread>
#include <utility>

#include "tessera/common/clock.h"

#ifdef TESSERA_HAVE_MPI
#include <mpi.h>
#endif

namespace tessera {
namespace {

// What one rank has done so far: its totals and the summaries of its tiles, keyed by index.
struct RankState {
  RankReport report;
  std::vector<std::pair<size_t, nlohmann::json>> tiles;

  void add(size_t index, const TileSummary& tile, bool with_rank) {
    if (tile.status != TileStatus::kDone) {
      ++report.tiles_skipped;  // outputs there already, or another run's lock held
    } else {
      ++report.tiles_done;
      report.pixels_total += tile.pixels_total;
      report.pixels_valid += tile.pixels_valid;
      report.tile_seconds += tile.seconds;
    }
    nlohmann::json json = tile_summary_json(tile);
    if (with_rank) json["rank"] = report.rank;
    tiles.emplace_back(index, std::move(json));
  }
};

nlohmann::json report_json(const RankReport& r) {
  return {{"rank", r.rank},
          {"host", r.host},
          {"placement", r.placement},
          {"tiles_done", r.tiles_done},
          {"tiles_skipped", r.tiles_skipped},
          {"pixels_total", r.pixels_total},
          {"pixels_valid", r.pixels_valid},
          {"tile_seconds", r.tile_seconds},
          {"wall_seconds", r.wall_seconds},
          {"px_per_s", r.pixels_per_second()}};
}

DispatchResult run_in_this_process(const MpiJob& job, size_t tile_count,
                                   const std::string& placement, const TileWork& work) {
  RankState state;
  state.report.host = job.host();
  state.report.placement = placement;
  const auto start = Clock::now();
  for (size_t i = 0; i < tile_count; ++i) state.add(i, work(i), false);
  state.report.wall_seconds = seconds_since(start);
  DispatchResult result;
  result.ranks.push_back(state.report);
  for (auto& tile : state.tiles) result.tiles.push_back(std::move(tile.second));
  result.wall_seconds = state.report.wall_seconds;
  return result;
}

#ifdef TESSERA_HAVE_MPI

RankReport report_from_json(const nlohmann::json& j) {
  RankReport r;
  r.rank = j.at("rank").get<int>();
  r.host = j.at("host").get<std::string>();
  r.placement = j.at("placement").get<std::string>();
  r.tiles_done = j.at("tiles_done").get<int64_t>();
  r.tiles_skipped = j.at("tiles_skipped").get<int64_t>();
  r.pixels_total = j.at("pixels_total").get<int64_t>();
  r.pixels_valid = j.at("pixels_valid").get<int64_t>();
  r.tile_seconds = j.at("tile_seconds").get<double>();
  r.wall_seconds = j.at("wall_seconds").get<double>();
  return r;
}

constexpr int kRequestTag = 101;  // rank r > 0 -> 0, empty: "give me a tile"
constexpr int kTileTag = 102;     // 0 -> rank r, one long long: tile index or -1 ("done")
constexpr auto kIdlePoll = std::chrono::milliseconds(1);

// Rank 0: serve the other ranks from the main thread while a second thread runs tiles too.
void coordinate(const MpiJob& job, size_t tile_count, const TileWork& work, RankState& state,
                Clock::time_point start) {
  std::atomic<long long> next{0};
  const auto count = static_cast<long long>(tile_count);
  auto take = [&] {
    const long long index = next.fetch_add(1);
    return index < count ? index : -1;
  };
  std::atomic<bool> local_finished{false};
  std::string local_error;  // written by the local thread before local_finished is set
  std::thread local([&] {
    try {
      for (long long i = take(); i >= 0; i = take()) {
        state.add(static_cast<size_t>(i), work(static_cast<size_t>(i)), true);
      }
    } catch (const std::exception& e) {
      local_error = e.what();
    } catch (...) {
      local_error = "unknown error while running a tile";
    }
    state.report.wall_seconds = seconds_since(start);
    local_finished.store(true, std::memory_order_release);
  });

  int ranks_left = job.size() - 1;  // ranks that have not yet been told "done"
  while (ranks_left > 0 || !local_finished.load(std::memory_order_acquire)) {
    if (local_finished.load(std::memory_order_acquire) && !local_error.empty()) {
      local.join();
      job.abort(local_error);
    }
    int pending = 0;
    MPI_Status status;
    MPI_Iprobe(MPI_ANY_SOURCE, kRequestTag, MPI_COMM_WORLD, &pending, &status);
    if (!pending) {
      std::this_thread::sleep_for(kIdlePoll);
      continue;
    }
    MPI_Recv(nullptr, 0, MPI_BYTE, status.MPI_SOURCE, kRequestTag, MPI_COMM_WORLD,
             MPI_STATUS_IGNORE);
    long long index = take();
    MPI_Send(&index, 1, MPI_LONG_LONG, status.MPI_SOURCE, kTileTag, MPI_COMM_WORLD);
    if (index < 0) --ranks_left;
  }
  local.join();
  if (!local_error.empty()) job.abort(local_error);
}

// Rank r > 0: ask rank 0 for tiles until it says "done".
void work_for_coordinator(const MpiJob& job, const TileWork& work, RankState& state,
                          Clock::time_point start) {
  try {
    for (;;) {
      MPI_Send(nullptr, 0, MPI_BYTE, 0, kRequestTag, MPI_COMM_WORLD);
      long long index = -1;
      MPI_Recv(&index, 1, MPI_LONG_LONG, 0, kTileTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      if (index < 0) break;
      state.add(static_cast<size_t>(index), work(static_cast<size_t>(index)), true);
    }
  } catch (const std::exception& e) {
    job.abort(e.what());
  }
  state.report.wall_seconds = seconds_since(start);
}

// Waits for every rank without spinning, so idle ranks leave the CPUs to busy ones.
void wait_for_all_ranks() {
  MPI_Request request;
  MPI_Ibarrier(MPI_COMM_WORLD, &request);
  for (int done = 0;;) {
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (done) return;
    std::this_thread::sleep_for(kIdlePoll);
  }
}

// Rank 0 receives every rank's report and tiles (as JSON text); others get their own back.
DispatchResult gather(const MpiJob& job, RankState& state, double wall_seconds) {
  nlohmann::json mine = report_json(state.report);
  mine["tiles"] = nlohmann::json::array();
  for (const auto& [index, tile] : state.tiles) mine["tiles"].push_back({index, tile});
  const std::string text = mine.dump();
  int length = static_cast<int>(text.size());
  std::vector<int> lengths(job.rank() == 0 ? job.size() : 0);
  MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::vector<int> offsets(lengths.size());
  int total = 0;
  for (size_t r = 0; r < lengths.size(); ++r) {
    offsets[r] = total;
    total += lengths[r];
  }
  std::string all(static_cast<size_t>(total), '\0');
  MPI_Gatherv(text.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR,
              0, MPI_COMM_WORLD);

  DispatchResult result;
  result.wall_seconds = wall_seconds;
  if (job.rank() != 0) {
    result.ranks.push_back(state.report);
    for (auto& tile : state.tiles) result.tiles.push_back(std::move(tile.second));
    return result;
  }
  std::vector<std::pair<size_t, nlohmann::json>> tiles;
  for (size_t r = 0; r < lengths.size(); ++r) {
    const auto json = nlohmann::json::parse(all.substr(offsets[r], lengths[r]));
    result.ranks.push_back(report_from_json(json));
    for (const auto& tile : json.at("tiles"))
      tiles.emplace_back(tile.at(0).get<size_t>(), tile.at(1));
  }
  std::sort(tiles.begin(), tiles.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& tile : tiles) result.tiles.push_back(std::move(tile.second));
  return result;
}

#endif

}  // namespace

double RankReport::pixels_per_second() const {
  return wall_seconds > 0 ? static_cast<double>(pixels_valid) / wall_seconds : 0.0;
}

DispatchResult dispatch_tiles(const MpiJob& job, size_t tile_count, const std::string& placement,
                              const TileWork& work) {
  if (!job.active()) return run_in_this_process(job, tile_count, placement, work);
#ifdef TESSERA_HAVE_MPI
  RankState state;
  state.report.rank = job.rank();
  state.report.host = job.host();
  state.report.placement = placement;
  MPI_Barrier(MPI_COMM_WORLD);
  const auto start = Clock::now();
  if (job.rank() == 0) {
    coordinate(job, tile_count, work, state, start);
  } else {
    work_for_coordinator(job, work, state, start);
  }
  wait_for_all_ranks();
  return gather(job, state, seconds_since(start));
#else
  return run_in_this_process(job, tile_count, placement, work);
#endif
}

Table rank_table(const DispatchResult& result) {
  Table table({{"rank", "rank"},
               {"host", "host", -1, false},
               {"placement", "placement", -1, false},
               {"tiles", "tiles"},
               {"skipped", "skipped"},
               {"pixels", "valid pixels"},
               {"seconds", "seconds", 1},
               {"px_per_s", "px/s", 0},
               {"tiles_per_s", "tiles/s", 3}});
  RankReport total;
  for (const auto& r : result.ranks) {
    table.add_row({r.rank, r.host, r.placement, r.tiles_done, r.tiles_skipped, r.pixels_valid,
                   r.wall_seconds, r.pixels_per_second(),
                   r.wall_seconds > 0 ? static_cast<double>(r.tiles_done) / r.wall_seconds : 0.0});
    total.tiles_done += r.tiles_done;
    total.tiles_skipped += r.tiles_skipped;
    total.pixels_valid += r.pixels_valid;
  }
  total.wall_seconds = result.wall_seconds;
  table.add_row(
      {"total", "", "", total.tiles_done, total.tiles_skipped, total.pixels_valid,
       total.wall_seconds, total.pixels_per_second(),
       total.wall_seconds > 0 ? static_cast<double>(total.tiles_done) / total.wall_seconds : 0.0});
  return table;
}

nlohmann::json rank_summary_json(const DispatchResult& result) {
  nlohmann::json ranks = nlohmann::json::array();
  RankReport total;
  for (const auto& r : result.ranks) {
    ranks.push_back(report_json(r));
    total.tiles_done += r.tiles_done;
    total.tiles_skipped += r.tiles_skipped;
    total.pixels_total += r.pixels_total;
    total.pixels_valid += r.pixels_valid;
    total.tile_seconds += r.tile_seconds;
  }
  total.wall_seconds = result.wall_seconds;
  return {{"ranks", ranks},
          {"total",
           {{"ranks", result.ranks.size()},
            {"tiles_done", total.tiles_done},
            {"tiles_skipped", total.tiles_skipped},
            {"pixels_total", total.pixels_total},
            {"pixels_valid", total.pixels_valid},
            {"tile_seconds", total.tile_seconds},
            {"wall_seconds", total.wall_seconds},
            {"px_per_s", total.pixels_per_second()},
            {"tiles_per_s", total.wall_seconds > 0
                                ? static_cast<double>(total.tiles_done) / total.wall_seconds
                                : 0.0}}}};
}

}  // namespace tessera
