#include "tessera/engine/native/native_engine.h"

#include <omp.h>

#include <algorithm>
#include <dnnl.hpp>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "tessera/common/error.h"
#include "tessera/engine/native/native_attention.h"
#include "tessera/engine/native/native_buffer.h"
#include "tessera/engine/native/native_kernels.h"
#include "tessera/engine/native/native_linear.h"
#include "tessera/engine/native/native_model.h"
#include "tessera/engine/stage_profile.h"

namespace tessera {
namespace {

// The data type each matmul input is written in, per precision.
struct PrecisionPlan {
  NativeType encoder = NativeType::f32;    // QKV, out-projection, FFN1, GRU input projection
  NativeType hidden = NativeType::f32;     // FFN2 (its input is post-ReLU: u8 for int8)
  NativeType light = NativeType::f32;      // embedding's second Linear, GRU recurrent matmuls
  NativeType attention = NativeType::f32;  // q, k, v and the probabilities of the attention core
};

const char* isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::sse41:
      return "sse41";
    case dnnl::cpu_isa::avx:
      return "avx";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    case dnnl::cpu_isa::avx2_vnni:
      return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
    default:
      return "an ISA without AVX-512";
  }
}

// Throws unless oneDNN runs `precision` natively on this CPU (ISA bits, not their order).
PrecisionPlan plan_precision(Precision precision) {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  const auto offers = [&](dnnl::cpu_isa wanted) {
    return (static_cast<unsigned>(isa) & static_cast<unsigned>(wanted)) ==
           static_cast<unsigned>(wanted);
  };
  if (precision == Precision::fp32) return {};
  if (precision == Precision::bf16) {
    if (!offers(dnnl::cpu_isa::avx512_core_bf16)) {
      throw Error(
          std::string("--precision bf16 needs a CPU with AVX512_BF16 or AMX (this one offers ") +
          isa_name(isa) + ")");
    }
    return {NativeType::bf16, NativeType::bf16, NativeType::bf16, NativeType::bf16};
  }
  if (precision == Precision::int8) {
    if (!offers(dnnl::cpu_isa::avx512_core_vnni)) {
      throw Error(
          std::string("--precision int8 needs a CPU with AVX512_VNNI or AMX (this one offers ") +
          isa_name(isa) + ")");
    }
    const NativeType light =
        offers(dnnl::cpu_isa::avx512_core_bf16) ? NativeType::bf16 : NativeType::f32;
    return {NativeType::s8, NativeType::u8, light, light};
  }
  throw UsageError("the native engine computes fp32, bf16 or int8, not " +
                   precision_name(precision));
}

size_t bytes_of(NativeType type) {
  return type == NativeType::f32 ? 4 : type == NativeType::bf16 ? 2 : 1;
}

// Rows (pixels x steps) of activation buffers per pixel of max_batch for a model with symbolic
// steps: runs of up to 64 steps go through in one piece, longer ones in chunks of pixels (all
// within kActivationBudgetBytes).
constexpr int64_t kSymbolicRowsPerPixel = 64;
// Attention scores (floats) a symbolic-step model keeps at most: 32 MiB of float32 (more when
// one pixel of kMaxModelSteps needs it).
constexpr int64_t kSymbolicScoreFloats = int64_t{1} << 23;

struct EncoderLayer {
  std::unique_ptr<NativeLinear> qkv, out, ffn1, ffn2;
  std::vector<float> norm1_gamma, norm1_beta, norm2_gamma, norm2_beta;
  std::vector<float> q_gain, k_gain;  // QK RMSNorm gains [d / heads]; empty without QK norm
};

struct Branch {
  NativeBranchDims dims;
  std::vector<float> doy_frequencies;
  std::unique_ptr<NativeLinear> embed0, embed2;
  std::unique_ptr<NativeAttention> attention;
  std::vector<EncoderLayer> layers;
  // Custom GRU: [W_ir | W_iz | W_ih] + [b_r | b_z | b_h]; nn.GRU: weight_ih + bias_ih.
  std::unique_ptr<NativeLinear> gru_input;
  std::unique_ptr<NativeLinear> gru_reset;  // custom GRU: [W_hr | W_hz], no bias
  // Custom GRU: W_hh, no bias; nn.GRU: weight_hh + bias_hh (all three gates).
  std::unique_ptr<NativeLinear> gru_hidden;
  std::vector<float> pool_gamma, pool_beta;  // empty: scores without LayerNorm
  std::vector<float> score_w;
  float score_b = 0.0f;
};

// Linear: `first` alone ([2d, latent]). MLP: first [2d, hidden], LayerNorm(norm), ReLU, second
// [hidden, latent] (the first `latent` columns of the file's [hidden, width]), then a LayerNorm
// without parameters when final_norm.
struct Fusion {
  std::unique_ptr<NativeLinear> first, second;
  std::vector<float> norm_gamma, norm_beta;
  bool final_norm = false;
};

std::vector<float> copy_of(const NativeModel& model, const std::string& name, int64_t count) {
  const float* data = model.tensor(name);
  return {data, data + count};
}

// Columns of [d, d] matrices side by side: [d, d * names.size()].
std::vector<float> side_by_side(const NativeModel& model, const std::vector<std::string>& names,
                                int64_t d) {
  const int64_t width = d * static_cast<int64_t>(names.size());
  std::vector<float> joined(static_cast<size_t>(d * width));
  for (size_t m = 0; m < names.size(); ++m) {
    const float* w = model.tensor(names[m]);
    for (int64_t k = 0; k < d; ++k)
      std::copy(w + k * d, w + (k + 1) * d, joined.begin() + k * width + m * d);
  }
  return joined;
}

