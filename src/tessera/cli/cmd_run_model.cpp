// tessera run-model: runs a model once on inputs given as .npy files and writes the output as
// .npy (float32). A plumbing command for checks against reference implementations. A model
// with symbolic step axes (v1.0 early, v1.1, v2) runs at the inputs' step counts, set on the
// engine built from the model file itself (Engine::set_steps): nothing is written but the
// output. Inputs must be finite.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tessera/cli/commands.h"
#include "tessera/cli/output_checks.h"
#include "tessera/cli/validators.h"
#include "tessera/common/error.h"
#include "tessera/engine/engine_spec.h"
#include "tessera/io/npy.h"
#include "tessera/model/model_info.h"

namespace tessera::cli {
namespace {

// Checks that `array` is [batch, steps, features] (batch < 0: any) and returns its batch.
int64_t check_input(const NpyArray& array, int64_t batch, int64_t steps, int64_t features) {
  if (array.ndim() != 3 || (batch >= 0 && array.dim(0) != batch) || array.dim(1) != steps ||
      array.dim(2) != features) {
    const std::string want = "(" + (batch >= 0 ? std::to_string(batch) : std::string("B")) + ", " +
                             std::to_string(steps) + ", " + std::to_string(features) + ")";
    throw Error(array.path() + ": shape " + format_shape(array.shape()) + ", the model needs " +
                want);
  }
  return array.dim(0);
}

// The step counts a run of the model on these inputs takes: the inputs' own for a model with
// symbolic step axes (1..shape's capacity; Engine::set_steps), else the model's fixed ones.
std::pair<int64_t, int64_t> run_steps(const ModelShape& shape, const NpyArray& s2,
                                      const NpyArray& s1) {
  if (!shape.symbolic_steps || s2.ndim() != 3 || s1.ndim() != 3) {
    return {shape.s2_steps, shape.s1_steps};  // check_input names a bad shape
  }
  for (const auto& [array, most] : {std::pair{&s2, shape.s2_steps}, {&s1, shape.s1_steps}}) {
    if (array->dim(1) < 1 || array->dim(1) > most) {
      throw Error(
          fmt::format("{}: {} steps, the model takes 1..{}", array->path(), array->dim(1), most));
    }
  }
  return {s2.dim(1), s1.dim(1)};
}

// Reads all of `array` (shape [B, T, F]) as float into `out`; a NaN or infinite element is an
// Error naming the file and the element's index, since the engines give no usable output for
// it (NaN from one, finite numbers from another).
void read_finite(const NpyArray& array, float* out) {
  array.read_as_float(0, array.size(), out);
  const float* bad =
      std::find_if(out, out + array.size(), [](float v) { return !std::isfinite(v); });
  if (bad == out + array.size()) return;
  const int64_t index = bad - out, steps = array.dim(1), features = array.dim(2);
  throw Error(fmt::format("{}: element [{}, {}, {}] is {}; inputs must be finite", array.path(),
                          index / (steps * features), index / features % steps, index % features,
                          std::isnan(*bad) ? "NaN" : (*bad > 0 ? "+Inf" : "-Inf")));
}

}  // namespace

void add_run_model_command(CLI::App& root) {
  struct Args {
    std::string model, s2, s1, output, device = "cpu", engine = kOrtBackend, precision;
    int threads = 1;
    bool force = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = root.add_subcommand(
      "run-model", "Run a model once on .npy inputs and write the output .npy (for checks)");
  cmd->add_option("-m,--model", args->model, "ONNX model")->required();
  cmd->add_option("--s2", args->s2, "S2 input .npy [B, T2, F2]")->required();
  cmd->add_option("--s1", args->s1, "S1 input .npy [B, T1, F1]")->required();
  cmd->add_option("-o,--output", args->output, "Output .npy, float32 [B, D]")->required();
  cmd->add_option("--device", args->device, "cpu or cuda:N")->capture_default_str();
  cmd->add_option("--engine", args->engine, backend_choices())->capture_default_str();
  cmd->add_option("--precision", args->precision,
                  precision_choices_by_device() + "; default: the engine's own");
  cmd->add_option("--threads", args->threads, "The engine's threads")
      ->check(whole_number_in(1, kMaxIntraOpThreads))
      ->capture_default_str();
  cmd->add_flag("--force", args->force, "Overwrite an existing output file");

  cmd->callback([args] {
    check_new_output(args->output, args->force, {args->model, args->s2, args->s1});
    const NpyArray s2(args->s2);
    const NpyArray s1(args->s1);
    EngineSpec spec = parse_engine_spec(args->engine, args->device, args->precision);
    spec.threads = args->threads;
    spec.max_batch = std::max<int64_t>(1, s2.ndim() > 0 ? s2.dim(0) : 1);
    check_engine_can_run(spec, args->model);
    const std::unique_ptr<Engine> built = make_engine(args->model, spec);
    Engine& engine = *built;
    const ModelShape& shape = engine.shape();
    const auto [s2_steps, s1_steps] = run_steps(shape, s2, s1);
    const int64_t batch = check_input(s2, -1, s2_steps, shape.s2_features);
    if (batch < 1) throw Error(args->s2 + ": no pixels (batch 0)");
    check_input(s1, batch, s1_steps, shape.s1_features);
    engine.set_steps(s2_steps, s1_steps);
    read_finite(s2, engine.s2_input());
    read_finite(s1, engine.s1_input());
    engine.run(batch);
    write_npy(args->output, DType::kFloat32, {batch, shape.output_dim}, engine.output());
  });
}

}  // namespace tessera::cli
