#include "tessera/io/output_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>

#include "tessera/common/error.h"
#include "tessera/io/atomic_file.h"
#include "tessera/io/safe_file.h"

namespace tessera {

std::optional<OutputLock> OutputLock::try_lock(const std::string& path) {
  const int fd = open_or_create_own_file(path, O_RDONLY);
  if (fd < 0) throw Error(path + ": cannot create: " + errno_text(errno));
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EINTR) continue;
    ::close(fd);
    if (err == EWOULDBLOCK) return std::nullopt;
    throw Error(path + ": cannot lock: " + errno_text(err));
  }
  return OutputLock(path, fd);
}

OutputLock::OutputLock(OutputLock&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_) {
  other.fd_ = -1;
}

OutputLock::~OutputLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the lock
}

std::string lock_held_line(const std::string& grid, const std::string& lock_path) {
  return grid + ": skipped, another tessera run is writing it (lock " + lock_path + " held)";
}

}  // namespace tessera