// The first `cols` columns of `name` [rows, width].
std::vector<float> first_columns(const NativeModel& model, const std::string& name, int64_t rows,
                                 int64_t width, int64_t cols) {
  const float* w = model.tensor(name);
  std::vector<float> kept(static_cast<size_t>(rows * cols));
  for (int64_t k = 0; k < rows; ++k)
    std::copy(w + k * width, w + k * width + cols, &kept[k * cols]);
  return kept;
}

}  // namespace

// Everything a NativeEngine computes with. The two branches run one after the other through
// the same activation buffers (rows_capacity rows), each in chunks of whole pixels; the operands
// (x_operand() ...) are views of those buffers in the type their matmul reads, aliasing the
// float32 ones in fp32 runs.
struct NativeEngine::State {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  PrecisionPlan plan;
  ModelDescription arch;  // the file's version, pooling, fusion, norms and shape
  NativeModelDims dims;   // its widths
  Branch s2, s1;
  Fusion fusion;
  int64_t max_batch = 0;
  int64_t rows_capacity = 0;   // rows of every [rows, width] activation buffer
  int64_t score_capacity = 0;  // elements of scores and probabilities
  // Pixels of the per-pixel work buffers (GRU state, fusion hidden): min(max_batch, rows).
  int64_t pixel_capacity = 0;
  // Run shapes whose primitives exist and fit the scratchpad: (batch, s2 steps, s1 steps).
  std::set<std::tuple<int64_t, int64_t, int64_t>> prepared;
  StageProfile* profile = nullptr;  // where run stages add their time; null: not measured
  NativeBuffer scratchpad;
  NativeBuffer s2_in, s1_in, out, bands, embedded, x, x_low, x_scales, qkv, qkv_low, scores,
      probabilities, context, context_low, context_scales, delta, hidden, hidden_low, hidden_scales,
      h, h_low, z, gh, gn, rh_low, pooled, fusion_hidden;

  // FFN1's output: FFN2's input for fp32 and bf16; for int8 the epilogue's, bf16 where it can.
  NativeType ffn1_output_type() const {
    return plan.hidden == NativeType::u8 ? plan.light : plan.hidden;
  }
  // Pixels per chunk of a branch run of `batch` pixels of `steps` steps.
  int64_t chunk_pixels(int64_t batch, int64_t steps) const {
    return even_part(batch, std::min(batch, std::max<int64_t>(1, rows_capacity / steps)));
  }
  NativeOperand x_operand() const;
  NativeOperand context_operand() const;
  NativeOperand hidden_operand() const;
  NativeOperand h_operand() const;
  NativeOperand rh_operand() const;
  // Bytes of activation buffers per row of rows_capacity (the per-pixel work buffers counted
  // per row too: a chunk has at least one row per pixel).
  int64_t activation_bytes_per_row() const;
  void plan_capacity();
  // What allocate() will take, about, once plan_capacity() has run (the scratchpad aside).
  int64_t planned_bytes() const;
  size_t buffer_bytes() const;
  void load_branch(NativeModel& model, const std::string& b, Branch& branch);
  void load_layers(NativeModel& model, const std::string& b, Branch& branch);
  void load_pooling(NativeModel& model, const std::string& b, Branch& branch);
  void load_fusion(NativeModel& model);
  void allocate();
  size_t prepare_branch(Branch& branch, int64_t pixels, int64_t steps);
  void prepare(int64_t batch, int64_t s2_steps, int64_t s1_steps);
  // Drops every prepared shape and cached primitive (kMaxPreparedShapes).
  void forget_shapes();
  void run_branch(const Branch& branch, const float* input, int64_t batch, int64_t steps,
                  float* pooled, const std::atomic<bool>& interrupted);
  void run_chunk(const Branch& branch, const float* input, int64_t batch, int64_t steps,
                 float* pooled, const std::atomic<bool>& interrupted);
  void run_encoder_layer(const Branch& branch, const EncoderLayer& layer, int64_t batch,
                         int64_t steps);
  const void* run_qkv(const EncoderLayer& layer, int64_t rows);
  void run_custom_gru(const Branch& branch, int64_t batch, int64_t steps);
  void run_torch_gru(const Branch& branch, int64_t batch, int64_t steps);
  void run_fusion(int64_t batch);
  void finish_int8_output(const NativeLinear& linear, void* y, const float* row_scales, bool relu,
                          int64_t rows, const NativeOperand& out);
  // linear's dst = src @ W for `rows` rows, its time and 2·rows·in·out operations in `stage`.
  void run_linear(Stage stage, NativeLinear& linear, int64_t rows, const void* src, void* dst) {
    const NativeLinearSpec& spec = linear.spec();
    const StageTimer timer(profile, stage, 2.0 * static_cast<double>(rows * spec.in * spec.out));
    linear.run(stream, rows, src, dst, scratchpad.as<void>());
  }
  template <typename Work>
  void timed(Stage stage, Work&& work) {
    const StageTimer timer(profile, stage);
    work();
  }
};

