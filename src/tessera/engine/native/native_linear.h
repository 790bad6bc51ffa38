#pragma once
// NativeLinear: y = x @ W (+ b) (+ ReLU) for a fixed width in -> out, on oneDNN matmul. Owns W
// (and b) in the data type and blocked layout its primitives read, reordered once at
// construction into the layout the first primitive chose (weights format_tag::any), and one
// primitive per row count, created on first use and cached.
//
// Invariants: every cached primitive reads the same weights memory, no float32 copy of a bf16
// or int8 W is kept, and every primitive uses scratchpad_mode::user (the caller passes one
// scratchpad of at least scratchpad_bytes()). With s8/u8 inputs W is s8 with one scale per output
// column, applied as the primitive's output scales: dst = col_scale[n] * (q_x @ q_W), and the
// caller applies the row scales of x, then epilogue_bias() and any ReLU.

#include <cstdint>
#include <dnnl.hpp>
#include <map>
#include <vector>

namespace tessera {

enum class NativeType { f32, bf16, s8, u8 };

struct NativeLinearSpec {
  int64_t in = 0;                    // K
  int64_t out = 0;                   // N
  NativeType src = NativeType::f32;  // W is f32 for f32, bf16 for bf16, s8 for s8 and u8
  NativeType dst = NativeType::f32;  // f32 or bf16
  bool relu = false;                 // fused; ignored for s8/u8 inputs (the caller applies it)
};

class NativeLinear {
 public:
  // `weights` [in, out] and `bias` [out] (nullptr: none) are float32; `first_rows` is the row
  // count whose primitive picks the weights layout (the engine's largest).
  NativeLinear(const dnnl::engine& engine, const NativeLinearSpec& spec, const float* weights,
               const float* bias, int64_t first_rows);

  // Creates the primitive for `rows` unless cached. Returns the scratchpad bytes it needs.
  size_t prepare(int64_t rows);
  // dst[rows, out] = src[rows, in] @ W ...; src and dst are dense rows of spec() types.
  void run(dnnl::stream& stream, int64_t rows, const void* src, void* dst, void* scratchpad);

  // Drops every cached primitive (prepare() creates them again); the weights stay.
  void forget_primitives() { primitives_.clear(); }

  const NativeLinearSpec& spec() const { return spec_; }
  bool quantized() const { return spec_.src == NativeType::s8 || spec_.src == NativeType::u8; }
  // The bias the caller adds after the row scales (int8 inputs), else nullptr (fused).
  const float* epilogue_bias() const {
    return epilogue_bias_.empty() ? nullptr : epilogue_bias_.data();
  }

 private:
  struct Primitive {
    dnnl::matmul matmul;
    size_t scratchpad_bytes = 0;
  };
  dnnl::matmul::primitive_desc describe(int64_t rows, const dnnl::memory::desc& weights) const;
  void store_weights(const dnnl::memory::desc& layout, const float* weights);

  dnnl::engine engine_;
  NativeLinearSpec spec_;
  dnnl::memory weights_;
  dnnl::memory bias_;                 // empty when there is no fused bias
  std::vector<float> column_scales_;  // s8/u8 inputs: W[:, n] = column_scales_[n] * q_W[:, n]
  std::vector<float> epilogue_bias_;
  std::map<int64_t, Primitive> primitives_;
};

}  // namespace tessera
