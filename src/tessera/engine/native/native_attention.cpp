#include "tessera/engine/native/native_attention.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "tessera/engine/native/native_kernels.h"

namespace tessera {

using dnnl::memory;

NativeAttention::NativeAttention(const dnnl::engine& engine, int64_t steps, int64_t d,
                                 int64_t heads, NativeType type)
    : engine_(engine), steps_(steps), d_(d), heads_(heads), type_(type) {}

NativeAttention::Primitives& NativeAttention::primitives_for(int64_t batch) {
  auto it = primitives_.find(batch);
  if (it != primitives_.end()) return it->second;
  const memory::data_type type =
      type_ == NativeType::bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  const int64_t hd = d_ / heads_, t = steps_, row = 3 * d_;
  Primitives p;
  // q [b, h, i, c] and v [b, h, j, c] are rows of the QKV output; kᵀ [b, h, c, j] reads k's.
  p.q = memory::desc({batch, heads_, t, hd}, type, memory::dims{t * row, hd, row, 1});
  p.k = memory::desc({batch, heads_, hd, t}, type, memory::dims{t * row, hd, 1, row});
  p.v = memory::desc({batch, heads_, t, hd}, type, memory::dims{t * row, hd, row, 1});
  p.s = memory::desc({batch, heads_, t, t}, memory::data_type::f32, memory::format_tag::abcd);
  p.p = memory::desc({batch, heads_, t, t}, type, memory::format_tag::abcd);
  p.c =
      memory::desc({batch, heads_, t, hd}, memory::data_type::f32, memory::dims{t * d_, hd, d_, 1});
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const dnnl::matmul::primitive_desc scores(dnnl::matmul::desc(p.q, p.k, p.s), attr, engine_);
  const dnnl::matmul::primitive_desc context(dnnl::matmul::desc(p.p, p.v, p.c), attr, engine_);
  p.scores = dnnl::matmul(scores);
  p.context = dnnl::matmul(context);
  p.scratchpad_bytes =
      std::max(scores.scratchpad_desc().get_size(), context.scratchpad_desc().get_size());
  return primitives_.emplace(batch, p).first->second;
}

size_t NativeAttention::prepare(int64_t batch) {
  return primitives_for(batch).scratchpad_bytes;
}

void NativeAttention::run(dnnl::stream& stream, int64_t batch, const void* qkv, float* scores,
                          void* probabilities, float* context, void* scratchpad) {
  const Primitives& p = primitives_for(batch);
  const size_t element = type_ == NativeType::bf16 ? 2 : 4;
  const auto* base = static_cast<const char*>(qkv);
  const auto at = [&](const memory::desc& desc, const void* data) {
    return memory(desc, engine_, const_cast<void*>(data));
  };
  std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, at(p.q, base)},
                                          {DNNL_ARG_WEIGHTS, at(p.k, base + d_ * element)},
                                          {DNNL_ARG_DST, at(p.s, scores)}};
  const memory::desc scratch_md({static_cast<memory::dim>(std::max<size_t>(p.scratchpad_bytes, 1))},
                                memory::data_type::u8, memory::format_tag::a);
  if (p.scratchpad_bytes > 0) args[DNNL_ARG_SCRATCHPAD] = at(scratch_md, scratchpad);
  p.scores.execute(stream, args);

  const int64_t rows = batch * heads_ * steps_;
  const NativeOperand probabilities_op{type_, steps_, probabilities, nullptr};
  softmax_rows(scores, rows, steps_, 1.0f / std::sqrt(static_cast<float>(d_ / heads_)),
               probabilities_op);

  args[DNNL_ARG_SRC] = at(p.p, probabilities);
  args[DNNL_ARG_WEIGHTS] = at(p.v, base + 2 * d_ * element);
  args[DNNL_ARG_DST] = at(p.c, context);
  p.context.execute(stream, args);
}

}  // namespace tessera
