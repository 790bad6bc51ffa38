#include "tessera/cli/output_checks.h"

#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "tessera/common/error.h"
#include "tessera/io/atomic_file.h"

namespace tessera::cli {

namespace fs = std::filesystem;

void check_output_location(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw Error(path + ": is a directory");
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::exists(dir, ec)) throw Error(path + ": directory " + dir.string() + " does not exist");
  if (!fs::is_directory(dir, ec)) throw Error(path + ": " + dir.string() + " is not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    throw Error(path + ": cannot write in " + dir.string() + ": " + errno_text(errno));
  }
}

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
