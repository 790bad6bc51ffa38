#include "tessera/engine/native/native_engine.h"

#include <omp.h>

#include <algorithm>
#include <dnnl.hpp>
#include <vector>

#include "tessera/common/error.h"
#include "tessera/engine/native/native_attention.h"
#include "tessera/engine/native/native_buffer.h"
#include "tessera/engine/native/native_kernels.h"
#include "tessera/engine/native/native_linear.h"
#include "tessera/engine/native/native_model.h"

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
PrecisionPlan plan_precision(const std::string& precision) {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  const auto offers = [&](dnnl::cpu_isa wanted) {
    return (static_cast<unsigned>(isa) & static_cast<unsigned>(wanted)) ==
           static_cast<unsigned>(wanted);
  };
  if (precision == "fp32") return {};
  if (precision == "bf16") {
    if (!offers(dnnl::cpu_isa::avx512_core_bf16)) {
      throw Error(
          std::string("--precision bf16 needs a CPU with AVX512_BF16 or AMX (this one offers ") +
          isa_name(isa) + ")");
    }
    return {NativeType::bf16, NativeType::bf16, NativeType::bf16, NativeType::bf16};
  }
  if (precision == "int8") {
    if (!offers(dnnl::cpu_isa::avx512_core_vnni)) {
      throw Error(
          std::string("--precision int8 needs a CPU with AVX512_VNNI or AMX (this one offers ") +
          isa_name(isa) + ")");
    }
    const NativeType light =
        offers(dnnl::cpu_isa::avx512_core_bf16) ? NativeType::bf16 : NativeType::f32;
    return {NativeType::s8, NativeType::u8, light, light};
  }
  throw UsageError("unknown precision '" + precision + "' (expected fp32, bf16 or int8)");
}

size_t bytes_of(NativeType type) {
  return type == NativeType::f32 ? 4 : type == NativeType::bf16 ? 2 : 1;
}

struct EncoderLayer {
  std::unique_ptr<NativeLinear> qkv, out, ffn1, ffn2;
  std::vector<float> norm1_gamma, norm1_beta, norm2_gamma, norm2_beta;
};

struct Branch {
  NativeBranchDims dims;
  std::unique_ptr<NativeLinear> embed0, embed2;
  std::unique_ptr<NativeAttention> attention;
  std::vector<EncoderLayer> layers;
  std::unique_ptr<NativeLinear> gru_input;   // [W_ir | W_iz | W_ih] + [b_r | b_z | b_h]
  std::unique_ptr<NativeLinear> gru_reset;   // [W_hr | W_hz], no bias
  std::unique_ptr<NativeLinear> gru_hidden;  // W_hh, no bias
  std::vector<float> pool_gamma, pool_beta, score_w;
  float score_b = 0.0f;
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

}  // namespace

// Everything a NativeEngine computes with. The two branches run one after the other through
// the same activation buffers; the operands (x_operand() ...) are views of those buffers in the
// type their matmul reads, aliasing the float32 ones in fp32 runs.
struct NativeEngine::State {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  PrecisionPlan plan;
  NativeModelDims dims;
  Branch s2, s1;
  std::unique_ptr<NativeLinear> fusion;
  std::vector<int64_t> prepared_batches;
  NativeBuffer scratchpad;
  // Activations, sized for the longer branch at max_batch (shared by the branches in turn).
  NativeBuffer s2_in, s1_in, out, bands, embedded, x, x_low, x_scales, qkv, qkv_low, scores,
      probabilities, context, context_low, context_scales, delta, hidden, hidden_low, hidden_scales,
      h, h_low, z, gh, gn, rh_low, pooled;

  // FFN1's output: FFN2's input for fp32 and bf16; for int8 the epilogue's, bf16 where it can.
  NativeType ffn1_output_type() const {
    return plan.hidden == NativeType::u8 ? plan.light : plan.hidden;
  }
  NativeOperand x_operand() const;
  NativeOperand context_operand() const;
  NativeOperand hidden_operand() const;
  NativeOperand h_operand() const;
  NativeOperand rh_operand() const;
  void load_branch(NativeModel& model, const std::string& b, Branch& branch, int64_t max_batch);
  void allocate(int64_t max_batch);
  void prepare_batch(int64_t batch);
  void run_branch(const Branch& branch, const float* input, int64_t batch, float* pooled,
                  const std::atomic<bool>& interrupted);
  void run_encoder_layer(const Branch& branch, const EncoderLayer& layer, int64_t batch);
  void run_gru(const Branch& branch, int64_t batch);
  void finish_int8_output(const NativeLinear& linear, void* y, const float* row_scales, bool relu,
                          int64_t rows, const NativeOperand& out);
};