int64_t NativeEngine::State::activation_bytes_per_row() const {
  const int64_t d = dims.d_model;
  const auto low = [](NativeType type) {
    return type == NativeType::f32 ? int64_t{0} : static_cast<int64_t>(bytes_of(type));
  };
  // bands, x, qkv, context, delta and three row scales in float32, and their low copies.
  int64_t bytes = 4 * (std::max(dims.s2.bands, dims.s1.bands) + 6 * d + 3);
  bytes += d * (low(plan.light) + 2 * low(plan.encoder) + 3 * low(plan.attention));
  bytes += dims.ffn * (static_cast<int64_t>(bytes_of(ffn1_output_type())) +
                       (plan.hidden == NativeType::u8 ? 1 : 0));
  // Per pixel: h, z, gh, gn in float32, h_low and rh_low, the fusion's hidden row.
  bytes += 4 * 6 * d + d * (low(plan.light) + static_cast<int64_t>(bytes_of(plan.light)));
  bytes += 4 * dims.fusion_hidden;
  if (!arch.shape.symbolic_steps) {  // each row's scores: heads x steps, float32 and probabilities
    const int64_t longest = std::max(dims.s2.steps, dims.s1.steps);
    bytes += dims.heads * longest * (4 + low(plan.attention));
  }
  return bytes;
}

// max_batch pixels in one chunk (fixed steps) or max_batch x kSymbolicRowsPerPixel rows
// (symbolic steps), but never more rows than kActivationBudgetBytes holds, and never fewer than
// one pixel at the longest steps. Fixed steps: as many scores as a chunk needs. Symbolic steps:
// see kSymbolicScoreFloats.
void NativeEngine::State::plan_capacity() {
  const int64_t longest = std::max(dims.s2.steps, dims.s1.steps);
  const int64_t wanted = max_batch * (arch.shape.symbolic_steps ? kSymbolicRowsPerPixel : longest);
  const int64_t budget_rows = kActivationBudgetBytes / activation_bytes_per_row();
  rows_capacity = std::max(longest, std::min(wanted, budget_rows));
  if (!arch.shape.symbolic_steps) {
    rows_capacity = rows_capacity / longest * longest;  // whole pixels
    score_capacity = rows_capacity * dims.heads * longest;
  } else {
    score_capacity = std::max(dims.heads * longest * longest,
                              std::min(rows_capacity * dims.heads * longest, kSymbolicScoreFloats));
  }
  pixel_capacity = std::min(max_batch, rows_capacity);
}

void NativeEngine::State::load_branch(NativeModel& model, const std::string& b, Branch& branch) {
  const int64_t d = dims.d_model;
  branch.doy_frequencies = day_of_year_frequencies(d, arch.float32_frequencies());
  auto linear = [&](const std::string& name, NativeLinearSpec spec) {
    auto made = std::make_unique<NativeLinear>(engine, spec, model.tensor(name + ".weight"),
                                               model.tensor(name + ".bias"), rows_capacity);
    model.release(name + ".weight");
    return made;
  };
  branch.embed0 =
      linear(b + ".embed.0", {branch.dims.bands, d, NativeType::f32, NativeType::f32, true});
  branch.embed2 = linear(b + ".embed.2", {d, d, plan.light, NativeType::f32, false});
  load_layers(model, b, branch);
  branch.attention =
      std::make_unique<NativeAttention>(engine, d, dims.heads, plan.attention, score_capacity);
  load_pooling(model, b, branch);
  branch.score_w = copy_of(model, b + ".pool.score.weight", d);
  branch.score_b = model.tensor(b + ".pool.score.bias")[0];
}

void NativeEngine::State::load_layers(NativeModel& model, const std::string& b, Branch& branch) {
  const int64_t d = dims.d_model;
  auto linear = [&](const std::string& name, NativeLinearSpec spec) {
    auto made = std::make_unique<NativeLinear>(engine, spec, model.tensor(name + ".weight"),
                                               model.tensor(name + ".bias"), rows_capacity);
    model.release(name + ".weight");
    return made;
  };
  for (int64_t l = 0; l < dims.layers; ++l) {
    const std::string p = b + ".layers." + std::to_string(l);
    EncoderLayer layer;
    // int8 outputs go through an epilogue (row scales, bias): bf16 halves their memory traffic.
    // With QK norm q and k are normalised in float32 before they take the attention's type.
    const NativeType qkv_dst = arch.qk_norm ? NativeType::f32 : plan.attention;
    layer.qkv = linear(p + ".attn.in_proj", {d, 3 * d, plan.encoder, qkv_dst, false});
    layer.out = linear(p + ".attn.out_proj", {d, d, plan.encoder, NativeType::f32, false});
    layer.ffn1 = linear(p + ".ffn.linear1", {d, dims.ffn, plan.encoder, ffn1_output_type(), true});
    layer.ffn2 = linear(p + ".ffn.linear2", {dims.ffn, d, plan.hidden, NativeType::f32, false});
    layer.norm1_gamma = copy_of(model, p + ".norm1.weight", d);
    layer.norm1_beta = copy_of(model, p + ".norm1.bias", d);
    layer.norm2_gamma = copy_of(model, p + ".norm2.weight", d);
    layer.norm2_beta = copy_of(model, p + ".norm2.bias", d);
    if (arch.qk_norm) {
      layer.q_gain = copy_of(model, p + ".attn.q_norm.weight", d / dims.heads);
      layer.k_gain = copy_of(model, p + ".attn.k_norm.weight", d / dims.heads);
    }
    branch.layers.push_back(std::move(layer));
  }
}

