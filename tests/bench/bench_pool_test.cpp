// BenchPool: one layout's workers and sessions kept alive between measurements.

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>

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

TEST(BenchPool, AWorkerThatFailsNeverLeavesAnotherWaiting) {
  // Two workers, 1 + 3 meetings: one fails in its warm-up, the other is told to stop at its
  // first meeting. Both must end, whatever the order, with the failure reported once.
  for (int round = 0; round < 20; ++round) {
    std::barrier<> meet(2);
    std::atomic<bool> failed{false};
    std::string errors[2];
    int meetings_seen[2] = {0, 0};
    std::mutex mutex;
    std::condition_variable wake;
    int finished = 0;
    const auto worker = [&](int index) {
      errors[index] = run_worker_phases(4, meet, failed, [&](const auto& next_phase) {
        if (index == 0) throw Error("out of memory");
        while (next_phase()) ++meetings_seen[index];
      });
      std::lock_guard lock(mutex);
      ++finished;
      wake.notify_all();
    };
    std::thread a(worker, 0), b(worker, 1);
    {
      std::unique_lock lock(mutex);
      if (!wake.wait_for(lock, std::chrono::seconds(10), [&] { return finished == 2; })) {
        std::fprintf(stderr, "a worker waits forever at the barrier (round %d)\n", round);
        std::_Exit(1);  // the threads cannot be joined
      }
    }
    a.join();
    b.join();
    EXPECT_EQ(errors[0], "out of memory");
    EXPECT_EQ(errors[1], "");
    EXPECT_EQ(meetings_seen[1], 0);
  }
}

TEST(BenchPool, MeasuresManyBatchSizesOnOneSetOfSessions) {
  const BenchOptions options = tiny_options();
  const MachineInfo machine = Topology::this_machine().info();
  BenchPool pool(options, machine, parse_engine_spec("ort", "cpu"), "single:1", 16);
  EXPECT_EQ(pool.layout(), "single:1");
  EXPECT_EQ(pool.max_batch(), 16);
  EXPECT_GT(pool.session_s(), 0.0);
  for (const auto& [batch, batches] : {std::pair<int64_t, int>{4, 2}, {16, 1}, {4, 3}}) {
    const BenchRow row = pool.measure(batch, batches, options.warmup);
    EXPECT_EQ(row.status, RowStatus::kOk);
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
  BenchPool pool(options, machine, parse_engine_spec("ort", "cpu"), "2x1", 8);
  const BenchRow row = pool.measure(8, 2, 1);
  EXPECT_EQ(row.workers, 2);
  EXPECT_EQ(row.pixels, 2 * 8 * 2);
  EXPECT_EQ(row.samples_ms.size(), static_cast<size_t>(2 * 3 * 2));  // workers x reps x batches
}

TEST(BenchPool, AModelThatCannotLoadFailsTheConstructor) {
  BenchOptions options = tiny_options();
  options.model_path = kDir + "/missing.onnx";
  const MachineInfo machine = Topology::this_machine().info();
  EXPECT_THROW(BenchPool(options, machine, parse_engine_spec("ort", "cpu"), "single:1", 8), Error);
}

// ---- the sweep around the cases ----

TEST(Bench, ACaseThatFailsIsAnErrorRowAndTheSweepGoesOn) {
  BenchOptions options;
  options.model_path = testing::write_batch_multiple_model(kDir, "multiple_of_4.onnx", 4);
  options.layouts = {"single:1"};
  options.batch_sizes = {4, 6, 8};
  options.batches = 1;
  options.reps = 1;
  options.warmup = 0;
  const BenchResult result = run_bench(options);
  ASSERT_EQ(result.rows.size(), 3u);
  EXPECT_EQ(result.rows[0].status, RowStatus::kOk);
  EXPECT_EQ(result.rows[2].status, RowStatus::kOk);
  const BenchRow& failed = result.rows[1];
  EXPECT_EQ(failed.status, RowStatus::kError);
  EXPECT_EQ(failed.batch, 6);
  EXPECT_EQ(failed.speedup, 0);
  EXPECT_EQ(failed.error.rfind("ort-cpu: inference failed (ONNX Runtime: ", 0), 0u) << failed.error;
  EXPECT_EQ(failed.error.find('\n'), std::string::npos) << failed.error;
  EXPECT_EQ(bench_failures(result),
            "1 of 3 cases failed (first: cpu single:1 b=6: " + failed.error + ")");
  EXPECT_NE(bench_table(result).to_markdown().find("| error: ort-cpu: inference failed"),
            std::string::npos);

  options.batch_sizes = {4, 8};
  EXPECT_EQ(bench_failures(run_bench(options)), "");

  // With the baseline row failed, no row has a speedup: null in JSON, not 0.
  options.batch_sizes = {6, 8};
  const BenchResult no_base = run_bench(options);
  EXPECT_EQ(no_base.rows[1].status, RowStatus::kOk);
  EXPECT_EQ(no_base.rows[1].speedup, 0);
  EXPECT_TRUE(bench_json(no_base)["rows"][1]["speedup"].is_null());
}

TEST(Bench, AModelThatCannotLoadFailsBeforeAnyCase) {
  BenchOptions options;
  options.model_path = kDir + "/not_a_model.onnx";
  std::filesystem::create_directories(kDir);
  {
    std::ofstream out(options.model_path);
    out << "not a model";
  }
  options.batch_sizes = {4, 8};
  const std::string message = testing::error_of([&] { run_bench(options); });
  EXPECT_EQ(message.rfind(options.model_path + ": not a loadable ONNX model (", 0), 0u) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

}  // namespace
}  // namespace tessera
