#pragma once
// Dynamic hand-out of tiles over the ranks of an MpiJob, so fast and slow ranks both stay busy.
//
// Protocol (MPI point-to-point on MPI_COMM_WORLD): a rank r > 0 sends an empty request to
// rank 0 and receives the next tile index, or -1 for "no more"; it runs the tile and asks
// again. Rank 0 coordinates and also works: its main thread serves requests (MPI_Iprobe, then
// a short sleep when idle) while a second thread runs rank 0's own tiles; both take indexes
// from the same counter. Only rank 0's main thread calls MPI (MPI_THREAD_FUNNELED).
//
// Invariants: every index in [0, tile_count) is handed out exactly once, in ascending order;
// rank 0 sends exactly one -1 to each other rank. Ranks that finish early wait in a polled
// MPI_Ibarrier (sleeping, not spinning) so they leave the CPUs to ranks still working; then
// rank 0 gathers every rank's report and tile summaries.
//
// A tile that throws stops the whole job: the rank prints "tessera: [rank r] <message>" and
// calls MPI_Abort. Finished tiles stay finished; a rerun skips them (see runtime/tile_runner.h).
// In a job of one (no MPI) the tiles simply run in order and exceptions propagate.

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tessera/common/table.h"
#include "tessera/infer/mpi_job.h"
#include "tessera/runtime/tile_runner.h"

namespace tessera {

struct RankReport {
  int rank = 0;
  std::string host;
  std::string placement;  // how the rank placed its workers, as the caller described it
  int64_t tiles_done = 0;
  int64_t tiles_skipped = 0;  // outputs existed already, or another run held the lock
  int64_t pixels_total = 0;   // of the tiles done
  int64_t pixels_valid = 0;   // of the tiles done
  double tile_seconds = 0;    // sum of the tiles' own times
  double wall_seconds = 0;    // from the common start to this rank's last tile

  // Valid pixels per second of wall time (0 when nothing was done).
  double pixels_per_second() const;
};

struct DispatchResult {
  // Rank 0: every rank's report, in rank order. Other ranks: their own report only.
  std::vector<RankReport> ranks;
  // Rank 0: tile_summary_json of every tile in input order, each with "rank": who ran it.
  // Other ranks: their own tiles only.
  std::vector<nlohmann::json> tiles;
  double wall_seconds = 0;  // from the common start until every rank had finished
};

// Runs tile i on this process; the tile's own errors are exceptions.
using TileWork = std::function<TileSummary(size_t index)>;

// Hands the tiles [0, tile_count) out over `job`'s ranks and runs `work` for each one this
// rank receives. Collective: every rank of the job calls it with the same tile_count.
DispatchResult dispatch_tiles(const MpiJob& job, size_t tile_count, const std::string& placement,
                              const TileWork& work);

// The per-rank table: rank | host | placement | tiles | skipped | pixels | seconds | px/s,
// and a final "total" row (wall seconds of the whole job).
Table rank_table(const DispatchResult& result);

// {"ranks": [...], "total": {...}} for --summary.
nlohmann::json rank_summary_json(const DispatchResult& result);

}  // namespace tessera
