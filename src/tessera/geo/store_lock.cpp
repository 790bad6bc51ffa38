#include "tessera/geo/store_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>

#include "tessera/common/error.h"
#include "tessera/io/atomic_file.h"  // errno_text
#include "tessera/io/safe_file.h"

namespace tessera {

StoreLock::StoreLock(const std::string& path) {
  fd_ = open_or_create_own_file(path, O_RDONLY);
  if (fd_ < 0) {
    const int err = errno;
    throw Error(path + ": cannot create lock: " + errno_text(err));
  }
  while (::flock(fd_, LOCK_EX) != 0) {
    const int err = errno;
    if (err == EINTR) continue;
    ::close(fd_);
    throw Error(path + ": cannot lock: " + errno_text(err));
  }
}

StoreLock::~StoreLock() {
  ::close(fd_);  // drops the lock
}

}  // namespace tessera
