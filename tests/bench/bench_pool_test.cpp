// BenchPool: one layout's workers and sessions kept alive between measurements.

#include <gtest/gtest.h>

#include <string>

#include "tessera/bench/bench.h"
#include "tessera/common/error.h"
#include "test_models.h"
#include "test_support.h"

namespace tessera {
namespace {

const testing::ProcessTestDir kTestDir("bench_pool_test");
const std::string& kDir = kTestDir.path();

BenchOptions tiny_options() {
  BenchOptions options;
  options.model_path =
      testing::write_test_model(kDir, "tiny.onnx", testing::tiny_model_config(12, 8));
  options.reps = 3;
  options.warmup = 1;
  return options;
}

TEST(BenchPool, MeasuresManyBatchSizesOnOneSetOfSessions) {
  const BenchOptions options = tiny_options();
  const MachineInfo machine = Topology::this_machine().info();
  BenchPool pool(options, machine, "cpu", "single:1", 16);
  EXPECT_EQ(pool.layout(), "single:1");
  EXPECT_EQ(pool.max_batch(), 16);
  EXPECT_GT(pool.session_s(), 0.0);
  for (const auto& [batch, batches] : {std::pair<int64_t, int>{4, 2}, {16, 1}, {4, 3}}) {
    const BenchRow row = pool.measure(batch, batches, options.warmup);
    EXPECT_EQ(row.status, "ok");
    EXPECT_EQ(row.batch, batch);
    EXPECT_EQ(row.batches, batches);
    EXPECT_EQ(row.workers, 1);
    EXPECT_EQ(row.pixels, batch * batches);
    EXPECT_EQ(row.samples_ms.size(), static_cast<size_t>(3 * batches));  // reps x batches
    EXPECT_EQ(row.session_s, 0.0);
    EXPECT_GT(row.ms_per_pixel, 0.0);
  }
  try {
    pool.measure(17, 1, 1);
    FAIL() << "a batch above the pool's sessions was accepted";
  } catch (const UsageError& e) {
    EXPECT_STREQ(e.what(), "batch 17 is outside this pool's 1..16");
  }
}

TEST(BenchPool, EveryWorkerOfTheLayoutMeasures) {
  const BenchOptions options = tiny_options();
  const MachineInfo machine = Topology::this_machine().info();
  if (machine.cores < 2) GTEST_SKIP() << "needs 2 cores";
  BenchPool pool(options, machine, "cpu", "2x1", 8);
  const BenchRow row = pool.measure(8, 2, 1);
  EXPECT_EQ(row.workers, 2);
  EXPECT_EQ(row.pixels, 2 * 8 * 2);
  EXPECT_EQ(row.samples_ms.size(), static_cast<size_t>(2 * 3 * 2));  // workers x reps x batches
}

TEST(BenchPool, AModelThatCannotLoadFailsTheConstructor) {
  BenchOptions options = tiny_options();
  options.model_path = kDir + "/missing.onnx";
  const MachineInfo machine = Topology::this_machine().info();
  EXPECT_THROW(BenchPool(options, machine, "cpu", "single:1", 8), Error);
}

}  // namespace
}  // namespace tessera
