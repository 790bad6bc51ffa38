// tessera run-model: runs a model once on inputs given as .npy files and writes the output as
// .npy (float32). A plumbing command for checks against reference implementations. A model
// with symbolic step axes (v1.0 early, v1.1, v2) runs at the inputs' step counts: the engine
// gets a temporary copy with those counts fixed, removed afterwards.

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "tessera/cli/commands.h"
#include "tessera/cli/output_checks.h"
#include "tessera/cli/validators.h"
#include "tessera/common/error.h"
#include "tessera/engine/engine_spec.h"
#include "tessera/io/npy.h"
#include "tessera/model/model_family.h"

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

// A temporary copy of a symbolic-step model with the inputs' step counts fixed; removed with it.
class FixedStepsModel {
 public:
  FixedStepsModel(const std::string& model, const NpyArray& s2, const NpyArray& s1) {
    if (!read_model_family(model).symbolic_steps) return;
    if (s2.ndim() != 3 || s1.ndim() != 3) return;  // check_input names the bad shape
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/tessera-run-model-" +
            std::to_string(::getpid()) + ".onnx";
    write_with_fixed_steps(model, s2.dim(1), s1.dim(1), path_);
  }
  ~FixedStepsModel() {
    if (!path_.empty()) std::remove(path_.c_str());
  }
  FixedStepsModel(const FixedStepsModel&) = delete;
  FixedStepsModel& operator=(const FixedStepsModel&) = delete;
  const std::string& path(const std::string& model) const { return path_.empty() ? model : path_; }

 private:
  std::string path_;
};

}  // namespace

void add_run_model_command(CLI::App& root) {
  struct Args {
    std::string model, s2, s1, output, device = "cpu", engine = "ort", precision;
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
  cmd->add_option("--engine", args->engine, "ort or native")->capture_default_str();
  cmd->add_option("--precision", args->precision,
                  "fp32, tf32, fp16 (GPU), bf16, int8 (native CPU); default: the engine's own");
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
    const FixedStepsModel fixed(args->model, s2, s1);
    const std::string& model = fixed.path(args->model);
    check_engine_can_run(spec, model);
    const std::unique_ptr<Engine> built = make_engine(model, spec);
    Engine& engine = *built;
    const ModelShape& shape = engine.shape();
    const int64_t batch = check_input(s2, -1, shape.s2_steps, shape.s2_features);
    if (batch < 1) throw Error(args->s2 + ": no pixels (batch 0)");
    check_input(s1, batch, shape.s1_steps, shape.s1_features);
    s2.read_as_float(0, s2.size(), engine.s2_input());
    s1.read_as_float(0, s1.size(), engine.s1_input());
    engine.run(batch);
    write_npy(args->output, DType::kFloat32, {batch, shape.output_dim}, engine.output());
  });
}

}  // namespace tessera::cli
