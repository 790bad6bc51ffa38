#include "tessera/common/output_location.h"

#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include "tessera/common/error.h"

namespace tessera {

void check_output_location(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw Error(path + ": is a directory");
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::exists(dir, ec)) throw Error(path + ": directory " + dir.string() + " does not exist");
  if (!fs::is_directory(dir, ec)) throw Error(path + ": " + dir.string() + " is not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    const int err = errno;
    throw Error(path + ": cannot write in " + dir.string() + ": " +
                std::error_code(err, std::generic_category()).message());
  }
}

void check_new_output(const std::string& path, bool force, const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(path, ec) && !fs::is_directory(path, ec)) {
    for (const std::string& input : inputs) {
      if (fs::equivalent(path, input, ec)) throw Error(path + ": is also an input of this command");
    }
    if (!force) throw Error(path + ": already exists (use --force to overwrite)");
  }
  check_output_location(path);
}

}  // namespace tessera
