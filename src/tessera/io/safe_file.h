#pragma once
// Opening the files tessera writes (partial outputs, journals) without ever going through
// something planted at their names, and writing to them so that a failure names its cause.
//
// Invariant: a descriptor returned here refers to a regular file with exactly one link that
// was found at `path` itself (O_NOFOLLOW: never the target of a symbolic link), so writing
// through it cannot change any other file.

#include <sys/types.h>

#include <cstddef>
#include <string>

#include "tessera/common/output_location.h"  // file_kind

namespace tessera {

// Opens the existing file `path` with `flags` (O_RDWR, O_APPEND, ...; O_NOFOLLOW and O_CLOEXEC
// are added). Returns -1 when nothing is there. Anything that is not a regular file with one
// link (a symbolic link, even a dangling one, a directory, a FIFO, a hard link to another
// file) throws Error "<path>: is a symbolic link; tessera never writes through one (remove it
// and run again)" or likewise with its kind.
int open_own_file(const std::string& path, int flags);

// Creates `path` as a new, empty file (O_CREAT | O_EXCL | O_NOFOLLOW) and opens it with
// `flags`. A regular file with one link already there (a stale one of an earlier run) is
// removed first; anything else there throws as open_own_file does. Other failures (no such
// directory, no permission) return -1 with errno set, for the caller's message.
int create_own_file(const std::string& path, int flags);

// Opens `path` as open_own_file does, or creates it empty (O_CREAT | O_EXCL | O_NOFOLLOW) when
// nothing is there. Unlike create_own_file it never removes what is there (lock files, which
// another process may hold open). Other failures return -1 with errno set.
int open_or_create_own_file(const std::string& path, int flags);

// Writes all `bytes` of `data` to `fd`, continuing after short writes and EINTR. A failure
// throws Error "<path>: <what>: <cause>" with the real cause ("No space left on device",
// "File too large"); a write that makes no progress reports ENOSPC, never "Success".
void write_fully(int fd, const void* data, std::size_t bytes, const std::string& path,
                 const std::string& what);

}  // namespace tessera
