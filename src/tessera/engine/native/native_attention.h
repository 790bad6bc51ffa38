#pragma once
// NativeAttention: the multi-head self-attention core, softmax(q kᵀ / sqrt(d / heads)) v for
// every head of `batch` sequences of `steps` tokens, as two oneDNN batched matmuls that read q,
// k and v in place from the QKV projection's rows ([batch * steps, 3d]: q | k | v, head h owning
// columns h * d / heads .. of each third) and write the context straight into rows
// [batch * steps, d]. The sequences go through in groups small enough that a group's scores
// [group, heads, steps, steps] fit `score_capacity` floats (groups of equal size but the last).
// Owns one pair of primitives per (group, steps), created on first use; scores and the softmax
// stay float32, q, k, v and the probabilities are in the attention's type (f32 or bf16).
//
// Invariant: primitives use scratchpad_mode::user (the caller's scratchpad, of prepare's
// largest answer); score_capacity holds at least one sequence of every step count a run uses.

#include <cstdint>
#include <dnnl.hpp>
#include <map>
#include <utility>

#include "tessera/engine/native/native_linear.h"
#include "tessera/engine/stage_profile.h"

namespace tessera {

class NativeAttention {
 public:
  NativeAttention(const dnnl::engine& engine, int64_t d, int64_t heads, NativeType type,
                  int64_t score_capacity);

  // Creates the primitives for `batch` sequences of `steps` unless cached; returns their
  // scratchpad bytes.
  size_t prepare(int64_t batch, int64_t steps);
  // qkv [batch * steps, 3d] in type(); scores (float32) and probabilities (type()) of
  // score_capacity elements; context [batch * steps, d] float32. The two matmuls' time goes to
  // `profile`'s attention core, the softmax's to its softmax (null: not measured).
  void run(dnnl::stream& stream, int64_t batch, int64_t steps, const void* qkv, float* scores,
           void* probabilities, float* context, void* scratchpad, StageProfile* profile);

  // Drops every cached primitive (prepare() creates them again).
  void forget_primitives() { primitives_.clear(); }

  NativeType type() const { return type_; }

 private:
  struct Primitives {
    dnnl::matmul scores, context;
    dnnl::memory::desc q, k, s, p, v, c;
    size_t scratchpad_bytes = 0;
  };
  // The sequences of one group: at most score_capacity / (heads * steps²), split evenly.
  int64_t group_size(int64_t batch, int64_t steps) const;
  Primitives& primitives_for(int64_t group, int64_t steps);
  void run_group(dnnl::stream& stream, const Primitives& p, int64_t group, int64_t steps,
                 const char* qkv, float* scores, void* probabilities, float* context,
                 void* scratchpad, StageProfile* profile);

  dnnl::engine engine_;
  int64_t d_, heads_;
  NativeType type_;
  int64_t score_capacity_;
  std::map<std::pair<int64_t, int64_t>, Primitives> primitives_;  // by (group, steps)
};

// `total` items in parts of at most `largest` (>= 1), all of one size but a smaller last one:
// the size of a part.
int64_t even_part(int64_t total, int64_t largest);

}  // namespace tessera
