#pragma once
// One lock per tile output, so that two `tessera infer` runs writing into one output directory
// never share a tile's partial files, journal or final names.
//
// The lock is flock(LOCK_EX | LOCK_NB) on "<out>/<grid>.lock". Whoever holds it is the only
// process that may create, continue, rename or remove that tile's `.partial` files, its journal
// and its final outputs: the tile runner takes it before it looks at any of them and releases it
// (by destroying the OutputLock) after the final rename and the journal's removal. A killed
// holder releases it with its last descriptor (the kernel drops flock locks on close), so a
// rerun can resume.
//
// The lock file stays behind, empty: removing it would be racy (a run that opened it before the
// removal and one that creates a new file after it would both hold "the" lock). Tessera never
// writes into it.
//
// Where flock does not hold: NFS mounted without lock support (`nolock`: locks are then local
// to one host), some FUSE and parallel file systems, Lustre without `-o flock`. There, do not
// start two runs on one output directory from different hosts. The ranks of one MPI job never
// race: rank 0 hands out each tile once.

#include <optional>
#include <string>

namespace tessera {

class OutputLock {
 public:
  // Takes the lock at `path`, creating an empty file there if there is none (never through a
  // symbolic link, and never removing what is there). Returns nullopt when another open file
  // holds it. Throws Error "<path>: is a symbolic link; ..." (safe_file.h) for anything but a
  // regular file of one link, and "<path>: cannot lock: <cause>" when the file system refuses.
  static std::optional<OutputLock> try_lock(const std::string& path);

  OutputLock(OutputLock&& other) noexcept;
  OutputLock& operator=(OutputLock&&) = delete;
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;
  ~OutputLock();  // releases the lock; the file stays

  const std::string& path() const { return path_; }

 private:
  OutputLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_ = -1;  // holds the lock while open
};

// The line `tessera infer` prints for a tile it skips because `lock_path` is held:
// "<grid>: skipped, another tessera run is writing it (lock <lock_path> held)".
std::string lock_held_line(const std::string& grid, const std::string& lock_path);

}  // namespace tessera