void NativeEngine::State::load_pooling(NativeModel& model, const std::string& b, Branch& branch) {
  const int64_t d = dims.d_model;
  const auto make = [&](NativeLinearSpec spec, const float* w, const float* bias, int64_t rows) {
    return std::make_unique<NativeLinear>(engine, spec, w, bias, rows);
  };
  if (arch.pooling == Pooling::kTorchGru) {
    const std::string r = b + ".pool.rnn.";
    branch.gru_input =
        make({d, 3 * d, plan.encoder, NativeType::f32, false}, model.tensor(r + "weight_ih"),
             model.tensor(r + "bias_ih"), rows_capacity);
    branch.gru_hidden =
        make({d, 3 * d, plan.light, NativeType::f32, false}, model.tensor(r + "weight_hh"),
             model.tensor(r + "bias_hh"), pixel_capacity);
  } else if (arch.pooling == Pooling::kCustomGru) {
    const std::string g = b + ".pool.gru.";
    const std::vector<float> input_w = side_by_side(model, {g + "W_ir", g + "W_iz", g + "W_ih"}, d);
    std::vector<float> input_b;
    for (const char* bias : {"b_r", "b_z", "b_h"}) {
      const std::vector<float> part = copy_of(model, g + bias, d);
      input_b.insert(input_b.end(), part.begin(), part.end());
    }
    branch.gru_input = make({d, 3 * d, plan.encoder, NativeType::f32, false}, input_w.data(),
                            input_b.data(), rows_capacity);
    const std::vector<float> reset_w = side_by_side(model, {g + "W_hr", g + "W_hz"}, d);
    branch.gru_reset = make({d, 2 * d, plan.light, NativeType::f32, false}, reset_w.data(), nullptr,
                            pixel_capacity);
    branch.gru_hidden = make({d, d, plan.light, NativeType::f32, false}, model.tensor(g + "W_hh"),
                             nullptr, pixel_capacity);
    branch.pool_gamma = copy_of(model, b + ".pool.norm.weight", d);
    branch.pool_beta = copy_of(model, b + ".pool.norm.bias", d);
  }
}

void NativeEngine::State::load_fusion(NativeModel& model) {
  const int64_t in = 2 * dims.d_model, latent = dims.latent;
  const NativeType f32 = NativeType::f32;
  if (dims.fusion_hidden == 0) {
    fusion.first = std::make_unique<NativeLinear>(engine, NativeLinearSpec{in, latent, f32, f32},
                                                  model.tensor("fusion.weight"),
                                                  model.tensor("fusion.bias"), pixel_capacity);
    return;
  }
  const int64_t hidden = dims.fusion_hidden;
  fusion.first = std::make_unique<NativeLinear>(
      engine, NativeLinearSpec{in, hidden, f32, f32}, model.tensor("fusion.linear1.weight"),
      model.tensor("fusion.linear1.bias"), pixel_capacity);
  fusion.norm_gamma = copy_of(model, "fusion.norm.weight", hidden);
  fusion.norm_beta = copy_of(model, "fusion.norm.bias", hidden);
  // Only the kept outputs are computed: columns are independent.
  const std::vector<float> second_w =
      first_columns(model, "fusion.linear2.weight", hidden, dims.fusion_width, latent);
  fusion.second = std::make_unique<NativeLinear>(
      engine, NativeLinearSpec{hidden, latent, f32, f32}, second_w.data(),
      model.tensor("fusion.linear2.bias"), pixel_capacity);
  fusion.final_norm = arch.final_norm;
}

void NativeEngine::State::allocate() {
  const int64_t d = dims.d_model;
  const int64_t rows = rows_capacity;
  const auto f32 = [](int64_t count) { return NativeBuffer(static_cast<size_t>(count) * 4); };
  const auto low = [&](NativeType type, int64_t count) {
    return type == NativeType::f32 ? NativeBuffer()
                                   : NativeBuffer(static_cast<size_t>(count) * bytes_of(type));
  };
  s2_in = f32(max_batch * dims.s2.steps * (dims.s2.bands + 1));
  s1_in = f32(max_batch * dims.s1.steps * (dims.s1.bands + 1));
  out = f32(max_batch * dims.latent);
  bands = f32(rows * std::max(dims.s2.bands, dims.s1.bands));
  embedded = low(plan.light, rows * d);
  x = f32(rows * d);
  x_low = low(plan.encoder, rows * d);
  x_scales = f32(rows);
  qkv = f32(rows * 3 * d);
  qkv_low = low(plan.attention, rows * 3 * d);
  scores = f32(score_capacity);
  probabilities = low(plan.attention, score_capacity);
  context = f32(rows * d);
  context_low = low(plan.encoder, rows * d);
  context_scales = f32(rows);
  delta = f32(rows * d);
  hidden = NativeBuffer(static_cast<size_t>(rows * dims.ffn) * bytes_of(ffn1_output_type()));
  hidden_low = plan.hidden == NativeType::u8 ? NativeBuffer(static_cast<size_t>(rows * dims.ffn))
                                             : NativeBuffer();
  hidden_scales = f32(rows);
  h = f32(pixel_capacity * d);
  h_low = low(plan.light, pixel_capacity * d);
  z = f32(pixel_capacity * d);
  gh = f32(pixel_capacity * 3 * d);
  gn = f32(pixel_capacity * d);
  rh_low = NativeBuffer(static_cast<size_t>(pixel_capacity * d) * bytes_of(plan.light));
  pooled = f32(max_batch * 2 * d);
  fusion_hidden = f32(pixel_capacity * dims.fusion_hidden);
}

