#pragma once
// A streaming worker: one GPU (or, for tests, a 1-thread CPU engine: "cpu+stream") fed by two
// helper threads, claiming chunks of a tile's batches beside the CPU workers (docs/GPU.md).

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "tessera/engine/engine.h"
#include "tessera/runtime/tile_job.h"
#include "tessera/topology/placement.h"

namespace tessera {

// What one streaming worker measured.
struct StreamStats {
  bool gpu = false;  // its engine was an OrtCudaEngine (busy time is known)
  double busy_seconds = 0, wall_seconds = 0;
  int64_t pixels_per_run = 0;
  int64_t pixels = 0;              // valid pixels it computed (each once, whatever --repeat)
  int64_t batches_taken_over = 0;  // of those, batches a CPU worker was still running
};

// A streaming worker's engine, kept between tiles with what out-of-memory taught it.
struct StreamEngine {
  std::unique_ptr<Engine> engine;
  int64_t chunk = 0;     // batches claimed at once (0: not yet set); halved while building OOMs
  int64_t capacity = 0;  // the engine's max_batch
  int64_t limit = 0;     // pixels per run; halved while running OOMs (run_in_sub_batches)
  // The capacity a CUDA-graph engine was shrunk to after running out of memory (0: never):
  // later tiles never build one larger, even when that is less than one batch.
  int64_t memory_ceiling = 0;
  // Inputs and outputs of the worker's two slots, from the engine's allocate_host (pinned on a
  // GPU, so the engine copies straight from and into them), for buffer_capacity pixels each; kept
  // with the engine, reallocated only when a slot needs more.
  struct Buffers {
    HostBuffer s2, s1, out;
  } buffers[2];
  int64_t buffer_capacity = 0;
};

// A streaming worker: builds its engine unless `kept` holds one large enough (halving the chunk
// while that runs out of memory), then two helper threads each claim chunks, prepare them into
// their own Slot, hand each pass to this thread and wait, while this thread runs whatever slot
// is ready. So the next chunk is prepared while the engine runs, and finished chunks are
// quantised while it runs. The helpers bind themselves to `helper_cpus` when given (else they
// share the engine thread's binding). `engine_ready` is called once the engine exists (not when
// building it fails); `engines_built` counts a build.
StreamStats run_stream_worker(const TileJob& job, const std::string& device, StreamEngine& kept,
                              const WorkerPlan* helper_cpus, MemoryPolicy policy,
                              const std::function<void()>& engine_ready,
                              std::atomic<int>& engines_built);

}  // namespace tessera
