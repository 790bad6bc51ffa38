#pragma once
// The built-in model: Tessera v1.0's architecture (the default ModelConfig, seed 42) with
// seeded random weights, built once into a per-user cache and reused by bench and infer when
// no -m is given.

#include <string>

namespace tessera {

// File name of the built-in model inside the cache directory.
inline constexpr const char* kDefaultModelFile = "tessera-v1.0-seed42.onnx";

// $TESSERA_MODEL_DIR/<file> if that variable is set and non-empty, else
// $XDG_CACHE_HOME/tessera/<file>, else $HOME/.cache/tessera/<file>. Throws Error when none
// of the three variables is set. Touches no file.
std::string default_model_path();

// Returns default_model_path(), first building the model there (creating the directories) if
// no file exists yet. When `verbose`, says so on stderr before the build. Safe against
// concurrent callers: the file appears atomically (see write_model).
std::string ensure_default_model(bool verbose);

}  // namespace tessera
