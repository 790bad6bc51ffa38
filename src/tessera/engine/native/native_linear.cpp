#include "tessera/engine/native/native_linear.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "tessera/common/error.h"

namespace tessera {
namespace {

using dnnl::memory;

memory::data_type data_type_of(NativeType type) {
  switch (type) {
    case NativeType::bf16:
      return memory::data_type::bf16;
    case NativeType::s8:
      return memory::data_type::s8;
    case NativeType::u8:
      return memory::data_type::u8;
    case NativeType::f32:
      break;
  }
  return memory::data_type::f32;
}

const char* type_name(NativeType type) {
  switch (type) {
    case NativeType::bf16:
      return "bf16";
    case NativeType::s8:
      return "s8";
    case NativeType::u8:
      return "u8";
    case NativeType::f32:
      break;
  }
  return "f32";
}

memory::data_type weights_type_of(NativeType src) {
  if (src == NativeType::f32) return memory::data_type::f32;
  if (src == NativeType::bf16) return memory::data_type::bf16;
  return memory::data_type::s8;
}

// Per output column: the largest |W[k, n]| / 127 (1 for an all-zero column).
std::vector<float> column_scales(const float* weights, int64_t in, int64_t out) {
  std::vector<float> largest(static_cast<size_t>(out), 0.0f);
  for (int64_t k = 0; k < in; ++k) {
    for (int64_t n = 0; n < out; ++n)
      largest[n] = std::max(largest[n], std::fabs(weights[k * out + n]));
  }
  for (float& s : largest) s = s > 0.0f ? s / 127.0f : 1.0f;
  return largest;
}

}  // namespace

NativeLinear::NativeLinear(const dnnl::engine& engine, const NativeLinearSpec& spec,
                           const float* weights, const float* bias, int64_t first_rows)
    : engine_(engine), spec_(spec) {
  if (quantized()) {
    column_scales_ = column_scales(weights, spec.in, spec.out);
    if (bias) epilogue_bias_.assign(bias, bias + spec.out);
  } else if (bias) {
    bias_ = memory({{1, spec.out}, memory::data_type::f32, memory::format_tag::ab}, engine_);
    std::memcpy(bias_.get_data_handle(), bias, static_cast<size_t>(spec.out) * sizeof(float));
  }
  const memory::desc any({spec.in, spec.out}, weights_type_of(spec.src), memory::format_tag::any);
  const dnnl::matmul::primitive_desc first = describe(first_rows, any);
  store_weights(first.weights_desc(), weights);
  primitives_[first_rows] = {dnnl::matmul(first), first.scratchpad_desc().get_size()};
}

dnnl::matmul::primitive_desc NativeLinear::describe(int64_t rows,
                                                    const memory::desc& weights) const {
  const memory::desc src({rows, spec_.in}, data_type_of(spec_.src), memory::format_tag::ab);
  const memory::desc dst({rows, spec_.out}, data_type_of(spec_.dst), memory::format_tag::ab);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (quantized()) {
    attr.set_output_scales(1 << 1, column_scales_);
  } else if (spec_.relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    attr.set_post_ops(ops);
  }
  const memory::desc bias = bias_ ? bias_.get_desc() : memory::desc();
  try {
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, bias, dst), attr, engine_);
  } catch (const dnnl::error& e) {
    throw Error(fmt::format(
        "native engine: oneDNN has no {} x {} matmul of {} inputs and {} "
        "output for {} rows ({})",
        spec_.in, spec_.out, type_name(spec_.src), type_name(spec_.dst), rows, e.what()));
  }
}

// Converts `weights` [in, out] float32 into `layout` once: bf16 by the reorder; s8 by dividing
// each column by its scale and rounding to nearest, then reordering (which adds the s8-input
// compensation the layout may carry).
void NativeLinear::store_weights(const memory::desc& layout, const float* weights) {
  const memory::dims shape = {spec_.in, spec_.out};
  std::vector<int8_t> quantized_weights;
  memory source({shape, memory::data_type::f32, memory::format_tag::ab}, engine_,
                const_cast<float*>(weights));
  if (quantized()) {
    quantized_weights.resize(static_cast<size_t>(spec_.in * spec_.out));
    for (int64_t k = 0; k < spec_.in; ++k) {
      for (int64_t n = 0; n < spec_.out; ++n) {
        const float q = std::nearbyint(weights[k * spec_.out + n] / column_scales_[n]);
        quantized_weights[k * spec_.out + n] = static_cast<int8_t>(std::clamp(q, -127.0f, 127.0f));
      }
    }
    source = memory({shape, memory::data_type::s8, memory::format_tag::ab}, engine_,
                    quantized_weights.data());
  }
  weights_ = memory(layout, engine_);
  dnnl::stream stream(engine_);
  dnnl::reorder(source, weights_).execute(stream, source, weights_);
  stream.wait();
}

size_t NativeLinear::prepare(int64_t rows) {
  auto it = primitives_.find(rows);
  if (it == primitives_.end()) {
    const dnnl::matmul::primitive_desc pd = describe(rows, weights_.get_desc());
    it = primitives_.emplace(rows, Primitive{dnnl::matmul(pd), pd.scratchpad_desc().get_size()})
             .first;
  }
  return it->second.scratchpad_bytes;
}

void NativeLinear::run(dnnl::stream& stream, int64_t rows, const void* src, void* dst,
                       void* scratchpad) {
  prepare(rows);
  const Primitive& p = primitives_.at(rows);
  const memory::desc src_md({rows, spec_.in}, data_type_of(spec_.src), memory::format_tag::ab);
  const memory::desc dst_md({rows, spec_.out}, data_type_of(spec_.dst), memory::format_tag::ab);
  std::unordered_map<int, memory> args = {
      {DNNL_ARG_SRC, memory(src_md, engine_, const_cast<void*>(src))},
      {DNNL_ARG_WEIGHTS, weights_},
      {DNNL_ARG_DST, memory(dst_md, engine_, dst)}};
  if (p.scratchpad_bytes > 0) {
    const memory::desc scratch_md({static_cast<memory::dim>(p.scratchpad_bytes)},
                                  memory::data_type::u8, memory::format_tag::a);
    args[DNNL_ARG_SCRATCHPAD] = memory(scratch_md, engine_, scratchpad);
  }
  if (bias_) args[DNNL_ARG_BIAS] = bias_;
  p.matmul.execute(stream, args);
}

}  // namespace tessera
