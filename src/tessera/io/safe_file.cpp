#include "tessera/io/safe_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "tessera/common/error.h"
#include "tessera/io/atomic_file.h"

namespace tessera {
namespace {

[[noreturn]] void refuse(const std::string& path, const struct stat& st) {
  if (S_ISLNK(st.st_mode)) {
    throw Error(path +
                ": is a symbolic link; tessera never writes through one (remove it and run again)");
  }
  if (S_ISREG(st.st_mode)) {
    throw Error(path + ": has " + std::to_string(st.st_nlink) +
                " links; tessera writes only files of its own (remove it and run again)");
  }
  throw Error(path + ": is " + file_kind(st.st_mode) +
              ", not a regular file (remove it and run again)");
}

// Throws unless `fd` (just opened at `path`) is a regular file with one link.
void require_own(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw Error(path + ": cannot inspect: " + errno_text(err));
  }
  if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
    ::close(fd);
    refuse(path, st);
  }
}

}  // namespace

int open_own_file(const std::string& path, int flags) {
  // O_NONBLOCK: opening a FIFO planted here must not wait for a writer.
  const int fd = ::open(path.c_str(), flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return -1;
    struct stat st {};
    // ELOOP (a link at the last component), EISDIR, ENXIO...: name what is there.
    if (::lstat(path.c_str(), &st) == 0 && !(S_ISREG(st.st_mode) && st.st_nlink == 1)) {
      refuse(path, st);
    }
    throw Error(path + ": cannot open: " + errno_text(err));
  }
  require_own(fd, path);
  // Regular files ignore O_NONBLOCK, but clear it so that the descriptor is an ordinary one.
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

int create_own_file(const std::string& path, int flags) {
  for (int attempt = 0;; ++attempt) {
    const int fd = ::open(path.c_str(), flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd >= 0) return fd;
    const int err = errno;
    struct stat st {};
    if (err == EEXIST && ::lstat(path.c_str(), &st) == 0) {
      if (!S_ISREG(st.st_mode) || st.st_nlink != 1) refuse(path, st);
      // A stale file of an earlier run: remove it and create ours (once; a second EEXIST means
      // something else keeps putting files there).
      if (attempt == 0 && ::unlink(path.c_str()) == 0) continue;
    }
    errno = err;
    return -1;
  }
}

int open_or_create_own_file(const std::string& path, int flags) {
  // A file that appears between the two opens (another run creating it) is opened on the next
  // pass; a few passes bound a file that keeps appearing and vanishing.
  for (int attempt = 0; attempt < 8; ++attempt) {
    const int fd = open_own_file(path, flags);
    if (fd >= 0) return fd;
    const int created =
        ::open(path.c_str(), flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (created >= 0) return created;
    if (errno != EEXIST) return -1;
  }
  errno = EEXIST;
  return -1;
}

void write_fully(int fd, const void* data, std::size_t bytes, const std::string& path,
                 const std::string& what) {
  const auto* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : ENOSPC;
      throw Error(path + ": " + what + ": " + errno_text(err));
    }
    p += n;
    bytes -= static_cast<std::size_t>(n);
  }
}

}  // namespace tessera