int64_t NativeEngine::State::planned_bytes() const {
  const int64_t pixel_floats = dims.s2.steps * (dims.s2.bands + 1) +
                               dims.s1.steps * (dims.s1.bands + 1) + dims.latent + 2 * dims.d_model;
  const int64_t scores = arch.shape.symbolic_steps ? score_capacity * (4 + 2) : 0;  // else per row
  return max_batch * pixel_floats * 4 + rows_capacity * activation_bytes_per_row() + scores;
}

// Bytes of every buffer allocate() makes (the scratchpad and the weights aside).
size_t NativeEngine::State::buffer_bytes() const {
  size_t bytes = 0;
  for (const NativeBuffer* b : {&s2_in,
                                &s1_in,
                                &out,
                                &bands,
                                &embedded,
                                &x,
                                &x_low,
                                &x_scales,
                                &qkv,
                                &qkv_low,
                                &scores,
                                &probabilities,
                                &context,
                                &context_low,
                                &context_scales,
                                &delta,
                                &hidden,
                                &hidden_low,
                                &hidden_scales,
                                &h,
                                &h_low,
                                &z,
                                &gh,
                                &gn,
                                &rh_low,
                                &pooled,
                                &fusion_hidden})
    bytes += b->bytes();
  return bytes;
}

NativeOperand NativeEngine::State::x_operand() const {
  if (plan.encoder == NativeType::f32)
    return {NativeType::f32, dims.d_model, x.as<float>(), nullptr};
  return {plan.encoder, dims.d_model, x_low.as<void>(), x_scales.as<float>()};
}

NativeOperand NativeEngine::State::context_operand() const {
  if (plan.encoder == NativeType::f32)
    return {NativeType::f32, dims.d_model, context.as<float>(), nullptr};
  return {plan.encoder, dims.d_model, context_low.as<void>(), context_scales.as<float>()};
}

// FFN2's input: FFN1's own output for fp32 and bf16, its u8 quantisation for int8.
NativeOperand NativeEngine::State::hidden_operand() const {
  if (plan.hidden != NativeType::u8) return {plan.hidden, dims.ffn, hidden.as<void>(), nullptr};
  return {NativeType::u8, dims.ffn, hidden_low.as<void>(), hidden_scales.as<float>()};
}

NativeOperand NativeEngine::State::h_operand() const {
  if (plan.light == NativeType::f32) return {NativeType::f32, dims.d_model, h.as<float>(), nullptr};
  return {plan.light, dims.d_model, h_low.as<void>(), nullptr};
}

NativeOperand NativeEngine::State::rh_operand() const {
  return {plan.light, dims.d_model, rh_low.as<void>(), nullptr};
}

// The primitives of one chunk of `pixels` pixels of `steps` steps; returns their scratchpad bytes.
size_t NativeEngine::State::prepare_branch(Branch& branch, int64_t pixels, int64_t steps) {
  const int64_t rows = pixels * steps;
  size_t bytes = branch.attention->prepare(pixels, steps);
  for (NativeLinear* linear : {branch.embed0.get(), branch.embed2.get(), branch.gru_input.get()})
    if (linear) bytes = std::max(bytes, linear->prepare(rows));
  for (NativeLinear* linear : {branch.gru_reset.get(), branch.gru_hidden.get()})
    if (linear) bytes = std::max(bytes, linear->prepare(pixels));
  for (const EncoderLayer& layer : branch.layers) {
    for (NativeLinear* linear :
         {layer.qkv.get(), layer.out.get(), layer.ffn1.get(), layer.ffn2.get()})
      bytes = std::max(bytes, linear->prepare(rows));
  }
  return bytes;
}

// Length buckets give every tile new run shapes (each group's last batch has its own size): past
// this many, every cached primitive is dropped and made again as runs need them, so that an
// engine kept for a run of many tiles does not grow without bound (a primitive set is built in
// milliseconds; a tile's runs take hours of one core).
constexpr size_t kMaxPreparedShapes = 128;

void NativeEngine::State::forget_shapes() {
  prepared.clear();
  for (Branch* branch : {&s2, &s1}) {
    branch->attention->forget_primitives();
    for (NativeLinear* linear :
         {branch->embed0.get(), branch->embed2.get(), branch->gru_input.get(),
          branch->gru_reset.get(), branch->gru_hidden.get()})
      if (linear) linear->forget_primitives();
    for (EncoderLayer& layer : branch->layers) {
      for (NativeLinear* linear :
           {layer.qkv.get(), layer.out.get(), layer.ffn1.get(), layer.ffn2.get()})
        linear->forget_primitives();
    }
  }
  for (NativeLinear* linear : {fusion.first.get(), fusion.second.get()})
    if (linear) linear->forget_primitives();
}

