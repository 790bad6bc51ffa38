// The temporal poolings and the fusions of model_graph.h: v1.0's unrolled custom GRU, the Scan
// forms of the custom GRU (v1.1) and of nn.GRU (v1.0 early), v2's attention-only pooling.

#include <cmath>

#include "tessera/model/model_graph.h"

namespace tessera::model_graph {
namespace {

// softmax over time of `score` [B, T, 1], then sum_t w_t * x_t -> `<t>pooled` [B, d].
std::string weighted_sum(GraphBuilder& g, const std::string& score, const std::string& x,
                         const std::string& t) {
  onnx::NodeProto* softmax = g.node("Softmax", {score}, {t + "weights"});
  GraphBuilder::set_int(softmax, "axis", 1);
  const std::string weighted = g.op("Mul", {t + "weights", x}, t + "weighted");
  onnx::NodeProto* sum = g.node("ReduceSum", {weighted, g.const_i64({1})}, {t + "pooled"});
  GraphBuilder::set_int(sum, "keepdims", 0);
  return t + "pooled";
}

// [B, d] zeros for x [B, T, d]: the initial hidden state of a Scan.
std::string zero_state(GraphBuilder& g, const std::string& x, int64_t d, const std::string& t) {
  const std::string shape = g.op("Shape", {x}, t + "x_shape");
  const std::string batch =
      g.op("Slice", {shape, g.const_i64({0}), g.const_i64({1}), g.const_i64({0})}, t + "batch");
  onnx::NodeProto* concat = g.node("Concat", {batch, g.const_i64({d})}, {t + "h0_shape"});
  GraphBuilder::set_int(concat, "axis", 0);
  onnx::NodeProto* zeros = g.node("ConstantOfShape", {t + "h0_shape"}, {t + "h0"});
  onnx::AttributeProto* value = zeros->add_attribute();
  value->set_name("value");
  value->set_type(onnx::AttributeProto::TENSOR);
  value->mutable_t()->set_data_type(onnx::TensorProto::FLOAT);
  value->mutable_t()->add_dims(1);
  value->mutable_t()->add_float_data(0.0f);
  return t + "h0";
}

void add_value(onnx::ValueInfoProto* info, const std::string& name) {
  info->set_name(name);
  info->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
}

// A Scan over axis 1 of `scan_inputs` (each [B, T, w]) from state `h0` [B, d]; the body gets
// `<t>step/h_in` and `<t>step/<scan input i>` and returns `<t>step/h_out` built by `step`.
// Returns the stacked states [B, T, d].
template <typename Step>
std::string scan(GraphBuilder& g, const std::string& h0, const std::vector<std::string>& inputs,
                 const std::vector<std::string>& names, const std::string& t, Step step) {
  onnx::NodeProto* node = g.node("Scan", {}, {t + "h_last", t + "states"});
  node->add_input(h0);
  for (const auto& in : inputs) node->add_input(in);
  GraphBuilder::set_int(node, "num_scan_inputs", static_cast<int64_t>(inputs.size()));
  GraphBuilder::set_ints(node, "scan_input_axes", std::vector<int64_t>(inputs.size(), 1));
  GraphBuilder::set_ints(node, "scan_output_axes", {1});
  onnx::AttributeProto* attr = node->add_attribute();
  attr->set_name("body");
  attr->set_type(onnx::AttributeProto::GRAPH);
  onnx::GraphProto* body = attr->mutable_g();
  body->set_name(t + "step");
  const std::string s = t + "step/";
  add_value(body->add_input(), s + "h_in");
  std::vector<std::string> step_inputs;
  for (const auto& name : names) {
    add_value(body->add_input(), s + name);
    step_inputs.push_back(s + name);
  }
  GraphBuilder b(body, g.weights(), s);
  const std::string h = step(b, s + "h_in", step_inputs, s);
  b.op("Identity", {h}, s + "h_scan");
  add_value(body->add_output(), h);
  add_value(body->add_output(), s + "h_scan");
  return t + "states";
}

// The custom GRU cell unrolled over `steps` fixed steps (v1.0): states [B, T, d].
std::string unrolled_custom_gru(GraphBuilder& g, const std::string& x, int64_t steps,
                                const std::string& t, const std::vector<std::string>& w) {
  // The input projections of all steps at once ([B, T, d] each, bias included), then one
  // [B, 1, d] slice per step. The hidden state stays [B, 1, d] throughout.
  auto per_step = [&](const std::string& weight, const std::string& b, const std::string& name) {
    const std::string projected =
        g.op("Add", {g.op("MatMul", {x, weight}, t + name + "_matmul"), b}, t + name);
    std::vector<std::string> outputs;
    for (int64_t s = 0; s < steps; ++s) outputs.push_back(t + name + "_" + std::to_string(s));
    onnx::NodeProto* split = g.node("Split", {projected}, outputs);
    GraphBuilder::set_int(split, "axis", 1);
    return outputs;
  };
  const std::vector<std::string> xr = per_step(w[0], w[6], "xr");
  const std::vector<std::string> xz = per_step(w[1], w[7], "xz");
  const std::vector<std::string> xh = per_step(w[2], w[8], "xh");
  std::vector<std::string> states;
  std::string h;
  for (int64_t s = 0; s < steps; ++s) {
    const std::string ts = t + "step" + std::to_string(s) + "/";
    if (s == 0) {
      // h0 = 0: every hidden-state product is exactly zero, so h1 = z * tanh(x_h).
      const std::string z = g.op("Sigmoid", {xz[0]}, ts + "z");
      const std::string n = g.op("Tanh", {xh[0]}, ts + "n");
      h = g.op("Mul", {z, n}, ts + "h");
    } else {
      const std::string r =
          g.op("Sigmoid", {g.op("Add", {xr[s], g.op("MatMul", {h, w[3]}, ts + "hr")}, ts + "r_in")},
               ts + "r");
      const std::string z =
          g.op("Sigmoid", {g.op("Add", {xz[s], g.op("MatMul", {h, w[4]}, ts + "hz")}, ts + "z_in")},
               ts + "z");
      const std::string rh = g.op("Mul", {r, h}, ts + "rh");
      const std::string n =
          g.op("Tanh", {g.op("Add", {xh[s], g.op("MatMul", {rh, w[5]}, ts + "hn")}, ts + "n_in")},
               ts + "n");
      // (1 - z) * h + z * n, written as h + z * (n - h)
      const std::string delta = g.op("Mul", {z, g.op("Sub", {n, h}, ts + "n_minus_h")}, ts + "dh");
      h = g.op("Add", {h, delta}, ts + "h");
    }
    states.push_back(h);
  }
  onnx::NodeProto* concat = g.node("Concat", states, {t + "states"});  // [B, T, d]
  GraphBuilder::set_int(concat, "axis", 1);
  return t + "states";
}

// The custom GRU cell as a Scan over any number of steps (v1.1): states [B, T, d].
std::string scanned_custom_gru(GraphBuilder& g, int64_t d, const std::string& x,
                               const std::string& t, const std::vector<std::string>& w) {
  auto project = [&](const std::string& weight, const std::string& b, const std::string& name) {
    return g.op("Add", {g.op("MatMul", {x, weight}, t + name + "_matmul"), b}, t + name);
  };
  const std::vector<std::string> inputs = {project(w[0], w[6], "xr"), project(w[1], w[7], "xz"),
                                           project(w[2], w[8], "xh")};
  const std::string h0 = zero_state(g, x, d, t);
  return scan(
      g, h0, inputs, {"xr", "xz", "xh"}, t,
      [&](GraphBuilder& b, const std::string& h, const std::vector<std::string>& in,
          const std::string& s) {
        const std::string r =
            b.op("Sigmoid", {b.op("Add", {in[0], b.op("MatMul", {h, w[3]}, s + "hr")}, s + "r_in")},
                 s + "r");
        const std::string z =
            b.op("Sigmoid", {b.op("Add", {in[1], b.op("MatMul", {h, w[4]}, s + "hz")}, s + "z_in")},
                 s + "z");
        const std::string rh = b.op("Mul", {r, h}, s + "rh");
        const std::string n =
            b.op("Tanh", {b.op("Add", {in[2], b.op("MatMul", {rh, w[5]}, s + "hn")}, s + "n_in")},
                 s + "n");
        const std::string dh = b.op("Mul", {z, b.op("Sub", {n, h}, s + "n_minus_h")}, s + "dh");
        return b.op("Add", {h, dh}, s + "h_out");
      });
}

}  // namespace

std::string custom_gru_pool(GraphBuilder& g, int64_t d, const std::string& x, int64_t steps,
                            const std::string& p) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(d));
  const std::string t = p + "/";
  const std::string gru = p + ".gru.";
  std::vector<std::string> w;  // W_ir, W_iz, W_ih, W_hr, W_hz, W_hh, b_r, b_z, b_h
  for (const char* name : {"W_ir", "W_iz", "W_ih", "W_hr", "W_hz", "W_hh"}) {
    w.push_back(g.weight(gru + name, {d, d}, bound));
  }
  for (const char* name : {"b_r", "b_z", "b_h"}) w.push_back(g.weight(gru + name, {d}, bound));
  const std::string states =
      steps > 0 ? unrolled_custom_gru(g, x, steps, t, w) : scanned_custom_gru(g, d, x, t, w);
  const std::string context = g.layer_norm(states, p + ".norm", d, t + "context");
  const std::string score = g.linear(context, p + ".score", d, 1, t + "score");  // [B, T, 1]
  return weighted_sum(g, score, x, t);
}

