#pragma once
// NativeAttention: the multi-head self-attention core, softmax(q kᵀ / sqrt(d / heads)) v for
// every head of `batch` sequences, as two oneDNN batched matmuls that read q, k and v in place
// from the QKV projection's rows ([batch * steps, 3d]: q | k | v, head h owning columns
// h * d / heads .. of each third) and write the context straight into rows [batch * steps, d].
// Owns one pair of primitives per batch size, created on first use; scores and the softmax stay
// float32, q, k, v and the probabilities are in the attention's type (f32 or bf16).
//
// Invariant: primitives use scratchpad_mode::user (the caller's scratchpad, scratchpad_bytes()
// of prepare's largest answer).

#include <cstdint>
#include <dnnl.hpp>
#include <map>

#include "tessera/engine/native/native_linear.h"

namespace tessera {

class NativeAttention {
 public:
  NativeAttention(const dnnl::engine& engine, int64_t steps, int64_t d, int64_t heads,
                  NativeType type);

  // Creates the primitives for `batch` sequences unless cached; returns their scratchpad bytes.
  size_t prepare(int64_t batch);
  // qkv [batch * steps, 3d] and probabilities [batch, heads, steps, steps] in type();
  // scores [batch, heads, steps, steps] and context [batch * steps, d] float32.
  void run(dnnl::stream& stream, int64_t batch, const void* qkv, float* scores, void* probabilities,
           float* context, void* scratchpad);

  NativeType type() const { return type_; }

 private:
  struct Primitives {
    dnnl::matmul scores, context;
    dnnl::memory::desc q, k, s, p, v, c;
    size_t scratchpad_bytes = 0;
  };
  Primitives& primitives_for(int64_t batch);

  dnnl::engine engine_;
  int64_t steps_, d_, heads_;
  NativeType type_;
  std::map<int64_t, Primitives> primitives_;
};

}  // namespace tessera
