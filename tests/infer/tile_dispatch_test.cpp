// tile_source: list files and tile directories; dispatch_tiles in a job of one (no launcher).

#include "tessera/infer/tile_dispatch.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "tessera/common/error.h"
#include "tessera/infer/mpi_job.h"
#include "tessera/infer/tile_source.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::path(TESSERA_TEST_TMP) / "tile_dispatch" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void touch(const fs::path& path) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << "x";
}

std::string error_of(const std::string& path) {
  try {
    read_tile_source(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TileSource, DirectoryOfTilesInNameOrder) {
  const fs::path dir = fresh_dir("grid_dir");
  touch(dir / "grid_2" / "s2" / "bands.npy");  // nested
  touch(dir / "grid_1" / "bands.npy");         // flat
  fs::create_directories(dir / "not_a_tile");
  touch(dir / "notes.txt");
  // A tile synth is still writing, and the old copy of one it was replacing: not tiles yet.
  touch(dir / "grid_3.partial" / "s2" / "bands.npy");
  touch(dir / "grid_2.old-a1B2c3" / "s2" / "bands.npy");
  EXPECT_EQ(read_tile_source(dir.string()),
            (std::vector<std::string>{(dir / "grid_1").string(), (dir / "grid_2").string()}));
}

TEST(TileSource, DirectoryThatIsATile) {
  const fs::path dir = fresh_dir("one_tile");
  fs::create_directories(dir / "s2");
  EXPECT_EQ(read_tile_source(dir.string()), std::vector<std::string>{dir.string()});
}

TEST(TileSource, ListFileResolvesRelativeEntries) {
  const fs::path dir = fresh_dir("list");
  // A byte order mark, indented comments and entries, CRLF line ends.
  std::ofstream(dir / "tiles.txt")
      << "\xEF\xBB\xBF# tiles\r\n\n  # more\ngrid_a  \n\t/abs/grid_b\r\n";
  EXPECT_EQ(read_tile_source((dir / "tiles.txt").string()),
            (std::vector<std::string>{(dir / "grid_a").string(), "/abs/grid_b"}));
}

TEST(TileSource, ErrorsNameThePath) {
  const fs::path dir = fresh_dir("errors");
  EXPECT_EQ(error_of((dir / "missing").string()),
            (dir / "missing").string() + ": no such tile list or tile directory");
  EXPECT_EQ(error_of(dir.string()),
            dir.string() + ": no tile directories in it (a tile holds s2/ or bands.npy)");
}

TEST(MpiJob, PlainProcessIsAJobOfOne) {
  unsetenv("OMPI_COMM_WORLD_SIZE");
  unsetenv("PMI_SIZE");
  unsetenv("PMIX_RANK");
  EXPECT_FALSE(started_by_mpi_launcher());
  const MpiJob job;
  EXPECT_FALSE(job.active());
  EXPECT_EQ(job.rank(), 0);
  EXPECT_EQ(job.size(), 1);
}

TEST(MpiJob, WithoutMpiRefusesToBeOneOfMany) {
  if (built_with_mpi()) GTEST_SKIP() << "built with MPI: the launcher's job would be joined";
  setenv("OMPI_COMM_WORLD_SIZE", "3", 1);
  std::string message;
  try {
    const MpiJob job;
  } catch (const Error& e) {
    message = e.what();
  }
  unsetenv("OMPI_COMM_WORLD_SIZE");
  EXPECT_EQ(message,
            "this tessera was built without MPI (-DTESSERA_MPI=OFF) but started as one of 3 MPI "
            "processes; rebuild with MPI or run it without mpirun");
}

TEST(DispatchTiles, JobOfOneRunsEveryTileInOrder) {
  unsetenv("OMPI_COMM_WORLD_SIZE");
  const MpiJob job;
  std::vector<size_t> order;
  const DispatchResult result = dispatch_tiles(job, 3, "core: 2x1 on cpus 0-1", [&](size_t i) {
    order.push_back(i);
    TileSummary s;
    s.grid = "grid_" + std::to_string(i);
    s.status = i == 1 ? TileStatus::kSkipped : TileStatus::kDone;
    s.pixels_total = i == 1 ? 0 : 100;
    s.pixels_valid = i == 1 ? 0 : 90 + static_cast<int64_t>(i);
    s.seconds = 0.5;
    return s;
  });
  EXPECT_EQ(order, (std::vector<size_t>{0, 1, 2}));
  ASSERT_EQ(result.ranks.size(), 1u);
  const RankReport& r = result.ranks[0];
  EXPECT_EQ(r.rank, 0);
  EXPECT_EQ(r.placement, "core: 2x1 on cpus 0-1");
  EXPECT_EQ(r.tiles_done, 2);
  EXPECT_EQ(r.tiles_skipped, 1);
  EXPECT_EQ(r.pixels_total, 200);
  EXPECT_EQ(r.pixels_valid, 182);
  EXPECT_DOUBLE_EQ(r.tile_seconds, 1.0);
  ASSERT_EQ(result.tiles.size(), 3u);
  EXPECT_EQ(result.tiles[2]["grid"], "grid_2");
  EXPECT_FALSE(result.tiles[0].contains("rank"));  // a job of one names no ranks

  const Table table = rank_table(result);
  ASSERT_EQ(table.rows().size(), 2u);
  EXPECT_EQ(table.rows()[1][0], "total");
  EXPECT_EQ(table.rows()[1][3], 2);
  EXPECT_EQ(table.rows()[1][5], 182);
  const nlohmann::json summary = rank_summary_json(result);
  EXPECT_EQ(summary["total"]["tiles_done"], 2);
  EXPECT_EQ(summary["total"]["tiles_skipped"], 1);
  EXPECT_EQ(summary["total"]["pixels_valid"], 182);
  EXPECT_EQ(summary["ranks"][0]["placement"], "core: 2x1 on cpus 0-1");
}

TEST(DispatchTiles, JobOfOnePropagatesTileErrors) {
  unsetenv("OMPI_COMM_WORLD_SIZE");
  const MpiJob job;
  EXPECT_THROW(dispatch_tiles(job, 2, "", [](size_t) -> TileSummary { throw Error("bad tile"); }),
               Error);
}

}  // namespace
}  // namespace tessera
