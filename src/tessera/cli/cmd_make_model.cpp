// tessera make-model: writes the ONNX model of one Tessera architecture (--arch) with seeded
// random weights. Options left unset take the architecture's released shape
// (model_builder.h: default_arch_config); v1.0 files are the ones tessera always built.

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <system_error>

#include "tessera/cli/commands.h"
#include "tessera/cli/output_checks.h"
#include "tessera/cli/validators.h"
#include "tessera/common/error.h"
#include "tessera/model/default_model.h"
#include "tessera/model/model_builder.h"
#include "tessera/model/model_config.h"

namespace tessera::cli {
namespace {

struct MakeModelOptions {
  std::string output;
  std::string arch = "v1.0";
  std::string stats;
  ModelConfig config;
  bool qk_norm = false;
  bool force = false;
  std::map<std::string, CLI::Option*> given;  // option name -> option, to tell set from default
};

bool is_default_config(const ModelConfig& c) {
  const ModelConfig d;
  return c.d_model == d.d_model && c.layers == d.layers && c.heads == d.heads && c.ffn == d.ffn &&
         c.s2_steps == d.s2_steps && c.s1_steps == d.s1_steps && c.s2_bands == d.s2_bands &&
         c.s1_bands == d.s1_bands && c.latent == d.latent && c.seed == d.seed;
}

// The architecture's released shape with the options the user set on top.
ArchConfig arch_config(const MakeModelOptions& o) {
  const ModelVersion arch = parse_version(o.arch);
  auto set = [&](const char* name) { return o.given.at(name)->count() > 0; };
  if (arch == ModelVersion::kV1_0) {
    if (set("qk-norm") || set("stats"))
      throw UsageError("make-model: --qk-norm and --stats do not apply to --arch v1.0");
    ArchConfig a;
    a.shape = o.config;
    return a;
  }
  if (set("s2-steps") || set("s1-steps"))
    throw UsageError("make-model: --arch " + o.arch + " takes any step count; --s2-steps and " +
                     "--s1-steps apply to v1.0 only");
  if (arch != ModelVersion::kV2 && set("qk-norm"))
    throw UsageError("make-model: --qk-norm applies to --arch v2 only");
  if (arch != ModelVersion::kV1_1 && set("stats"))
    throw UsageError("make-model: --stats applies to --arch v1.1 only (mpc or aws)");
  if (!o.stats.empty() && o.stats != "mpc" && o.stats != "aws")
    throw UsageError("make-model: --stats must be mpc or aws, not '" + o.stats + "'");
  // infer standardises a v1.1 model's tiles with its statistics set: a file without one could
  // be written but never run.
  if (arch == ModelVersion::kV1_1 && o.stats.empty()) {
    throw UsageError(
        "make-model: --arch v1.1 needs --stats mpc or aws (the statistics set its tiles are "
        "standardised with)");
  }
  ArchConfig a = default_arch_config(arch);
  if (arch == ModelVersion::kV2) {
    if (set("d-model"))
      throw UsageError(
          "make-model: --arch v2 takes --latent (d_model = 4 x latent), not --d-model");
    a = v2_arch_config(set("latent") ? o.config.latent : 64, set("layers") ? o.config.layers : 4,
                       set("heads") ? o.config.heads : 4, set("ffn") ? o.config.ffn : 1024,
                       o.qk_norm);
  } else {
    if (set("d-model")) a.shape.d_model = o.config.d_model;
    if (set("layers")) a.shape.layers = o.config.layers;
    if (set("heads")) a.shape.heads = o.config.heads;
    if (set("ffn")) a.shape.ffn = o.config.ffn;
    if (set("latent")) a.shape.latent = o.config.latent;
    if (arch == ModelVersion::kV1_1) {  // MLP 2d -> 4d -> d/4, the first min(128, d/4) kept
      a.fusion_hidden = 4 * a.shape.d_model;
      a.fusion_width = a.shape.d_model / 4;
      if (!set("latent")) a.shape.latent = std::min(128, a.fusion_width);
      a.stats = o.stats;
    }
  }
  a.shape.seed = o.config.seed;
  return a;
}

void run_make_model(const MakeModelOptions& options) {
  const ArchConfig config = arch_config(options);
  std::string path = options.output;
  if (path.empty()) {
    if (config.version != ModelVersion::kV1_0 || !is_default_config(options.config)) {
      throw UsageError("make-model: a model other than the built-in one needs -o PATH");
    }
    path = default_model_path();
    std::error_code ec;
    const auto dir = std::filesystem::path(path).parent_path();
    std::filesystem::create_directories(dir, ec);
    if (ec) throw Error("cannot create the model directory " + dir.string() + ": " + ec.message());
  }
  check_new_output(path, options.force);
  const ModelStats stats = write_model(config, path);
  const std::string arch =
      config.version == ModelVersion::kV1_0 ? std::string() : version_name(config.version) + ", ";
  std::printf("wrote %s: %s%s\n", path.c_str(), arch.c_str(), format_model_stats(stats).c_str());
}

}  // namespace

void add_make_model_command(CLI::App& root) {
  auto options = std::make_shared<MakeModelOptions>();
  CLI::App* cmd = root.add_subcommand(
      "make-model",
      "Write a Tessera-architecture ONNX model with seeded random weights (defaults shown: v1.0; "
      "with another --arch, options left unset take that version's released shape)");
  auto& given = options->given;
  ModelConfig& c = options->config;
  cmd->add_option("-o,--output", options->output,
                  "Output .onnx path (default: the built-in model's cache path)");
  cmd->add_option("--arch", options->arch, "Architecture: v1.0-early, v1.0, v1.1 or v2")
      ->capture_default_str();
  given["d-model"] =
      cmd->add_option("--d-model", c.d_model, "Transformer width (not v2)")->capture_default_str();
  given["layers"] =
      cmd->add_option("--layers", c.layers, "Encoder layers per branch")->capture_default_str();
  given["heads"] = cmd->add_option("--heads", c.heads, "Attention heads")->capture_default_str();
  given["ffn"] = cmd->add_option("--ffn", c.ffn, "Feed-forward width")->capture_default_str();
  given["s2-steps"] = cmd->add_option("--s2-steps", c.s2_steps, "Sentinel-2 time steps (v1.0)")
                          ->capture_default_str();
  given["s1-steps"] = cmd->add_option("--s1-steps", c.s1_steps, "Sentinel-1 time steps (v1.0)")
                          ->capture_default_str();
  given["latent"] = cmd->add_option("--latent", c.latent,
                                    "Output embedding width; v2: the student's latent_dim "
                                    "(d_model = 4 x latent, default 64)")
                        ->capture_default_str();
  given["qk-norm"] = cmd->add_flag("--qk-norm", options->qk_norm, "v2: RMSNorm on q and k");
  given["stats"] =
      cmd->add_option("--stats", options->stats, "v1.1: the input statistics set, mpc or aws");
  cmd->add_option("--seed", c.seed, "Weight seed")->check(unsigned_64bit())->capture_default_str();
  cmd->add_flag("--force", options->force, "Overwrite an existing file");
  cmd->callback([options]() { run_make_model(*options); });
}

}  // namespace tessera::cli
