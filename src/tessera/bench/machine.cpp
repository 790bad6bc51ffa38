#include "tessera/bench/machine.h"

#include <unistd.h>

#include <filesystem>

#include "tessera/engine/engine_spec.h"
#include "tessera/model/model_info.h"

namespace tessera {

nlohmann::json describe_machine(const MachineInfo& machine) {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return {{"cpu_model", machine.cpu_model},
          {"packages", machine.packages},
          {"numa_nodes", machine.numa_nodes.size()},
          {"cores", machine.cores},
          {"pus", machine.pus},
          {"gpus", machine.gpus},
          {"ort_version", backend_version(kOrtBackend)},
          {"hostname", host}};
}

nlohmann::json describe_model(const std::string& model_path) {
  nlohmann::json out = {{"path", model_path}, {"parameters", nullptr}, {"nodes", nullptr}};
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(model_path, ec);
  if (!ec) out["bytes"] = bytes;
  try {
    const ModelFileInfo info = read_model_info(model_path);
    out["parameters"] = info.parameters;
    out["nodes"] = info.nodes;
  } catch (const std::exception&) {
    // The engine reports unusable models with a better message when it loads them.
  }
  return out;
}

}  // namespace tessera
