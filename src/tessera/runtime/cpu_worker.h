#pragma once
// A CPU worker of a tile: one engine on the CPUs of one WorkerPlan, claiming one batch at a
// time from the tile's shared counter beside the other CPU workers and any streaming workers.

#include <atomic>
#include <memory>

#include "tessera/engine/engine_spec.h"
#include "tessera/runtime/tile_job.h"
#include "tessera/topology/placement.h"

namespace tessera {

// Runs batches of `job` on the calling thread, which is already bound to `worker`'s CPUs, until
// none is left, another worker failed (job.abort), or the streaming workers would finish the
// rest before this worker's next batch (TileJob::streams_finish_first). Builds the engine
// `cpu_spec` asks for, with the worker's threads and CPUs, into `kept` when it is empty, on this
// thread, so that its memory lies on the worker's nodes (counted in `engines_built`). A batch that
// a streaming worker finished first is given up (its run interrupted). Throws on failure, after
// setting job.abort so that every other worker stops claiming at once.
void run_cpu_worker(const TileJob& job, const EngineFactory& factory, const EngineSpec& cpu_spec,
                    const WorkerPlan& worker, std::unique_ptr<Engine>& kept,
                    std::atomic<int>& engines_built);

}  // namespace tessera