void NativeEngine::State::load_branch(NativeModel& model, const std::string& b, Branch& branch,
                                      int64_t max_batch) {
  const int64_t d = dims.d_model;
  const int64_t rows = max_batch * branch.dims.steps;
  auto linear = [&](const std::string& name, NativeLinearSpec spec, int64_t first_rows) {
    auto made = std::make_unique<NativeLinear>(engine, spec, model.tensor(name + ".weight"),
                                               model.tensor(name + ".bias"), first_rows);
    model.release(name + ".weight");
    return made;
  };
  branch.embed0 =
      linear(b + ".embed.0", {branch.dims.bands, d, NativeType::f32, NativeType::f32, true}, rows);
  branch.embed2 = linear(b + ".embed.2", {d, d, plan.light, NativeType::f32, false}, rows);
  for (int64_t l = 0; l < dims.layers; ++l) {
    const std::string p = b + ".layers." + std::to_string(l);
    EncoderLayer layer;
    // int8 outputs go through an epilogue (row scales, bias): bf16 halves their memory traffic.
    const NativeType qkv_dst = plan.attention;
    layer.qkv = linear(p + ".attn.in_proj", {d, 3 * d, plan.encoder, qkv_dst, false}, rows);
    layer.out = linear(p + ".attn.out_proj", {d, d, plan.encoder, NativeType::f32, false}, rows);
    const NativeType ffn1_dst = ffn1_output_type();
    layer.ffn1 = linear(p + ".ffn.linear1", {d, dims.ffn, plan.encoder, ffn1_dst, true}, rows);
    layer.ffn2 =
        linear(p + ".ffn.linear2", {dims.ffn, d, plan.hidden, NativeType::f32, false}, rows);
    layer.norm1_gamma = copy_of(model, p + ".norm1.weight", d);
    layer.norm1_beta = copy_of(model, p + ".norm1.bias", d);
    layer.norm2_gamma = copy_of(model, p + ".norm2.weight", d);
    layer.norm2_beta = copy_of(model, p + ".norm2.bias", d);
    branch.layers.push_back(std::move(layer));
  }
  branch.attention =
      std::make_unique<NativeAttention>(engine, branch.dims.steps, d, dims.heads, plan.attention);
  const std::string g = b + ".pool.gru.";
  const std::vector<float> input_w = side_by_side(model, {g + "W_ir", g + "W_iz", g + "W_ih"}, d);
  std::vector<float> input_b;
  for (const char* bias : {"b_r", "b_z", "b_h"}) {
    const std::vector<float> part = copy_of(model, g + bias, d);
    input_b.insert(input_b.end(), part.begin(), part.end());
  }
  branch.gru_input = std::make_unique<NativeLinear>(
      engine, NativeLinearSpec{d, 3 * d, plan.encoder, NativeType::f32, false}, input_w.data(),
      input_b.data(), rows);
  const std::vector<float> reset_w = side_by_side(model, {g + "W_hr", g + "W_hz"}, d);
  branch.gru_reset = std::make_unique<NativeLinear>(
      engine, NativeLinearSpec{d, 2 * d, plan.light, NativeType::f32, false}, reset_w.data(),
      nullptr, max_batch);
  branch.gru_hidden = std::make_unique<NativeLinear>(
      engine, NativeLinearSpec{d, d, plan.light, NativeType::f32, false}, model.tensor(g + "W_hh"),
      nullptr, max_batch);
  branch.pool_gamma = copy_of(model, b + ".pool.norm.weight", d);
  branch.pool_beta = copy_of(model, b + ".pool.norm.bias", d);
  branch.score_w = copy_of(model, b + ".pool.score.weight", d);
  branch.score_b = model.tensor(b + ".pool.score.bias")[0];
}