// Creates the primitives of a run of `batch` pixels at these steps (once per shape: the chunks of
// both branches and the fusion) and grows the scratchpad to the largest any of them needs. The
// shape counts as prepared only once the scratchpad fits it: a failure on the way (out of memory)
// leaves it unprepared, and the next run of it prepares it again.
void NativeEngine::State::prepare(int64_t batch, int64_t s2_steps, int64_t s1_steps) {
  const std::tuple<int64_t, int64_t, int64_t> shape{batch, s2_steps, s1_steps};
  if (prepared.count(shape)) return;
  const StageTimer timer(profile, Stage::kPrimitiveCreation);
  if (prepared.size() >= kMaxPreparedShapes) forget_shapes();
  size_t bytes = 0;
  const int64_t fusion_chunk = even_part(batch, std::min(batch, pixel_capacity));
  for (const int64_t rows : {fusion_chunk, batch - (batch - 1) / fusion_chunk * fusion_chunk}) {
    bytes = std::max(bytes, fusion.first->prepare(rows));
    if (fusion.second) bytes = std::max(bytes, fusion.second->prepare(rows));
  }
  for (auto [branch, steps] : {std::pair{&s2, s2_steps}, std::pair{&s1, s1_steps}}) {
    const int64_t chunk = chunk_pixels(batch, steps);
    const int64_t last = batch - (batch - 1) / chunk * chunk;
    bytes = std::max(bytes, prepare_branch(*branch, chunk, steps));
    if (last != chunk) bytes = std::max(bytes, prepare_branch(*branch, last, steps));
  }
  if (bytes > scratchpad.bytes()) scratchpad = NativeBuffer(bytes);
  prepared.insert(shape);
  if (profile) ++profile->shapes;
}

// The epilogue of an int8 matmul's output y (f32 or bf16, per its spec): out rows =
// row_scales[r] * y[r, :] + bias, then ReLU when asked; `out` may be y itself.
void NativeEngine::State::finish_int8_output(const NativeLinear& linear, void* y,
                                             const float* row_scales, bool relu, int64_t rows,
                                             const NativeOperand& out) {
  const StageTimer timer(profile, Stage::kActivationConversion);
  const int64_t cols = linear.spec().out;
  if (linear.spec().dst == NativeType::bf16) {
    finish_bf16_rows(static_cast<const uint16_t*>(y), row_scales, linear.epilogue_bias(), relu,
                     rows, cols, out);
  } else {
    finish_rows(static_cast<float*>(y), row_scales, linear.epilogue_bias(), relu, rows, cols,
                out.data == y ? nullptr : &out);
  }
}

// q, k, v of x_operand's rows in the attention's type: straight from the matmul, or through the
// int8 epilogue and/or the QK RMSNorm (both in float32). Returns where they are.
const void* NativeEngine::State::run_qkv(const EncoderLayer& layer, int64_t rows) {
  const int64_t d = dims.d_model;
  const NativeOperand x_op = x_operand();
  void* attention_qkv = plan.attention != NativeType::f32 ? qkv_low.as<void>() : qkv.as<void>();
  const NativeOperand attention_op{plan.attention, 3 * d, attention_qkv, nullptr};
  void* projected = layer.q_gain.empty() ? attention_qkv : qkv.as<void>();
  run_linear(Stage::kGemmQkvOut, *layer.qkv, rows, x_op.data, projected);
  if (layer.qkv->quantized()) {
    finish_int8_output(
        *layer.qkv, projected, x_op.row_scales, false, rows,
        layer.q_gain.empty() ? attention_op : NativeOperand{NativeType::f32, 3 * d, projected});
  }
  if (!layer.q_gain.empty()) {
    const StageTimer timer(profile, Stage::kNormalization);
    rms_normalize_heads(qkv.as<float>(), rows, d, dims.heads, layer.q_gain.data(),
                        layer.k_gain.data(), attention_op);
  }
  return attention_qkv;
}

// x = LN1(x + out_proj(attention(qkv(x)))), then the FFN block, for `batch` pixels of `steps`.
void NativeEngine::State::run_encoder_layer(const Branch& branch, const EncoderLayer& layer,
                                            int64_t batch, int64_t steps) {
  const int64_t d = dims.d_model;
  const int64_t rows = batch * steps;
  void* scratch = scratchpad.as<void>();
  const NativeOperand x_op = x_operand(), context_op = context_operand();
  const NativeOperand hidden_op = hidden_operand();
  const auto scales_of = [](const NativeLinear& linear, const NativeOperand& operand) {
    return linear.quantized() ? operand.row_scales : nullptr;
  };
  const void* attention_qkv = run_qkv(layer, rows);
  void* probabilities_out =
      plan.attention != NativeType::f32 ? probabilities.as<void>() : scores.as<void>();
  branch.attention->run(stream, batch, steps, attention_qkv, scores.as<float>(), probabilities_out,
                        context.as<float>(), scratch, profile);
  if (context_op.type != NativeType::f32)
    timed(Stage::kActivationConversion, [&] { store_rows(context.as<float>(), rows, context_op); });
  run_linear(Stage::kGemmQkvOut, *layer.out, rows, context_op.data, delta.as<void>());
  timed(Stage::kNormalization, [&] {
    add_and_normalize(x.as<float>(), delta.as<float>(), scales_of(*layer.out, context_op),
                      layer.out->epilogue_bias(), layer.norm1_gamma.data(), layer.norm1_beta.data(),
                      rows, d, x_op);
  });
  run_linear(Stage::kGemmFfn, *layer.ffn1, rows, x_op.data, hidden.as<void>());
  if (layer.ffn1->quantized())
    finish_int8_output(*layer.ffn1, hidden.as<void>(), x_op.row_scales, true, rows, hidden_op);
  run_linear(Stage::kGemmFfn, *layer.ffn2, rows, hidden_op.data, delta.as<void>());
  timed(Stage::kNormalization, [&] {
    add_and_normalize(x.as<float>(), delta.as<float>(), scales_of(*layer.ffn2, hidden_op),
                      layer.ffn2->epilogue_bias(), layer.norm2_gamma.data(),
                      layer.norm2_beta.data(), rows, d, x_op);
  });
}

