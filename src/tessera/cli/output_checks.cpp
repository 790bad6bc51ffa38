#include "tessera/cli/output_checks.h"

#include <filesystem>

#include "tessera/common/error.h"

namespace tessera::cli {

namespace fs = std::filesystem;

void check_new_output(const std::string& path, bool force, const std::vector<std::string>& inputs) {
  std::error_code ec;
  if (fs::exists(path, ec) && !fs::is_directory(path, ec)) {
    for (const std::string& input : inputs) {
      if (fs::equivalent(path, input, ec)) throw Error(path + ": is also an input of this command");
    }
    if (!force) throw Error(path + ": already exists (use --force to overwrite)");
  }
  check_output_location(path);
}

}  // namespace tessera::cli
