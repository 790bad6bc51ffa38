#pragma once
// What a file holds, by content: the SHA-256 of its bytes, and the state (device, inode, size,
// modification and change times) it had while they were read.
//
// Invariant: `sha256` is the digest of bytes read while the file's state equalled `state`
// (the state is taken before and after reading; a file that changed meanwhile is read again),
// so any later write to that file or any replacement of it at its path changes the state that
// `file_unchanged` compares. Two files of the same size and times but other bytes never share
// an identity.

#include <sys/stat.h>

#include <string>

namespace tessera {

struct FileState {
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = 0;
  timespec modified{}, changed{};
  bool operator==(const FileState& other) const;
};

struct FileIdentity {
  std::string path;
  std::string sha256;  // 64 lowercase hex digits
  FileState state;
};

// Reads all of `path` and returns its identity. Throws Error "<path>: <cause>" when it cannot
// be read, and "<path>: keeps changing while it is read" after three reads that each saw the
// file change.
FileIdentity identify_file(const std::string& path);

// True when the file at identity.path is still the one identified: same state (a stat, no
// read). A file rewritten in place, or replaced by another at the same path, is not.
bool file_unchanged(const FileIdentity& identity);

}  // namespace tessera