void NativeEngine::State::allocate(int64_t max_batch) {
  const int64_t d = dims.d_model;
  const int64_t rows = max_batch * std::max(dims.s2.steps, dims.s1.steps);
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
  const int64_t score_count =
      max_batch * dims.heads *
      std::max(dims.s2.steps * dims.s2.steps, dims.s1.steps * dims.s1.steps);
  scores = f32(score_count);
  probabilities = low(plan.attention, score_count);
  context = f32(rows * d);
  context_low = low(plan.encoder, rows * d);
  context_scales = f32(rows);
  delta = f32(rows * d);
  hidden = NativeBuffer(static_cast<size_t>(rows * dims.ffn) * bytes_of(ffn1_output_type()));
  hidden_low = plan.hidden == NativeType::u8 ? NativeBuffer(static_cast<size_t>(rows * dims.ffn))
                                             : NativeBuffer();
  hidden_scales = f32(rows);
  h = f32(max_batch * d);
  h_low = low(plan.light, max_batch * d);
  z = f32(max_batch * d);
  gh = f32(max_batch * 2 * d);
  gn = f32(max_batch * d);
  rh_low = NativeBuffer(static_cast<size_t>(max_batch * d) * bytes_of(plan.light));
  pooled = f32(max_batch * 2 * d);
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

// Creates the primitives for `batch` pixels (once per batch size) and grows the scratchpad to
// the largest any of them needs.
void NativeEngine::State::prepare_batch(int64_t batch) {
  if (std::find(prepared_batches.begin(), prepared_batches.end(), batch) != prepared_batches.end())
    return;
  size_t bytes = fusion->prepare(batch);
  for (Branch* branch : {&s2, &s1}) {
    const int64_t rows = batch * branch->dims.steps;
    for (NativeLinear* linear :
         {branch->embed0.get(), branch->embed2.get(), branch->gru_input.get()})
      bytes = std::max(bytes, linear->prepare(rows));
    for (NativeLinear* linear : {branch->gru_reset.get(), branch->gru_hidden.get()})
      bytes = std::max(bytes, linear->prepare(batch));
    bytes = std::max(bytes, branch->attention->prepare(batch));
    for (const EncoderLayer& layer : branch->layers) {
      for (NativeLinear* linear :
           {layer.qkv.get(), layer.out.get(), layer.ffn1.get(), layer.ffn2.get()})
        bytes = std::max(bytes, linear->prepare(rows));
    }
  }
  if (bytes > scratchpad.bytes()) scratchpad = NativeBuffer(bytes);
  prepared_batches.push_back(batch);
}

// The epilogue of an int8 matmul's output y (f32 or bf16, per its spec): out rows =
// row_scales[r] * y[r, :] + bias, then ReLU when asked; `out` may be y itself.
void NativeEngine::State::finish_int8_output(const NativeLinear& linear, void* y,
                                             const float* row_scales, bool relu, int64_t rows,
                                             const NativeOperand& out) {
  const int64_t cols = linear.spec().out;
  if (linear.spec().dst == NativeType::bf16) {
    finish_bf16_rows(static_cast<const uint16_t*>(y), row_scales, linear.epilogue_bias(), relu,
                     rows, cols, out);
  } else {
    finish_rows(static_cast<float*>(y), row_scales, linear.epilogue_bias(), relu, rows, cols,
                out.data == y ? nullptr : &out);
  }
}

// x = LN1(x + out_proj(attention(qkv(x)))), then the FFN block.
void NativeEngine::State::run_encoder_layer(const Branch& branch, const EncoderLayer& layer,
                                            int64_t batch) {
  const int64_t d = dims.d_model;
  const int64_t rows = batch * branch.dims.steps;
  void* scratch = scratchpad.as<void>();
  const NativeOperand x_op = x_operand(), context_op = context_operand();
  const NativeOperand hidden_op = hidden_operand();
  const auto scales_of = [](const NativeLinear& linear, const NativeOperand& operand) {
    return linear.quantized() ? operand.row_scales : nullptr;
  };
  // q, k, v in the attention's type: straight from the matmul, or through the int8 epilogue.
  const bool low_qkv = plan.attention != NativeType::f32;
  void* qkv_in = low_qkv ? qkv_low.as<void>() : qkv.as<void>();
  layer.qkv->run(stream, rows, x_op.data, qkv_in, scratch);
  if (layer.qkv->quantized()) {
    finish_int8_output(*layer.qkv, qkv_in, x_op.row_scales, false, rows,
                       {plan.attention, 3 * d, qkv_in, nullptr});
  }
  void* probabilities_out = low_qkv ? probabilities.as<void>() : scores.as<void>();
  branch.attention->run(stream, batch, qkv_in, scores.as<float>(), probabilities_out,
                        context.as<float>(), scratch);
  if (context_op.type != NativeType::f32) store_rows(context.as<float>(), rows, context_op);
  layer.out->run(stream, rows, context_op.data, delta.as<void>(), scratch);
  add_and_normalize(x.as<float>(), delta.as<float>(), scales_of(*layer.out, context_op),
                    layer.out->epilogue_bias(), layer.norm1_gamma.data(), layer.norm1_beta.data(),
                    rows, d, x_op);
  layer.ffn1->run(stream, rows, x_op.data, hidden.as<void>(), scratch);
  if (layer.ffn1->quantized())
    finish_int8_output(*layer.ffn1, hidden.as<void>(), x_op.row_scales, true, rows, hidden_op);
  layer.ffn2->run(stream, rows, hidden_op.data, delta.as<void>(), scratch);
  add_and_normalize(x.as<float>(), delta.as<float>(), scales_of(*layer.ffn2, hidden_op),
                    layer.ffn2->epilogue_bias(), layer.norm2_gamma.data(), layer.norm2_beta.data(),
                    rows, d, x_op);
}

// The GRU over the encoder output (x_operand) of `batch` sequences; every step's state goes to
// `delta` ([batch * steps, d]).
void NativeEngine::State::run_gru(const Branch& branch, int64_t batch) {
  const int64_t d = dims.d_model;
  const int64_t steps = branch.dims.steps;
  void* scratch = scratchpad.as<void>();
  const NativeOperand x_op = x_operand(), h_op = h_operand(), rh_op = rh_operand();
  branch.gru_input->run(stream, batch * steps, x_op.data, qkv.as<void>(), scratch);
  if (branch.gru_input->quantized()) {
    finish_int8_output(*branch.gru_input, qkv.as<void>(), x_op.row_scales, false, batch * steps,
                       {NativeType::f32, 3 * d, qkv.as<void>(), nullptr});
  }
  NativeGruStep step{qkv.as<float>(),  batch, steps, d, 0, h.as<float>(), z.as<float>(),
                     delta.as<float>()};
  gru_first_step(step, h_op);
  for (step.t = 1; step.t < steps; ++step.t) {
    branch.gru_reset->run(stream, batch, h_op.data, gh.as<void>(), scratch);
    gru_gates(step, gh.as<float>(), rh_op);
    branch.gru_hidden->run(stream, batch, rh_op.data, gn.as<void>(), scratch);
    gru_update(step, gn.as<float>(), h_op);
  }
}

void NativeEngine::State::run_branch(const Branch& branch, const float* input, int64_t batch,
                                     float* pooled_out, const std::atomic<bool>& interrupted) {
  const auto check = [&] {
    if (interrupted) throw Error("native engine: run interrupted");
  };
  const int64_t d = dims.d_model;
  const int64_t steps = branch.dims.steps;
  const int64_t rows = batch * steps;
  const int64_t features = branch.dims.bands + 1;
  void* scratch = scratchpad.as<void>();
  gather_bands(input, rows, features, branch.dims.bands, bands.as<float>());
  branch.embed0->run(stream, rows, bands.as<void>(), delta.as<void>(), scratch);
  const void* embedded_src = delta.as<void>();
  if (plan.light != NativeType::f32) {  // the ReLU output in bf16 for the second Linear
    const NativeOperand embedded_op{plan.light, d, embedded.as<void>(), nullptr};
    store_rows(delta.as<float>(), rows, embedded_op);
    embedded_src = embedded.as<void>();
  }
  branch.embed2->run(stream, rows, embedded_src, x.as<void>(), scratch);
  add_day_of_year(x.as<float>(), input, rows, features, d, x_operand());
  for (const EncoderLayer& layer : branch.layers) {
    check();
    run_encoder_layer(branch, layer, batch);
  }
  check();
  run_gru(branch, batch);
  attention_pool(delta.as<float>(), x.as<float>(), branch.pool_gamma.data(),
                 branch.pool_beta.data(), branch.score_w.data(), branch.score_b, batch, steps, d,
                 pooled_out, 2 * d);
}

NativeEngine::NativeEngine(const std::string& model_path, const NativeEngineOptions& options)
    : options_(options), state_(std::make_unique<State>()) {
  if (options.threads < 1) throw UsageError("native engine: threads must be at least 1");
  if (options.max_batch < 1) throw UsageError("native engine: max_batch must be at least 1");
  omp_set_num_threads(options.threads);
  State& s = *state_;
  s.plan = plan_precision(options.precision);
  NativeModel model(model_path);
  s.dims = model.dims();
  s.s2.dims = s.dims.s2;
  s.s1.dims = s.dims.s1;
  shape_ = {s.dims.s2.steps, s.dims.s2.bands + 1, s.dims.s1.steps, s.dims.s1.bands + 1,
            s.dims.latent};
  s.load_branch(model, "s2", s.s2, options.max_batch);
  s.load_branch(model, "s1", s.s1, options.max_batch);
  s.fusion = std::make_unique<NativeLinear>(
      s.engine,
      NativeLinearSpec{2 * s.dims.d_model, s.dims.latent, NativeType::f32, NativeType::f32, false},
      model.tensor("fusion.weight"), model.tensor("fusion.bias"), options.max_batch);
  s.allocate(options.max_batch);
  s.prepare_batch(options.max_batch);
}

NativeEngine::~NativeEngine() = default;

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
  s.prepare_batch(batch);
  s.run_branch(s.s2, s.s2_in.as<float>(), batch, s.pooled.as<float>(), interrupted_);
  s.run_branch(s.s1, s.s1_in.as<float>(), batch, s.pooled.as<float>() + s.dims.d_model,
               interrupted_);
  if (interrupted_) throw Error("native engine: run interrupted");
  s.fusion->run(s.stream, batch, s.pooled.as<void>(), s.out.as<void>(), s.scratchpad.as<void>());
  s.stream.wait();
}

void require_native_precision(const std::string& precision) {
  plan_precision(precision);
}

std::string native_library_version() {
  const dnnl_version_t* v = dnnl_version();
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
         std::to_string(v->patch);
}

}  // namespace tessera
