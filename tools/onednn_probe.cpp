// onednn_probe: times single oneDNN matmuls at the native engine's shapes, to check what a
// kernel change could gain before making it (docs/PERFORMANCE.md, "The last few per cent: what
// was measured and not kept").
//
//   onednn_probe epilogue [ROWS]     u8 x s8 -> bf16, K 768, N 2304 (v1.1's QKV): per-column
//                                    output scales alone, then with per-row scales and the bias
//                                    as binary post-ops (the int8 epilogue fused)
//   onednn_probe attention T [ROWS]  the attention core's two bf16 batched matmuls at v1.1's
//                                    heads (4 x 192) and T steps: strided views of the QKV rows
//                                    (as the engine runs them), dense q/k/v, dense with k read
//                                    transposed
//
// Built on request: cmake --build build --target onednn_probe. Run it pinned to one core
// (OMP_NUM_THREADS=1 taskset -c 0 build/tools/onednn_probe ...). Each line names the
// implementation oneDNN chose and the best of `kRuns` runs in GFLOP/s (GOP/s for int8).
// A reference implementation ("ref") is named and not timed: it takes minutes.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <dnnl.hpp>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using dnnl::memory;
using dt = memory::data_type;
using tag = memory::format_tag;
using Args = std::unordered_map<int, memory>;

constexpr int kRuns = 12;

struct Probe {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::vector<std::vector<char>> buffers;  // owns what the memories point at

  memory make(const memory::desc& desc) {
    buffers.emplace_back(desc.get_size() + 64, 0);
    return memory(desc, engine, buffers.back().data());
  }

  // Prints the implementation and, unless it is a reference one, the best rate of kRuns.
  void time(const std::string& label, const dnnl::matmul::primitive_desc& pd, Args args,
            double ops) {
    const std::string impl = pd.impl_info_str();
    if (impl.rfind("ref", 0) == 0) {
      std::printf("%-37s %-26s not timed (reference kernel)\n", label.c_str(), impl.c_str());
      return;
    }
    args[DNNL_ARG_SCRATCHPAD] = make(pd.scratchpad_desc());
    const dnnl::matmul matmul(pd);
    double best = 1e30;
    for (int run = 0; run < kRuns; ++run) {
      const auto start = std::chrono::steady_clock::now();
      matmul.execute(stream, args);
      stream.wait();
      const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
      best = std::min(best, took.count());
    }
    std::printf("%-37s %-26s %7.0f\n", label.c_str(), impl.c_str(), ops / best / 1e9);
  }
};

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// The int8 QKV matmul with its epilogue outside (per-column scales only) and fused.
void probe_epilogue(int64_t rows) {
  Probe p;
  const int64_t k = 768, n = 2304;
  const memory::desc src({rows, k}, dt::u8, tag::ab), dst({rows, n}, dt::bf16, tag::ab);
  const memory::desc weights({k, n}, dt::s8, tag::any);
  const memory::desc row_scales({rows, 1}, dt::f32, tag::ab), bias({1, n}, dt::f32, tag::ab);
  const double ops = 2.0 * static_cast<double>(rows * k * n);
  for (const bool fused : {false, true}) {
    dnnl::primitive_attr attr = user_scratchpad();
    attr.set_output_scales(1 << 1, std::vector<float>(static_cast<size_t>(n), 0.01f));
    if (fused) {
      dnnl::post_ops ops;
      ops.append_binary(dnnl::algorithm::binary_mul, row_scales);
      ops.append_binary(dnnl::algorithm::binary_add, bias);
      attr.set_post_ops(ops);
    }
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, weights, dst), attr, p.engine);
    Args args{{DNNL_ARG_SRC, p.make(src)},
              {DNNL_ARG_WEIGHTS, p.make(pd.weights_desc())},
              {DNNL_ARG_DST, p.make(dst)}};
    if (fused) {
      args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1] = p.make(row_scales);
      args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1] = p.make(bias);
    }
    p.time(fused ? "qkv u8s8, row scales + bias fused" : "qkv u8s8, column scales only", pd, args,
           ops);
  }
}

// q.kT and p.v for `rows` rows of `steps` steps in three layouts.
void probe_attention(int64_t steps, int64_t rows) {
  Probe p;
  const int64_t heads = 4, hd = 192, d = heads * hd, row = 3 * d, t = steps;
  const int64_t b = std::max<int64_t>(1, rows / t);
  const double ops = 2.0 * static_cast<double>(b * t * t * d);
  const char* names[] = {"strided (the engine's)", "dense", "dense, k transposed"};
  for (int layout = 0; layout < 3; ++layout) {
    memory::desc q, kt, v, context;
    if (layout == 0) {  // views of [rows, 3d] QKV rows; the context into [rows, d]
      q = memory::desc({b, heads, t, hd}, dt::bf16, memory::dims{t * row, hd, row, 1});
      kt = memory::desc({b, heads, hd, t}, dt::bf16, memory::dims{t * row, hd, 1, row});
      v = q;
      context = memory::desc({b, heads, t, hd}, dt::f32, memory::dims{t * d, hd, d, 1});
    } else {
      q = memory::desc({b, heads, t, hd}, dt::bf16, tag::abcd);
      kt = memory::desc({b, heads, hd, t}, dt::bf16, layout == 1 ? tag::abcd : tag::abdc);
      v = q;
      context = memory::desc({b, heads, t, hd}, dt::f32, tag::abcd);
    }
    const memory::desc scores({b, heads, t, t}, dt::f32, tag::abcd);
    const memory::desc probabilities({b, heads, t, t}, dt::bf16, tag::abcd);
    // One buffer as large as the QKV rows backs q, k and v in every layout.
    const memory qkv = p.make(memory::desc({b * t, row}, dt::bf16, tag::ab));
    const auto view = [&](const memory::desc& desc) {
      return memory(desc, p.engine, qkv.get_data_handle());
    };
    const dnnl::matmul::primitive_desc qk(dnnl::matmul::desc(q, kt, scores), user_scratchpad(),
                                          p.engine);
    const dnnl::matmul::primitive_desc pv(dnnl::matmul::desc(probabilities, v, context),
                                          user_scratchpad(), p.engine);
    const std::string label = std::string(names[layout]) + ", T " + std::to_string(t);
    p.time(label + ": q.kT", qk,
           {{DNNL_ARG_SRC, view(q)}, {DNNL_ARG_WEIGHTS, view(kt)}, {DNNL_ARG_DST, p.make(scores)}},
           ops);
    p.time(label + ": p.v", pv,
           {{DNNL_ARG_SRC, p.make(probabilities)},
            {DNNL_ARG_WEIGHTS, view(v)},
            {DNNL_ARG_DST, p.make(context)}},
           ops);
  }
}

int usage() {
  std::fprintf(stderr, "usage: onednn_probe epilogue [ROWS] | attention T [ROWS]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string what = argv[1];
  std::printf("%-37s %-26s %7s\n", "matmul", "implementation", "G(FL)OP/s");
  if (what == "epilogue") {
    probe_epilogue(argc > 2 ? std::atoll(argv[2]) : 4096);
  } else if (what == "attention" && argc > 2) {
    probe_attention(std::atoll(argv[2]), argc > 3 ? std::atoll(argv[3]) : 4096);
  } else {
    return usage();
  }
  return 0;
}
