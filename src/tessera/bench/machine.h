#pragma once
// Machine and model descriptions carried by every benchmark result, so a row read later says
// where and on what it was measured.

#include <nlohmann/json.hpp>
#include <string>

#include "tessera/topology/topology.h"

namespace tessera {

// cpu_model, cores, pus, numa_nodes, packages, ort_version, gpus, hostname.
nlohmann::json describe_machine(const MachineInfo& machine);

// path, bytes, and parameters when the file is readable as ONNX (null otherwise).
nlohmann::json describe_model(const std::string& model_path);

}  // namespace tessera
