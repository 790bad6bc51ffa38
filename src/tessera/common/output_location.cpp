#include "tessera/common/output_location.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include "tessera/common/error.h"

namespace tessera {

std::string file_kind(mode_t mode) {
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISREG(mode)) return "a regular file";
  return "an unknown kind of file";
}

void require_regular_or_absent(const std::string& path) {
  struct stat target {};
  if (::stat(path.c_str(), &target) != 0) return;  // nothing there, or a dangling link
  if (S_ISREG(target.st_mode) || S_ISDIR(target.st_mode)) return;
  struct stat link {};
  const bool through_link = ::lstat(path.c_str(), &link) == 0 && S_ISLNK(link.st_mode);
  throw Error(path + ": is " + (through_link ? "a symbolic link to " : "") +
              file_kind(target.st_mode) +
              ", not a regular file: tessera writes only regular files");
}

void check_output_location(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw Error(path + ": is a directory");
  require_regular_or_absent(path);
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
  require_regular_or_absent(path);
  if (fs::exists(path, ec) && !fs::is_directory(path, ec)) {
    for (const std::string& input : inputs) {
      if (fs::equivalent(path, input, ec)) throw Error(path + ": is also an input of this command");
    }
    if (!force) throw Error(path + ": already exists (use --force to overwrite)");
  }
  check_output_location(path);
}

}  // namespace tessera
