// tessera convert-model: writes the float16 version of an ONNX model (the graph that
// `--precision fp16` runs on CUDA devices), to inspect it or to run it elsewhere.

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "tessera/cli/commands.h"
#include "tessera/cli/output_checks.h"
#include "tessera/common/error.h"
#include "tessera/io/atomic_file.h"
#include "tessera/model/fp16_model.h"

namespace tessera::cli {

void add_convert_model_command(CLI::App& root) {
  struct Args {
    std::string input, output, to = "fp16";
    bool force = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = root.add_subcommand(
      "convert-model", "Write the float16 version of an ONNX model (what --precision fp16 runs)");
  cmd->add_option("-m,--model", args->input, "Float32 ONNX model to convert")->required();
  cmd->add_option("-o,--output", args->output, "Output .onnx path")->required();
  cmd->add_option("--to", args->to, "Target precision (fp16)")->capture_default_str();
  cmd->add_flag("--force", args->force, "Overwrite an existing file");
  cmd->callback([args] {
    if (args->to != "fp16") {
      throw UsageError("convert-model: unknown target precision '" + args->to +
                       "' (expected fp16)");
    }
    check_new_output(args->output, args->force, {args->input});
    const std::string bytes = fp16_model_bytes(args->input);
    AtomicFile file(args->output);
    file.write(bytes.data(), bytes.size());
    file.commit();
    std::printf("wrote %s: %s in float16 (%zu bytes)\n", args->output.c_str(), args->input.c_str(),
                bytes.size());
  });
}

}  // namespace tessera::cli
