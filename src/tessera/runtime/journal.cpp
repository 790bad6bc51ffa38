#include "tessera/runtime/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tessera/common/error.h"
#include "tessera/io/atomic_file.h"
#include "tessera/io/safe_file.h"

namespace tessera {
namespace {

// The whole content of the open file `fd` (a journal: small).
std::string read_all(int fd, const std::string& path) {
  std::string content;
  char buffer[65536];
  for (off_t at = 0;;) {
    const ssize_t n = ::pread(fd, buffer, sizeof buffer, at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      throw Error(path + ": cannot read journal: " + errno_text(err));
    }
    if (n == 0) return content;
    content.append(buffer, static_cast<std::size_t>(n));
    at += n;
  }
}

}  // namespace

BatchJournal::BatchJournal(std::string path, const std::string& key, int64_t batch_count)
    : path_(std::move(path)), done_(static_cast<size_t>(batch_count), 0) {
  const std::string header = key + "\n";
  // Never through a link, and only a regular file of our own (safe_file.h).
  fd_ = open_own_file(path_, O_RDWR | O_APPEND);
  if (fd_ >= 0) {
    try {
      load(read_all(fd_, path_), header);
    } catch (...) {
      ::close(fd_);
      fd_ = -1;
      throw;
    }
  }
  if (resumed_) {
    // Drop a torn record so that new records stay 4-byte aligned after the key.
    const off_t keep = static_cast<off_t>(header.size() + 4 * static_cast<size_t>(done_count_));
    if (::ftruncate(fd_, keep) != 0) {
      const int err = errno;
      close_file();
      throw Error(path_ + ": cannot open journal: " + errno_text(err));
    }
    return;
  }
  // Another run's journal (or none): start one holding just the key.
  if (fd_ >= 0 && ::ftruncate(fd_, 0) != 0) {
    const int err = errno;
    close_file();
    throw Error(path_ + ": cannot open journal: " + errno_text(err));
  }
  if (fd_ < 0) fd_ = create_own_file(path_, O_RDWR | O_APPEND);
  if (fd_ < 0) {
    const int err = errno;
    throw Error(path_ + ": cannot open journal: " + errno_text(err));
  }
  try {
    write_fully(fd_, header.data(), header.size(), path_, "cannot write journal");
  } catch (...) {
    remove();  // a journal without its key would never be resumed
    throw;
  }
}

void BatchJournal::load(const std::string& content, const std::string& header) {
  if (content.compare(0, header.size(), header) != 0) return;
  resumed_ = true;
  const size_t records = (content.size() - header.size()) / 4;
  for (size_t r = 0; r < records; ++r) {
    uint32_t batch = 0;
    std::memcpy(&batch, content.data() + header.size() + 4 * r, 4);
    if (batch < done_.size() && !done_[batch]) {
      done_[batch] = 1;
      ++done_count_;
    }
  }
}

BatchJournal::~BatchJournal() {
  if (kept_) {
    close_file();
  } else {
    remove();
  }
}

void BatchJournal::mark_done(int64_t batch) {
  const uint32_t record = static_cast<uint32_t>(batch);
  try {
    write_fully(fd_, &record, 4, path_, "cannot write journal");
  } catch (...) {
    // A torn record is ignored on resume; the batches before it stay valid.
    keep();
    throw;
  }
  if (::fdatasync(fd_) != 0) {
    const int err = errno;
    keep();
    throw Error(path_ + ": cannot write journal: " + errno_text(err));
  }
}

void BatchJournal::close_file() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void BatchJournal::remove() {
  if (fd_ < 0) return;
  close_file();
  ::unlink(path_.c_str());
}

}  // namespace tessera