std::string torch_gru_pool(GraphBuilder& g, int64_t d, const std::string& x, const std::string& p) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(d));
  const std::string t = p + "/";
  const std::string w_ih = g.weight(p + ".rnn.weight_ih", {d, 3 * d}, bound);
  const std::string w_hh = g.weight(p + ".rnn.weight_hh", {d, 3 * d}, bound);
  const std::string b_ih = g.weight(p + ".rnn.bias_ih", {3 * d}, bound);
  const std::string b_hh = g.weight(p + ".rnn.bias_hh", {3 * d}, bound);
  const std::string xg = g.op("Add", {g.op("MatMul", {x, w_ih}, t + "xg_matmul"), b_ih}, t + "xg");
  const std::string h0 = zero_state(g, x, d, t);
  const std::string states = scan(
      g, h0, {xg}, {"xg"}, t,
      [&](GraphBuilder& b, const std::string& h, const std::vector<std::string>& in,
          const std::string& s) {
        const std::string hg =
            b.op("Add", {b.op("MatMul", {h, w_hh}, s + "hg_matmul"), b_hh}, s + "hg");
        const std::string thirds = b.const_i64({d, d, d});
        onnx::NodeProto* xs = b.node("Split", {in[0], thirds}, {s + "xr", s + "xz", s + "xn"});
        GraphBuilder::set_int(xs, "axis", 1);
        onnx::NodeProto* hs = b.node("Split", {hg, thirds}, {s + "hr", s + "hz", s + "hn"});
        GraphBuilder::set_int(hs, "axis", 1);
        const std::string r =
            b.op("Sigmoid", {b.op("Add", {s + "xr", s + "hr"}, s + "r_in")}, s + "r");
        const std::string z =
            b.op("Sigmoid", {b.op("Add", {s + "xz", s + "hz"}, s + "z_in")}, s + "z");
        const std::string n = b.op(
            "Tanh", {b.op("Add", {s + "xn", b.op("Mul", {r, s + "hn"}, s + "rhn")}, s + "n_in")},
            s + "n");
        // (1 - z) * n + z * h, written as n + z * (h - n)
        const std::string dh = b.op("Mul", {z, b.op("Sub", {h, n}, s + "h_minus_n")}, s + "dh");
        return b.op("Add", {n, dh}, s + "h_out");
      });
  const std::string score = g.linear(states, p + ".score", d, 1, t + "score");  // [B, T, 1]
  return weighted_sum(g, score, x, t);
}

std::string attention_pool(GraphBuilder& g, int64_t d, const std::string& x, const std::string& p) {
  const std::string t = p + "/";
  const std::string score = g.linear(x, p + ".score", d, 1, t + "score");  // [B, T, 1]
  return weighted_sum(g, score, x, t);
}

std::string linear_fusion(GraphBuilder& g, const std::string& f, int64_t in, int64_t out,
                          const std::string& output) {
  return g.linear(f, "fusion", in, out, output);
}

std::string mlp_fusion(GraphBuilder& g, const std::string& f, int64_t in, int64_t hidden,
                       int64_t width, const std::string& output) {
  const std::string h = g.linear(f, "fusion.linear1", in, hidden, "fusion/linear1");
  const std::string normed = g.layer_norm(h, "fusion.norm", hidden, "fusion/norm");
  const std::string relu = g.op("Relu", {normed}, "fusion/relu");
  return g.linear(relu, "fusion.linear2", hidden, width, output);
}

}  // namespace tessera::model_graph
