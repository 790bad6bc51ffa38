#include "tessera/model/checkpoint_import.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <tuple>

#include "tessera/common/error.h"
#include "tessera/model/model_metadata.h"

namespace tessera {
namespace {

using Tensors = std::map<std::string, const CheckpointTensor*>;

// One initializer of tessera and the checkpoint keys it comes from: transposed PyTorch
// weights concatenated along tessera's output axis, or 1-D tensors concatenated.
struct Entry {
  std::string name;
  std::vector<int64_t> dims;
  std::vector<std::string> keys;
  bool transpose = false;
};

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

// The keys as the upstream loaders see them: v1.x removes every `_orig_mod.` and drops the
// projection heads; v2 loads the state dict as stored.
Tensors normalised(const Checkpoint& c) {
  Tensors out;
  const bool v1 = c.layout != "model";
  for (const auto& [stored, tensor] : c.tensors) {
    std::string key = stored;
    if (v1) {
      for (size_t at; (at = key.find("_orig_mod.")) != std::string::npos;) key.erase(at, 10);
      const auto& dropped = dropped_key_prefixes();
      if (std::any_of(dropped.begin(), dropped.end(),
                      [&](const std::string& p) { return key.rfind(p, 0) == 0; }))
        continue;
    }
    if (!out.emplace(key, &tensor).second)
      throw Error(c.path + ": key " + key + " appears twice (with and without _orig_mod.)");
  }
  return out;
}

// One key's say on a size: axis `axis` of `key`. It counts only when the key has exactly
// `shape`'s rank and every other axis equals `shape`'s (the entry at `axis` is ignored), so a
// transposed or otherwise mis-shaped key has no say and check_keys blames it, not its neighbours.
struct Vote {
  std::string key;
  std::vector<int64_t> shape;
  size_t axis = 0;
};

// The size most counted votes give (ties: the earlier vote), or `fallback` when none counts
// (check_keys then names the missing or mis-shaped key). Sizes above 2^31 - 1 never count.
int64_t decide(const Tensors& t, const std::vector<Vote>& votes, int64_t fallback) {
  std::vector<std::pair<int64_t, int>> counts;  // in the order first seen
  for (const Vote& v : votes) {
    const auto it = t.find(v.key);
    if (it == t.end() || it->second->shape.size() != v.shape.size()) continue;
    const std::vector<int64_t>& s = it->second->shape;
    bool counts_here = s[v.axis] > 0 && s[v.axis] <= INT32_MAX;
    for (size_t i = 0; i < s.size(); ++i) counts_here &= i == v.axis || s[i] == v.shape[i];
    if (!counts_here) continue;
    const auto seen = std::find_if(counts.begin(), counts.end(),
                                   [&](const auto& c) { return c.first == s[v.axis]; });
    if (seen == counts.end())
      counts.emplace_back(s[v.axis], 1);
    else
      ++seen->second;
  }
  int64_t best = fallback;
  int most = 0;
  for (const auto& [value, n] : counts) {
    if (n > most) std::tie(best, most) = std::tie(value, n);
  }
  return best;
}

bool has_prefix(const Tensors& t, const std::string& prefix) {
  const auto it = t.lower_bound(prefix);
  return it != t.end() && it->first.rfind(prefix, 0) == 0;
}

// Layers 0, 1, ... that have any key under `prefix`N.
int count_layers(const Tensors& t, const std::string& prefix) {
  int n = 0;
  while (has_prefix(t, prefix + std::to_string(n) + ".")) ++n;
  return n;
}

int arg_int(const Checkpoint& c, const std::string& name, int fallback) {
  const auto it = c.args.find(name);
  if (it == c.args.end()) return fallback;
  char* end = nullptr;
  const long value = std::strtol(it->second.c_str(), &end, 10);
  if (it->second.empty() || *end != '\0' || value <= 0 || value > 1'000'000)
    throw Error(c.path + ": args." + name + " is '" + it->second +
                "', not a positive whole number");
  return static_cast<int>(value);
}

ArchConfig detect_v2(const Checkpoint& c, const Tensors& t) {
  const bool qk_norm = t.count("s2_backbone.transformer_encoder.0.q_proj.weight") > 0;
  ArchConfig a =
      v2_arch_config(arg_int(c, "latent_dim", 64), arg_int(c, "num_layers", 4),
                     arg_int(c, "nhead", 4), arg_int(c, "dim_feedforward", 1024), qk_norm);
  a.shape.latent = a.fusion_width = arg_int(c, "repr_dim", 128);
  return a;
}

// d_model and ffn of a v1.x state dict, by vote over every key that has them.
void decide_v1_widths(const Tensors& t, ArchConfig& a) {
  std::vector<Vote> d_votes, ffn_votes;
  for (const auto& [b, bands] : {std::pair<std::string, int64_t>{"s2", a.shape.s2_bands},
                                 std::pair<std::string, int64_t>{"s1", a.shape.s1_bands}}) {
    const std::string kb = b + "_backbone.";
    d_votes.push_back({kb + "embedding.0.weight", {0, bands}, 0});
    d_votes.push_back({kb + "embedding.0.bias", {0}, 0});
    d_votes.push_back({kb + "embedding.2.bias", {0}, 0});
    for (int l = 0; l < a.shape.layers; ++l) {
      const std::string kl = kb + "transformer_encoder.layers." + std::to_string(l) + ".";
      for (const char* n : {"norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"})
        d_votes.push_back({kl + n, {0}, 0});
    }
  }
  a.shape.d_model = static_cast<int>(decide(t, d_votes, a.shape.d_model));
  const int64_t d = a.shape.d_model;
  for (const std::string b : {"s2", "s1"}) {
    for (int l = 0; l < a.shape.layers; ++l) {
      const std::string kl = b + "_backbone.transformer_encoder.layers." + std::to_string(l) + ".";
      ffn_votes.push_back({kl + "linear1.weight", {0, d}, 0});
      ffn_votes.push_back({kl + "linear1.bias", {0}, 0});
      ffn_votes.push_back({kl + "linear2.weight", {d, 0}, 1});
    }
  }
  a.shape.ffn = static_cast<int>(decide(t, ffn_votes, a.shape.ffn));
}

ArchConfig detect_v1(const Checkpoint& c, const Tensors& t, int heads) {
  const std::string pool = "s2_backbone.attn_pool.temporal_context.";
  ModelVersion arch = ModelVersion::kV1_0;
  if (t.count(pool + "weight_ih_l0")) {
    arch = ModelVersion::kV1_0Early;
  } else if (t.count(pool + "gru_cell.W_ir.weight")) {
    arch = t.count("dim_reducer.4.weight") ? ModelVersion::kV1_1 : ModelVersion::kV1_0;
  }
  ArchConfig a = default_arch_config(arch);
  a.shape.layers = count_layers(t, "s2_backbone.transformer_encoder.layers.");
  decide_v1_widths(t, a);
  const int64_t d = a.shape.d_model;
  if (!t.count(pool + "weight_ih_l0") && !t.count(pool + "gru_cell.W_ir.weight")) {
    throw Error(c.path + ": unknown checkpoint layout: no " + pool + "weight_ih_l0 " +
                shape_text({3 * d, d}) + " (v1.0 early) and no " + pool + "gru_cell.W_ir.weight " +
                shape_text({d, d}) + " (v1.0, v1.1); not a Tessera v1.x state dict");
  }
  if (heads > 0) a.shape.heads = heads;
  if (arch == ModelVersion::kV1_1) {
    a.fusion_hidden = static_cast<int>(decide(t,
                                              {{"dim_reducer.0.weight", {0, 2 * d}, 0},
                                               {"dim_reducer.0.bias", {0}, 0},
                                               {"dim_reducer.1.weight", {0}, 0},
                                               {"dim_reducer.1.bias", {0}, 0}},
                                              a.fusion_hidden));
    a.fusion_width = static_cast<int>(decide(
        t, {{"dim_reducer.4.weight", {0, a.fusion_hidden}, 0}, {"dim_reducer.4.bias", {0}, 0}},
        a.fusion_width));
    a.shape.latent = std::min(128, a.fusion_width);
  } else {
    a.shape.latent = static_cast<int>(
        decide(t, {{"dim_reducer.0.weight", {0, 2 * d}, 0}, {"dim_reducer.0.bias", {0}, 0}},
               a.shape.latent));
  }
  return a;
}

void add_linear(std::vector<Entry>& e, const std::string& name, const std::string& key, int64_t in,
                int64_t out) {
  e.push_back({name + ".weight", {in, out}, {key + ".weight"}, true});
  e.push_back({name + ".bias", {out}, {key + ".bias"}, false});
}

void add_norm(std::vector<Entry>& e, const std::string& name, const std::string& key, int64_t n) {
  e.push_back({name + ".weight", {n}, {key + ".weight"}, false});
  e.push_back({name + ".bias", {n}, {key + ".bias"}, false});
}

void add_layer(std::vector<Entry>& e, const ArchConfig& a, const std::string& name,
               const std::string& kb, int l) {
  const int64_t d = a.shape.d_model;
  const std::string tl = name + ".layers." + std::to_string(l);
  std::string kl;
  if (a.qk_norm) {
    kl = kb + "transformer_encoder." + std::to_string(l) + ".";
    e.push_back({tl + ".attn.in_proj.weight",
                 {d, 3 * d},
                 {kl + "q_proj.weight", kl + "k_proj.weight", kl + "v_proj.weight"},
                 true});
    e.push_back({tl + ".attn.in_proj.bias",
                 {3 * d},
                 {kl + "q_proj.bias", kl + "k_proj.bias", kl + "v_proj.bias"},
                 false});
    add_linear(e, tl + ".attn.out_proj", kl + "out_proj", d, d);
    const int64_t hd = d / a.shape.heads;
    e.push_back({tl + ".attn.q_norm.weight", {hd}, {kl + "q_norm.weight"}, false});
    e.push_back({tl + ".attn.k_norm.weight", {hd}, {kl + "k_norm.weight"}, false});
  } else {
    kl = kb + "transformer_encoder.layers." + std::to_string(l) + ".";
    e.push_back({tl + ".attn.in_proj.weight", {d, 3 * d}, {kl + "self_attn.in_proj_weight"}, true});
    e.push_back({tl + ".attn.in_proj.bias", {3 * d}, {kl + "self_attn.in_proj_bias"}, false});
    add_linear(e, tl + ".attn.out_proj", kl + "self_attn.out_proj", d, d);
  }
  add_norm(e, tl + ".norm1", kl + "norm1", d);
  add_linear(e, tl + ".ffn.linear1", kl + "linear1", d, a.shape.ffn);
  add_linear(e, tl + ".ffn.linear2", kl + "linear2", a.shape.ffn, d);
  add_norm(e, tl + ".norm2", kl + "norm2", d);
}

void add_pool(std::vector<Entry>& e, const ArchConfig& a, const std::string& name,
              const std::string& kb) {
  const int64_t d = a.shape.d_model;
  const std::string tp = name + ".pool";
  const std::string kp = kb + "attn_pool.";
  if (a.version == ModelVersion::kV1_0Early) {
    const std::string k = kp + "temporal_context.";
    e.push_back({tp + ".rnn.weight_ih", {d, 3 * d}, {k + "weight_ih_l0"}, true});
    e.push_back({tp + ".rnn.weight_hh", {d, 3 * d}, {k + "weight_hh_l0"}, true});
    e.push_back({tp + ".rnn.bias_ih", {3 * d}, {k + "bias_ih_l0"}, false});
    e.push_back({tp + ".rnn.bias_hh", {3 * d}, {k + "bias_hh_l0"}, false});
  } else if (a.version != ModelVersion::kV2) {
    const std::string k = kp + "temporal_context.gru_cell.";
    for (const char* w : {"W_ir", "W_iz", "W_ih", "W_hr", "W_hz", "W_hh"}) {
      e.push_back({tp + ".gru." + w, {d, d}, {k + w + ".weight"}, true});
    }
    for (const char* b : {"b_r", "b_z", "b_h"})
      e.push_back({tp + ".gru." + b, {d}, {k + b}, false});
    add_norm(e, tp + ".norm", kp + "layer_norm", d);
  }
  add_linear(e, tp + ".score", kp + "query", d, 1);
}

std::vector<Entry> expected_entries(const ArchConfig& a) {
  std::vector<Entry> e;
  const int64_t d = a.shape.d_model;
  for (const auto& [name, bands] : {std::pair<std::string, int64_t>{"s2", a.shape.s2_bands},
                                    std::pair<std::string, int64_t>{"s1", a.shape.s1_bands}}) {
    const std::string kb = name + "_backbone.";
    add_linear(e, name + ".embed.0", kb + "embedding.0", bands, d);
    add_linear(e, name + ".embed.2", kb + "embedding.2", d, d);
    for (int l = 0; l < a.shape.layers; ++l) add_layer(e, a, name, kb, l);
    add_pool(e, a, name, kb);
  }
  if (a.fusion_hidden == 0) {
    add_linear(e, "fusion", "dim_reducer.0", 2 * d, a.shape.latent);
  } else {
    add_linear(e, "fusion.linear1", "dim_reducer.0", 2 * d, a.fusion_hidden);
    add_norm(e, "fusion.norm", "dim_reducer.1", a.fusion_hidden);
    add_linear(e, "fusion.linear2", "dim_reducer.4", a.fusion_hidden, a.fusion_width);
  }
  return e;
}

// The shape a checkpoint key of `entry` must have.
std::vector<int64_t> key_shape(const Entry& entry) {
  const int64_t parts = static_cast<int64_t>(entry.keys.size());
  if (entry.transpose) return {entry.dims[1] / parts, entry.dims[0]};
  return {entry.dims[0] / parts};
}

// Missing keys first, then unexpected keys, then mis-shaped keys: the first is an Error naming
// the key and its expected (missing) or found (unexpected) shape, or both (mis-shaped).
void check_keys(const Checkpoint& c, const Tensors& t, const ArchConfig& a,
                const std::vector<Entry>& entries) {
  std::map<std::string, std::vector<int64_t>> expected;
  for (const Entry& entry : entries) {
    for (const auto& key : entry.keys) {
      if (!t.count(key))
        throw Error(c.path + ": missing key " + key + " (expected shape " +
                    shape_text(key_shape(entry)) + ")");
      expected[key] = key_shape(entry);
    }
  }
  for (const auto& [key, tensor] : t) {
    if (!expected.count(key))
      throw Error(c.path + ": unexpected key " + key + " " + shape_text(tensor->shape) +
                  " (not in the " + version_name(a.version) + " layout)");
  }
  for (const auto& [key, shape] : expected) {
    if (t.at(key)->shape != shape)
      throw Error(c.path + ": key " + key + " has shape " + shape_text(t.at(key)->shape) +
                  ", expected " + shape_text(shape));
  }
}

}  // namespace

const std::vector<std::string>& dropped_key_prefixes() {
  static const std::vector<std::string> prefixes = {"projector.",
                                                    "segmented_matryoshka_projector."};
  return prefixes;
}

ArchConfig detect_architecture(const Checkpoint& c, const std::string& stats, int heads) {
  if (c.layout != "model" && c.layout != "model_state" && c.layout != "model_state_dict")
    throw Error(c.path + ": unknown checkpoint layout '" + c.layout +
                "' (expected model_state, model_state_dict, or model with args)");
  const Tensors t = normalised(c);
  ArchConfig a = c.layout == "model" ? detect_v2(c, t) : detect_v1(c, t, heads);
  if (c.layout == "model" && heads > 0)
    throw Error(c.path + ": a v2 checkpoint records its heads in args; --heads is for v1.x");
  if (a.version == ModelVersion::kV1_1) {
    if (stats != "mpc" && stats != "aws")
      throw Error(c.path + ": a v1.1 checkpoint needs --stats mpc or --stats aws (the input " +
                  "statistics it was trained with)");
    a.stats = stats;
  } else if (!stats.empty()) {
    throw Error(c.path + ": --stats applies to v1.1 checkpoints only (this one is " +
                version_name(a.version) + ")");
  }
  check_keys(c, t, a, expected_entries(a));
  return a;
}

CheckpointWeights::CheckpointWeights(const Checkpoint& c, const ArchConfig& config) {
  const Tensors t = normalised(c);
  const std::vector<Entry> entries = expected_entries(config);
  check_keys(c, t, config, entries);
  for (const Entry& entry : entries) {
    CheckpointTensor& out = tensors_[entry.name];
    out.shape = entry.dims;
    const int64_t rows = entry.dims[0];
    const int64_t cols = entry.dims.size() > 1 ? entry.dims[1] : 1;
    out.values.resize(static_cast<size_t>(rows * cols));
    const int64_t block = (entry.transpose ? cols : rows) / static_cast<int64_t>(entry.keys.size());
    for (size_t j = 0; j < entry.keys.size(); ++j) {
      const std::vector<float>& v = t.at(entry.keys[j])->values;
      if (static_cast<int64_t>(v.size()) * static_cast<int64_t>(entry.keys.size()) != rows * cols)
        throw Error(c.path + ": key " + entry.keys[j] + " holds " + std::to_string(v.size()) +
                    " values, not the " + shape_text(key_shape(entry)) + " of its shape");
      const int64_t offset = static_cast<int64_t>(j) * block;
      for (int64_t i = 0; i < static_cast<int64_t>(v.size()); ++i) {
        // Transposed: key [block, rows] element (col, row) -> tessera [row, offset + col].
        const int64_t at = entry.transpose ? (i % rows) * cols + offset + i / rows : offset + i;
        out.values[static_cast<size_t>(at)] = v[static_cast<size_t>(i)];
      }
    }
    parameters_ += rows * cols;
  }
}

void CheckpointWeights::fill(const std::string& name, const std::vector<int64_t>& dims, double,
                             double, float* out) {
  const auto it = tensors_.find(name);
  if (it == tensors_.end() || it->second.shape != dims)
    throw Error("import: the graph needs " + name + " " + shape_text(dims) +
                ", which the checkpoint mapping does not give");
  std::copy(it->second.values.begin(), it->second.values.end(), out);
}

ModelStats import_checkpoint(const Checkpoint& c, const std::string& stats, int heads,
                             const std::string& output) {
  const ArchConfig config = detect_architecture(c, stats, heads);
  CheckpointWeights weights(c, config);
  if (weights.parameters() != count_model(config).parameters)
    throw Error("import: the checkpoint mapping gives " + std::to_string(weights.parameters()) +
                " parameters, the " + version_name(config.version) + " graph has " +
                std::to_string(count_model(config).parameters));
  const std::string name = std::filesystem::path(c.path).filename().string();
  return write_model(config, weights, {metadata_key::kCheckpoint, name}, output);
}

}  // namespace tessera
