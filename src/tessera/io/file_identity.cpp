#include "tessera/io/file_identity.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "tessera/common/error.h"

namespace tessera {
namespace {

bool same_time(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

FileState state_of(const struct stat& s) {
  return {s.st_dev, s.st_ino, s.st_size, s.st_mtim, s.st_ctim};
}

std::string cause(const std::string& path) {
  return path + ": " + std::strerror(errno);
}

// An open descriptor, closed on every path out.
struct Descriptor {
  int fd = -1;
  ~Descriptor() {
    if (fd >= 0) ::close(fd);
  }
};

std::string hex(const unsigned char* bytes, unsigned int count) {
  static const char digits[] = "0123456789abcdef";
  std::string text;
  for (unsigned int i = 0; i < count; ++i) {
    text += digits[bytes[i] >> 4];
    text += digits[bytes[i] & 15];
  }
  return text;
}

// The SHA-256 of everything `fd` holds from its start.
std::string digest_of(int fd, const std::string& path) {
  const std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> context(EVP_MD_CTX_new(),
                                                                   EVP_MD_CTX_free);
  if (!context || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1)
    throw Error(path + ": cannot start a SHA-256 digest");
  std::vector<char> buffer(size_t{1} << 20);
  off_t offset = 0;
  for (;;) {
    const ssize_t got = ::pread(fd, buffer.data(), buffer.size(), offset);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw Error(cause(path));
    if (got == 0) break;
    EVP_DigestUpdate(context.get(), buffer.data(), static_cast<size_t>(got));
    offset += got;
  }
  unsigned char bytes[EVP_MAX_MD_SIZE];
  unsigned int count = 0;
  EVP_DigestFinal_ex(context.get(), bytes, &count);
  return hex(bytes, count);
}

// One read of the whole file; empty when the file changed while it was read.
std::optional<FileIdentity> try_identify(const std::string& path) {
  Descriptor file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (file.fd < 0) throw Error(cause(path));
  struct stat before {};
  if (::fstat(file.fd, &before) != 0) throw Error(cause(path));
  if (!S_ISREG(before.st_mode)) throw Error(path + ": is not a regular file");
  FileIdentity identity{path, digest_of(file.fd, path), state_of(before)};
  struct stat after {};
  if (::stat(path.c_str(), &after) != 0) throw Error(cause(path));
  if (!(state_of(after) == identity.state)) return std::nullopt;
  return identity;
}

}  // namespace

bool FileState::operator==(const FileState& other) const {
  return device == other.device && inode == other.inode && size == other.size &&
         same_time(modified, other.modified) && same_time(changed, other.changed);
}

FileIdentity identify_file(const std::string& path) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (auto identity = try_identify(path)) return *identity;
  }
  throw Error(path + ": keeps changing while it is read");
}

bool file_unchanged(const FileIdentity& identity) {
  struct stat now {};
  if (::stat(identity.path.c_str(), &now) != 0) return false;
  return state_of(now) == identity.state;
}

}  // namespace tessera
