#pragma once
// The seam between a tile's batches and the model's input tensors: every pipeline version
// writes a batch's inputs through InputPreparer, so that workers need not know which version
// they feed.

#include <cstdint>
#include <memory>

namespace tessera {

struct Tile;          // io/tile.h
struct TilePipeline;  // pipeline/tile_pipeline.h

// The step counts of one batch's inputs (every pixel of a batch has the same).
struct StepCounts {
  int64_t s2 = 0, s1 = 0;
  bool operator==(const StepCounts&) const = default;
};

// Writes model inputs. One instance per worker thread (it owns scratch buffers); the Tile must
// outlive it and is only read.
class InputPreparer {
 public:
  virtual ~InputPreparer() = default;
  // The inputs of pixels[0..count) (flat indices i * W + j) at `steps`, packed as the batch
  // tensors [count][steps.s2][11] at s2_out and [count][steps.s1][3] at s1_out; `offset` is the
  // repeat pass r (sampled pipelines only). Throws Error when `steps` is not what the pipeline
  // gives these pixels.
  virtual void prepare_batch(const int64_t* pixels, int64_t count, int64_t offset, StepCounts steps,
                             float* s2_out, float* s1_out) = 0;
};

// The preparer of `pipeline` for `tile`: PixelPreparer at pipeline.sampled_steps for v1.0 and
// v1.0 early, BucketPreparer for v1.1 and v2.
std::unique_ptr<InputPreparer> make_input_preparer(const Tile& tile, const TilePipeline& pipeline);

}  // namespace tessera
