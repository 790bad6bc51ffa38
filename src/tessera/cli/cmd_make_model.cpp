// tessera make-model: writes a Tessera-architecture ONNX model with seeded random weights.

#include <cstdio>
#include <filesystem>
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
  ModelConfig config;
  bool force = false;
};

bool is_default_config(const ModelConfig& c) {
  const ModelConfig d;
  return c.d_model == d.d_model && c.layers == d.layers && c.heads == d.heads && c.ffn == d.ffn &&
         c.s2_steps == d.s2_steps && c.s1_steps == d.s1_steps && c.s2_bands == d.s2_bands &&
         c.s1_bands == d.s1_bands && c.latent == d.latent && c.seed == d.seed;
}

void run_make_model(const MakeModelOptions& options) {
  std::string path = options.output;
  if (path.empty()) {
    if (!is_default_config(options.config)) {
      throw UsageError("make-model: a model other than the built-in one needs -o PATH");
    }
    path = default_model_path();
    std::error_code ec;
    const auto dir = std::filesystem::path(path).parent_path();
    std::filesystem::create_directories(dir, ec);
    if (ec) throw Error("cannot create the model directory " + dir.string() + ": " + ec.message());
  }
  check_new_output(path, options.force);
  const ModelStats stats = write_model(options.config, path);
  std::printf("wrote %s: %s\n", path.c_str(), format_model_stats(stats).c_str());
}

}  // namespace

void add_make_model_command(CLI::App& root) {
  auto options = std::make_shared<MakeModelOptions>();
  CLI::App* cmd = root.add_subcommand(
      "make-model", "Write a Tessera-architecture ONNX model with seeded random weights");
  cmd->add_option("-o,--output", options->output,
                  "Output .onnx path (default: the built-in model's cache path)");
  cmd->add_option("--d-model", options->config.d_model, "Transformer width")->capture_default_str();
  cmd->add_option("--layers", options->config.layers, "Encoder layers per branch")
      ->capture_default_str();
  cmd->add_option("--heads", options->config.heads, "Attention heads")->capture_default_str();
  cmd->add_option("--ffn", options->config.ffn, "Feed-forward width")->capture_default_str();
  cmd->add_option("--s2-steps", options->config.s2_steps, "Sentinel-2 time steps")
      ->capture_default_str();
  cmd->add_option("--s1-steps", options->config.s1_steps, "Sentinel-1 time steps")
      ->capture_default_str();
  cmd->add_option("--latent", options->config.latent, "Output embedding width")
      ->capture_default_str();
  cmd->add_option("--seed", options->config.seed, "Weight seed")
      ->check(unsigned_64bit())
      ->capture_default_str();
  cmd->add_flag("--force", options->force, "Overwrite an existing file");
  cmd->callback([options]() { run_make_model(*options); });
}

}  // namespace tessera::cli
