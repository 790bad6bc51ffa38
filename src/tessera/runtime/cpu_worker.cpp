#include "tessera/runtime/cpu_worker.h"

#include <algorithm>
#include <vector>

#include "tessera/common/clock.h"
#include "tessera/common/error.h"
#include "tessera/pipeline/input_preparer.h"
#include "tessera/pipeline/quantiser.h"

namespace tessera {
namespace {

// Builds the worker's engine unless the kept one holds this tile's largest batch. Its capacity:
// -b, but never more pixels than the job's largest tile (or this one) has.
void build_engine(const TileJob& job, const EngineFactory& factory, const EngineSpec& cpu_spec,
                  const WorkerPlan& worker, std::unique_ptr<Engine>& kept,
                  std::atomic<int>& engines_built) {
  const InferOptions& options = job.options;
  const int64_t needed = std::min(options.batch, job.tile.pixels());
  if (kept && kept->max_batch() >= needed) return;
  kept.reset();  // free the smaller one's buffers first
  EngineSpec spec = cpu_spec;
  spec.threads = worker.threads;
  spec.cpus = worker.cpus;
  spec.spinning = options.spinning;
  spec.max_batch = std::min(options.batch, std::max(options.largest_tile_pixels, needed));
  kept = factory(options.model_path, spec);
  ++engines_built;
}

void run_batches(const TileJob& job, const EngineFactory& factory, const EngineSpec& cpu_spec,
                 const WorkerPlan& worker, std::unique_ptr<Engine>& kept,
                 std::atomic<int>& engines_built) {
  const InferOptions& options = job.options;
  build_engine(job, factory, cpu_spec, worker, kept, engines_built);
  Engine& engine = *kept;
  StageProfile* profile =
      job.worker_stages ? &(*job.worker_stages)[static_cast<size_t>(worker.index)] : nullptr;
  const bool engine_times_itself = engine.set_stage_profile(profile);
  struct Detach {  // the engine outlives this tile's profiles
    Engine& engine;
    ~Detach() { engine.set_stage_profile(nullptr); }
  } detach{engine};
  const int64_t latent = job.latent();
  const std::unique_ptr<InputPreparer> preparer = make_input_preparer(job.tile, job.pipeline);
  std::vector<float> mean(options.repeat > 1 ? engine.max_batch() * latent : 0);
  double batch_seconds = 0;  // this worker's last batch
  while (!job.abort && !job.streams_finish_first(batch_seconds)) {
    const auto batch_start = Clock::now();
    const int64_t b = job.finishes.claim_and_start(
        worker.index, job.counter, engine, [&](int64_t batch) { return job.journal.done(batch); });
    if (b < 0) break;
    const int64_t count = job.count(b);
    const StepCounts steps = job.steps(b);
    const float* result = engine.output();
    if (options.repeat > 1) std::fill(mean.begin(), mean.begin() + count * latent, 0.0f);
    try {
      engine.set_steps(steps.s2, steps.s1);
      for (int r = 0; r < options.repeat; ++r) {
        {
          const StageTimer timer(profile, Stage::kInputPreparation);
          preparer->prepare_batch(job.pixels(b), count, r, steps, engine.s2_input(),
                                  engine.s1_input());
        }
        const RunTimer whole(engine_times_itself ? nullptr : profile);
        engine.run(count);
        if (options.repeat > 1) accumulate(engine.output(), count * latent, mean.data());
      }
    } catch (const Error&) {
      job.finishes.stop(worker.index);
      if (job.finishes.finished(b)) continue;  // interrupted: a streaming worker finished b
      throw;
    }
    job.finishes.stop(worker.index);
    if (options.repeat > 1) {
      divide_by(count * latent, options.repeat, mean.data());
      result = mean.data();
    }
    job.finish(b, result, profile);
    batch_seconds = seconds_since(batch_start);
  }
}

}  // namespace

void run_cpu_worker(const TileJob& job, const EngineFactory& factory, const EngineSpec& cpu_spec,
                    const WorkerPlan& worker, std::unique_ptr<Engine>& kept,
                    std::atomic<int>& engines_built) {
  try {
    run_batches(job, factory, cpu_spec, worker, kept, engines_built);
  } catch (...) {
    job.abort = true;
    throw;
  }
}

}  // namespace tessera