// The custom GRU over the encoder output (x_operand) of `batch` sequences; every step's state
// goes to `delta` ([batch * steps, d]).
void NativeEngine::State::run_custom_gru(const Branch& branch, int64_t batch, int64_t steps) {
  const int64_t d = dims.d_model;
  const NativeOperand x_op = x_operand(), h_op = h_operand(), rh_op = rh_operand();
  run_linear(Stage::kGemmGruInput, *branch.gru_input, batch * steps, x_op.data, qkv.as<void>());
  if (branch.gru_input->quantized()) {
    finish_int8_output(*branch.gru_input, qkv.as<void>(), x_op.row_scales, false, batch * steps,
                       {NativeType::f32, 3 * d, qkv.as<void>(), nullptr});
  }
  NativeGruStep step{qkv.as<float>(),  batch, steps, d, 0, h.as<float>(), z.as<float>(),
                     delta.as<float>()};
  timed(Stage::kGruGates, [&] { gru_first_step(step, h_op); });
  for (step.t = 1; step.t < steps; ++step.t) {
    run_linear(Stage::kGemmGruRecurrent, *branch.gru_reset, batch, h_op.data, gh.as<void>());
    timed(Stage::kGruGates, [&] { gru_gates(step, gh.as<float>(), rh_op); });
    run_linear(Stage::kGemmGruRecurrent, *branch.gru_hidden, batch, rh_op.data, gn.as<void>());
    timed(Stage::kGruGates, [&] { gru_update(step, gn.as<float>(), h_op); });
  }
}

// nn.GRU (v1.0 early) over the encoder output of `batch` sequences from h = 0, every step
// computed in full (h = 0 still gives h @ W_hh + b_hh = b_hh); states go to `delta`.
void NativeEngine::State::run_torch_gru(const Branch& branch, int64_t batch, int64_t steps) {
  const int64_t d = dims.d_model;
  const NativeOperand x_op = x_operand(), h_op = h_operand();
  run_linear(Stage::kGemmGruInput, *branch.gru_input, batch * steps, x_op.data, qkv.as<void>());
  if (branch.gru_input->quantized()) {
    finish_int8_output(*branch.gru_input, qkv.as<void>(), x_op.row_scales, false, batch * steps,
                       {NativeType::f32, 3 * d, qkv.as<void>(), nullptr});
  }
  timed(Stage::kGruGates, [&] {
    std::fill(h.as<float>(), h.as<float>() + batch * d, 0.0f);
    store_rows(h.as<float>(), batch, h_op);
  });
  NativeGruStep step{qkv.as<float>(),  batch, steps, d, 0, h.as<float>(), z.as<float>(),
                     delta.as<float>()};
  for (step.t = 0; step.t < steps; ++step.t) {
    run_linear(Stage::kGemmGruRecurrent, *branch.gru_hidden, batch, h_op.data, gh.as<void>());
    timed(Stage::kGruGates, [&] { torch_gru_step(step, gh.as<float>(), h_op); });
  }
}

// One chunk of `batch` pixels: embedding, encoder, pooling into pooled (row stride 2d).
void NativeEngine::State::run_chunk(const Branch& branch, const float* input, int64_t batch,
                                    int64_t steps, float* pooled_out,
                                    const std::atomic<bool>& interrupted) {
  const auto check = [&] {
    if (interrupted) throw Error("native engine: run interrupted");
  };
  const int64_t d = dims.d_model;
  const int64_t rows = batch * steps;
  const int64_t features = branch.dims.bands + 1;
  timed(Stage::kInputFeatures,
        [&] { gather_bands(input, rows, features, branch.dims.bands, bands.as<float>()); });
  run_linear(Stage::kGemmEmbedding, *branch.embed0, rows, bands.as<void>(), delta.as<void>());
  const void* embedded_src = delta.as<void>();
  if (plan.light != NativeType::f32) {  // the ReLU output in bf16 for the second Linear
    const NativeOperand embedded_op{plan.light, d, embedded.as<void>(), nullptr};
    timed(Stage::kActivationConversion, [&] { store_rows(delta.as<float>(), rows, embedded_op); });
    embedded_src = embedded.as<void>();
  }
  run_linear(Stage::kGemmEmbedding, *branch.embed2, rows, embedded_src, x.as<void>());
  timed(Stage::kInputFeatures, [&] {
    add_day_of_year(x.as<float>(), input, rows, features, d, branch.doy_frequencies.data(),
                    x_operand());
  });
  for (const EncoderLayer& layer : branch.layers) {
    check();
    run_encoder_layer(branch, layer, batch, steps);
  }
  check();
  const float* states = x.as<float>();  // attention pooling scores x itself
  if (arch.pooling != Pooling::kAttention) {
    if (arch.pooling == Pooling::kCustomGru) {
      run_custom_gru(branch, batch, steps);
    } else {
      run_torch_gru(branch, batch, steps);
    }
    states = delta.as<float>();
  }
  const StageTimer timer(profile, Stage::kPooling);
  attention_pool(states, x.as<float>(),
                 branch.pool_gamma.empty() ? nullptr : branch.pool_gamma.data(),
                 branch.pool_beta.empty() ? nullptr : branch.pool_beta.data(),
                 branch.score_w.data(), branch.score_b, batch, steps, d, pooled_out, 2 * d);
}

