#include "tessera/engine/native/native_attention.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "tessera/engine/native/native_kernels.h"

namespace tessera {

using dnnl::memory;

int64_t even_part(int64_t total, int64_t largest) {
  const int64_t parts = (total + largest - 1) / largest;
  return (total + parts - 1) / parts;
}

NativeAttention::NativeAttention(const dnnl::engine& engine, int64_t d, int64_t heads,
                                 NativeType type, int64_t score_capacity)
    : engine_(engine), d_(d), heads_(heads), type_(type), score_capacity_(score_capacity) {}

int64_t NativeAttention::group_size(int64_t batch, int64_t steps) const {
  const int64_t fitting = std::max<int64_t>(1, score_capacity_ / (heads_ * steps * steps));
  return even_part(batch, std::min(batch, fitting));
}

NativeAttention::Primitives& NativeAttention::primitives_for(int64_t group, int64_t steps) {
  auto it = primitives_.find({group, steps});
  if (it != primitives_.end()) return it->second;
  const memory::data_type type =
      type_ == NativeType::bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  const int64_t hd = d_ / heads_, t = steps, row = 3 * d_;
  Primitives p;
  // q [b, h, i, c] and v [b, h, j, c] are rows of the QKV output; kᵀ [b, h, c, j] reads k's.
  p.q = memory::desc({group, heads_, t, hd}, type, memory::dims{t * row, hd, row, 1});
  p.k = memory::desc({group, heads_, hd, t}, type, memory::dims{t * row, hd, 1, row});
  p.v = memory::desc({group, heads_, t, hd}, type, memory::dims{t * row, hd, row, 1});
  p.s = memory::desc({group, heads_, t, t}, memory::data_type::f32, memory::format_tag::abcd);
  p.p = memory::desc({group, heads_, t, t}, type, memory::format_tag::abcd);
  p.c =
      memory::desc({group, heads_, t, hd}, memory::data_type::f32, memory::dims{t * d_, hd, d_, 1});
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const dnnl::matmul::primitive_desc scores(dnnl::matmul::desc(p.q, p.k, p.s), attr, engine_);
  const dnnl::matmul::primitive_desc context(dnnl::matmul::desc(p.p, p.v, p.c), attr, engine_);
  p.scores = dnnl::matmul(scores);
  p.context = dnnl::matmul(context);
  p.scratchpad_bytes =
      std::max(scores.scratchpad_desc().get_size(), context.scratchpad_desc().get_size());
  return primitives_.emplace(std::make_pair(group, steps), p).first->second;
}

size_t NativeAttention::prepare(int64_t batch, int64_t steps) {
  const int64_t group = group_size(batch, steps);
  size_t bytes = primitives_for(group, steps).scratchpad_bytes;
  const int64_t last = batch - (batch - 1) / group * group;
  if (last != group) bytes = std::max(bytes, primitives_for(last, steps).scratchpad_bytes);
  return bytes;
}

void NativeAttention::run(dnnl::stream& stream, int64_t batch, int64_t steps, const void* qkv,
                          float* scores, void* probabilities, float* context, void* scratchpad,
                          StageProfile* profile) {
  const int64_t group = group_size(batch, steps);
  const size_t element = type_ == NativeType::bf16 ? 2 : 4;
  for (int64_t first = 0; first < batch; first += group) {
    const int64_t size = std::min(group, batch - first);
    const auto* rows = static_cast<const char*>(qkv) + first * steps * 3 * d_ * element;
    run_group(stream, primitives_for(size, steps), size, steps, rows, scores, probabilities,
              context + first * steps * d_, scratchpad, profile);
  }
}

void NativeAttention::run_group(dnnl::stream& stream, const Primitives& p, int64_t group,
                                int64_t steps, const char* qkv, float* scores, void* probabilities,
                                float* context, void* scratchpad, StageProfile* profile) {
  // Each of the two matmuls: 2 · group · heads · steps² · (d / heads) operations.
  const double matmul_ops = 2.0 * static_cast<double>(group * steps * steps * d_);
  const size_t element = type_ == NativeType::bf16 ? 2 : 4;
  const auto at = [&](const memory::desc& desc, const void* data) {
    return memory(desc, engine_, const_cast<void*>(data));
  };
  std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, at(p.q, qkv)},
                                          {DNNL_ARG_WEIGHTS, at(p.k, qkv + d_ * element)},
                                          {DNNL_ARG_DST, at(p.s, scores)}};
  const memory::desc scratch_md({static_cast<memory::dim>(std::max<size_t>(p.scratchpad_bytes, 1))},
                                memory::data_type::u8, memory::format_tag::a);
  if (p.scratchpad_bytes > 0) args[DNNL_ARG_SCRATCHPAD] = at(scratch_md, scratchpad);
  {
    const StageTimer timer(profile, Stage::kAttentionCore, matmul_ops);
    p.scores.execute(stream, args);
  }
  {
    const StageTimer timer(profile, Stage::kSoftmax);
    const int64_t rows = group * heads_ * steps;
    const NativeOperand probabilities_op{type_, steps, probabilities, nullptr};
    softmax_rows(scores, rows, steps, 1.0f / std::sqrt(static_cast<float>(d_ / heads_)),
                 probabilities_op);
  }

  args[DNNL_ARG_SRC] = at(p.p, probabilities);
  args[DNNL_ARG_WEIGHTS] = at(p.v, qkv + 2 * d_ * element);
  args[DNNL_ARG_DST] = at(p.c, context);
  const StageTimer timer(profile, Stage::kAttentionCore, matmul_ops);
  p.context.execute(stream, args);
}

}  // namespace tessera
