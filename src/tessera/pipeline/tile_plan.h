#pragma once
// The batches of one tile: which pixels each holds and at how many steps. Batches are the
// units workers claim and the journal records, so a plan is a pure function of the tile, the
// pipeline and the batch size: a rerun (resume) builds the same one.
//
// Sampled pipelines (v1.0): batch b holds valid pixels [b*B, (b+1)*B), all at 40 + 40 steps.
// Bucketed pipelines (v1.1, v2): pixels are grouped by (S2 length, S1 length); each group, in
// ascending pixel order, is cut into batches of at most B pixels, so that every batch has one
// shape. Groups run longest first (S2 + S1 steps, then the group key): the costliest batches
// are claimed while every worker is busy, and a tile ends on short ones. The order changes no
// number (each pixel's computation is independent of its batch mates).

#include <cstdint>
#include <vector>

#include "tessera/io/tile.h"
#include "tessera/pipeline/input_preparer.h"
#include "tessera/pipeline/tile_pipeline.h"

namespace tessera {

struct TilePlan {
  std::vector<int64_t> pixels;    // every pixel to compute, batch after batch
  std::vector<int64_t> starts;    // batch b holds pixels[starts[b] .. starts[b + 1])
  std::vector<StepCounts> steps;  // batch b's step counts

  int64_t batches() const { return static_cast<int64_t>(steps.size()); }
  const int64_t* pixels_of(int64_t b) const { return pixels.data() + starts[b]; }
  int64_t count(int64_t b) const { return starts[b + 1] - starts[b]; }
  // Pixels in the batches b for which done(b) is true.
  template <typename Done>
  int64_t pixels_where(Done done) const {
    int64_t n = 0;
    for (int64_t b = 0; b < batches(); ++b) n += done(b) ? count(b) : 0;
    return n;
  }
};

// Batches of `batch` consecutive pixels of `pixels`, every one at `steps`.
TilePlan fixed_batches(std::vector<int64_t> pixels, int64_t batch, StepCounts steps);

// Each pixel's valid observations: S2 frames whose mask is non-zero, and S1 rows (ascending
// plus descending) with either raw band non-zero.
struct ObservationCounts {
  std::vector<int32_t> s2, s1;
};

// Scans the tile once (time-major): masks and S1 bands, and float S2 bands and every day of
// year for values that are not finite (Error naming the file and the place).
ObservationCounts count_observations(const Tile& tile);

// The step counts `pipeline` gives a pixel with these counts: bucket lengths, an empty
// modality's own rule (v1.1: 8, v2: 1); {0, 0} for a pixel the pipeline skips (v2, both empty).
StepCounts bucket_steps(const TilePipeline& pipeline, int64_t s2_count, int64_t s1_count);

// The bucketed plan of a tile with these counts.
TilePlan bucket_batches(const ObservationCounts& counts, const TilePipeline& pipeline,
                        int64_t batch);

}  // namespace tessera