// A branch run of `batch` pixels in chunks of chunk_pixels (the input packed at `steps`).
void NativeEngine::State::run_branch(const Branch& branch, const float* input, int64_t batch,
                                     int64_t steps, float* pooled_out,
                                     const std::atomic<bool>& interrupted) {
  const int64_t chunk = chunk_pixels(batch, steps);
  const int64_t features = branch.dims.bands + 1;
  for (int64_t first = 0; first < batch; first += chunk) {
    run_chunk(branch, input + first * steps * features, std::min(chunk, batch - first), steps,
              pooled_out + first * 2 * dims.d_model, interrupted);
  }
}

// pooled [batch, 2d] -> out [batch, latent], in chunks of at most pixel_capacity pixels.
void NativeEngine::State::run_fusion(int64_t batch) {
  const int64_t chunk = even_part(batch, std::min(batch, pixel_capacity));
  for (int64_t first = 0; first < batch; first += chunk) {
    const int64_t n = std::min(chunk, batch - first);
    const float* in = pooled.as<float>() + first * 2 * dims.d_model;
    float* result = out.as<float>() + first * dims.latent;
    if (!fusion.second) {
      run_linear(Stage::kGemmFusion, *fusion.first, n, in, result);
      continue;
    }
    run_linear(Stage::kGemmFusion, *fusion.first, n, in, fusion_hidden.as<void>());
    timed(Stage::kNormalization, [&] {
      normalize_rows(fusion_hidden.as<float>(), n, dims.fusion_hidden, fusion.norm_gamma.data(),
                     fusion.norm_beta.data(), true);
    });
    run_linear(Stage::kGemmFusion, *fusion.second, n, fusion_hidden.as<void>(), result);
    if (fusion.final_norm)
      timed(Stage::kNormalization,
            [&] { normalize_rows(result, n, dims.latent, nullptr, nullptr, false); });
  }
}

NativeEngine::NativeEngine(const std::string& model_path, const NativeEngineOptions& options)
    : options_(options), state_(std::make_unique<State>()) {
  if (options.threads < 1) throw UsageError("native engine: threads must be at least 1");
  if (options.max_batch < 1) throw UsageError("native engine: max_batch must be at least 1");
  omp_set_num_threads(options.threads);
  State& s = *state_;
  s.plan = plan_precision(options.precision);
  NativeModel model(read_model(model_path));
  s.arch = model.description();
  s.dims = model.dims();
  s.s2.dims = s.dims.s2;
  s.s1.dims = s.dims.s1;
  s.max_batch = options.max_batch;
  shape_.s2_steps = s.dims.s2.steps;
  shape_.s2_features = s.dims.s2.bands + 1;
  shape_.s1_steps = s.dims.s1.steps;
  shape_.s1_features = s.dims.s1.bands + 1;
  shape_.output_dim = s.dims.latent;
  shape_.symbolic_steps = s.arch.shape.symbolic_steps;
  s.plan_capacity();
  require_buffer_memory(model_path, "native engine", options.max_batch, s.planned_bytes());
  s.load_branch(model, "s2", s.s2);
  s.load_branch(model, "s1", s.s1);
  s.load_fusion(model);
  s.allocate();
  if (!s.arch.shape.symbolic_steps) s.prepare(options.max_batch, s.dims.s2.steps, s.dims.s1.steps);
}

NativeEngine::~NativeEngine() = default;

int64_t NativeEngine::buffer_bytes() const {
  return static_cast<int64_t>(state_->buffer_bytes());
}

bool NativeEngine::set_stage_profile(StageProfile* profile) {
  state_->profile = profile;
  return true;
}

int64_t NativeEngine::activation_rows() const {
  return state_->rows_capacity;
}

float* NativeEngine::s2_input() {
  return state_->s2_in.as<float>();
}
float* NativeEngine::s1_input() {
  return state_->s1_in.as<float>();
}
const float* NativeEngine::output() const {
  return state_->out.as<float>();
}

void NativeEngine::run(int64_t batch) {
  if (batch < 1 || batch > options_.max_batch) {
    throw Error("native engine: batch " + std::to_string(batch) + " is outside 1.." +
                std::to_string(options_.max_batch));
  }
  omp_set_num_threads(options_.threads);
  State& s = *state_;
  const RunTimer whole(s.profile);
  const int64_t s2 = s2_steps(), s1 = s1_steps();
  s.prepare(batch, s2, s1);
  s.run_branch(s.s2, s.s2_in.as<float>(), batch, s2, s.pooled.as<float>(), interrupted_);
  s.run_branch(s.s1, s.s1_in.as<float>(), batch, s1, s.pooled.as<float>() + s.dims.d_model,
               interrupted_);
  if (interrupted_) throw Error("native engine: run interrupted");
  s.run_fusion(batch);
  s.stream.wait();
}

void require_native_precision(Precision precision) {
  plan_precision(precision);
}

std::string native_library_version() {
  const dnnl_version_t* v = dnnl_version();
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
         std::to_string(v->patch);
}

}  // namespace tessera
