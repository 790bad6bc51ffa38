#include "tessera/runtime/journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "tessera/common/error.h"
#include "tessera/io/atomic_file.h"

namespace tessera {

BatchJournal::BatchJournal(std::string path, const std::string& key, int64_t batch_count)
    : path_(std::move(path)), done_(static_cast<size_t>(batch_count), 0) {
  const std::string header = key + "\n";
  {
    std::ifstream in(path_, std::ios::binary);
    if (in) {
      const std::string content((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
      if (content.compare(0, header.size(), header) == 0) {
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
    }
  }
  if (resumed_) {
    // Drop a torn record so that new records stay 4-byte aligned after the key.
    const off_t keep = static_cast<off_t>(header.size() + 4 * static_cast<size_t>(done_count_));
    fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd_ >= 0 && ::ftruncate(fd_, keep) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  } else {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ >= 0 &&
        ::write(fd_, header.data(), header.size()) != static_cast<ssize_t>(header.size())) {
      const int err = errno;
      ::close(fd_);
      ::unlink(path_.c_str());  // a journal without its key would never be resumed
      throw Error(path_ + ": cannot write journal: " + errno_text(err));
    }
  }
  if (fd_ < 0) {
    const int err = errno;
    throw Error(path_ + ": cannot open journal: " + errno_text(err));
  }
}

BatchJournal::~BatchJournal() {
  remove();
}

void BatchJournal::mark_done(int64_t batch) {
  const uint32_t record = static_cast<uint32_t>(batch);
  if (::write(fd_, &record, 4) != 4 || ::fdatasync(fd_) != 0) {
    const int err = errno;
    throw Error(path_ + ": cannot write journal: " + errno_text(err));
  }
}

void BatchJournal::remove() {
  if (fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
  ::unlink(path_.c_str());
}

}  // namespace tessera
