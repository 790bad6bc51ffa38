#include "tessera/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include "tessera/common/error.h"
#include "tessera/common/output_location.h"
#include "tessera/io/safe_file.h"

namespace tessera {
namespace {

std::string parent_of(const std::string& path) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

// Best effort: makes a rename durable. Failures are ignored (some filesystems refuse it).
void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

std::string errno_text(int err) {
  return std::error_code(err, std::generic_category()).message();
}

AtomicFile::AtomicFile(std::string final_path) : AtomicFile(std::move(final_path), false) {}

AtomicFile::AtomicFile(std::string final_path, bool keep_existing)
    : final_path_(std::move(final_path)), temp_path_(final_path_ + ".partial") {
  // Both ways the temp file is opened without following a link (safe_file.h), so that nothing
  // planted at "<final>.partial" is written through or, by commit(), renamed into place.
  try {
    if (keep_existing) {
      fd_ = open_own_file(temp_path_, O_RDWR);
      reused_ = fd_ >= 0;
    }
    if (fd_ < 0) fd_ = create_own_file(temp_path_, O_RDWR);
  } catch (...) {
    temp_path_.clear();  // not ours: never removed
    throw;
  }
  if (fd_ < 0) {
    const int err = errno;
    temp_path_.clear();
    throw Error(final_path_ + ": cannot create " + final_path_ + ".partial: " + errno_text(err));
  }
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : final_path_(std::move(other.final_path_)),
      temp_path_(std::exchange(other.temp_path_, std::string())),
      fd_(std::exchange(other.fd_, -1)),
      reused_(other.reused_) {}

AtomicFile::~AtomicFile() {
  discard();
}

void AtomicFile::discard() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
  temp_path_.clear();
}

void AtomicFile::reserve(int64_t bytes) {
  if (::ftruncate(fd_, static_cast<off_t>(bytes)) != 0) {
    const int err = errno;
    throw Error(final_path_ + ": cannot reserve " + std::to_string(bytes) +
                " bytes: " + errno_text(err));
  }
  if (bytes > 0) {
    // posix_fallocate returns the error number instead of setting errno.
    const int err = ::posix_fallocate(fd_, 0, static_cast<off_t>(bytes));
    // EINVAL / EOPNOTSUPP: the filesystem cannot preallocate; the sparse file stays usable.
    if (err != 0 && err != EINVAL && err != EOPNOTSUPP) {
      throw Error(final_path_ + ": cannot reserve " + std::to_string(bytes) +
                  " bytes: " + errno_text(err));
    }
  }
}

void AtomicFile::write(const void* data, std::size_t bytes) {
  write_fully(fd_, data, bytes, final_path_, "write failed");
}

void AtomicFile::keep() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  temp_path_.clear();
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) {
    const int err = errno;
    throw Error(final_path_ + ": fsync failed: " + errno_text(err));
  }
  if (::close(fd_) != 0) {
    const int err = errno;
    fd_ = -1;
    throw Error(final_path_ + ": close failed: " + errno_text(err));
  }
  fd_ = -1;
  require_regular_or_absent(final_path_);  // a device or FIFO there is never replaced
  if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
    const int err = errno;
    throw Error(final_path_ + ": cannot rename " + temp_path_ + " into place: " + errno_text(err));
  }
  temp_path_.clear();
  fsync_directory(parent_of(final_path_));
}

AtomicDirectory::AtomicDirectory(std::string final_path, bool replace_existing, Deletable deletable)
    : final_path_(std::move(final_path)),
      temp_path_(final_path_ + ".partial"),
      replace_existing_(replace_existing),
      deletable_(std::move(deletable)) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string name = fs::path(final_path_).lexically_normal().filename().string();
  if (name.empty() || name == "." || name == "..") {
    temp_path_.clear();
    throw Error(final_path_ + ": name the directory itself, not . or ..");
  }
  if (fs::exists(final_path_, ec)) {
    if (!fs::is_directory(final_path_, ec)) {
      temp_path_.clear();
      throw Error(final_path_ +
                  ": exists and is not a directory (--force replaces directories only)");
    }
    if (!replace_existing_) {
      temp_path_.clear();
      throw Error(final_path_ + ": already exists (use --force to overwrite)");
    }
    const std::string why = deletable_ ? deletable_(final_path_) : "";
    if (!why.empty()) {
      temp_path_.clear();
      throw Error(final_path_ + ": " + why + "; --force will not replace it");
    }
  }
  if (fs::exists(temp_path_, ec)) {
    const std::string why = deletable_ ? deletable_(temp_path_) : "";
    if (!why.empty()) {
      const std::string stale = temp_path_;
      temp_path_.clear();
      throw Error(stale + ": " + why + "; remove it to write " + final_path_);
    }
    fs::remove_all(temp_path_, ec);
  }
  // Parents are created like `mkdir -p`; only the final directory itself appears atomically.
  const fs::path parent = fs::path(final_path_).parent_path();
  if (!parent.empty()) fs::create_directories(parent, ec);
  if (!fs::create_directory(temp_path_, ec) || ec) {
    const std::string why = ec ? ec.message() : std::string("cannot create directory");
    temp_path_.clear();
    throw Error(final_path_ + ": cannot create " + final_path_ + ".partial: " + why);
  }
}

AtomicDirectory::~AtomicDirectory() {
  if (!committed_ && !temp_path_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(temp_path_, ec);
  }
}

void AtomicDirectory::commit() {
  namespace fs = std::filesystem;
  std::error_code ec;
  // The old copy is moved aside (onto a fresh empty directory, which rename replaces), not
  // removed, until the new one is in place: a failure on the way puts it back.
  std::string old_copy;
  if (replace_existing_ && fs::exists(final_path_, ec)) {
    std::string name = final_path_ + ".old-XXXXXX";
    if (::mkdtemp(name.data()) == nullptr) {
      const int err = errno;
      throw Error(final_path_ +
                  ": cannot make room to move the old copy aside: " + errno_text(err));
    }
    if (::rename(final_path_.c_str(), name.c_str()) != 0) {
      const int err = errno;
      ::rmdir(name.c_str());
      throw Error(final_path_ + ": cannot move the old copy aside: " + errno_text(err));
    }
    old_copy = name;
    const std::string why = deletable_ ? deletable_(old_copy) : "";
    if (!why.empty()) {  // something was written there since the constructor looked
      const bool back = ::rename(old_copy.c_str(), final_path_.c_str()) == 0;
      throw Error(final_path_ + ": " + why + "; --force will not replace it" +
                  (back ? "" : " (it is now " + old_copy + ")"));
    }
  }
  if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
    const int err = errno;
    const bool back = old_copy.empty() || ::rename(old_copy.c_str(), final_path_.c_str()) == 0;
    throw Error(final_path_ + ": cannot rename " + temp_path_ + " into place: " + errno_text(err) +
                (back ? "" : " (the old copy is now " + old_copy + ")"));
  }
  committed_ = true;
  fsync_directory(parent_of(final_path_));
  if (!old_copy.empty()) {
    fs::remove_all(old_copy, ec);
    if (ec) {
      throw Error(final_path_ + ": written, but its old copy " + old_copy +
                  " could not be removed: " + ec.message());
    }
  }
}

}  // namespace tessera
