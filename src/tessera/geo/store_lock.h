#pragma once
// A blocking exclusive lock on a file, for the read-modify-write steps of a zone store (one
// shard's rewrite; the store's metadata). flock(LOCK_EX) on `path`, created empty when absent
// and never removed (removing a lock file is racy: see io/output_lock.h, which also says where
// flock does not hold across hosts). A killed holder releases it with its last descriptor.

#include <string>

namespace tessera {

class StoreLock {
 public:
  // Waits until the lock is free. Throws Error "<path>: cannot create lock: <cause>" (a
  // read-only store) or "<path>: cannot lock: <cause>".
  explicit StoreLock(const std::string& path);
  ~StoreLock();
  StoreLock(const StoreLock&) = delete;
  StoreLock& operator=(const StoreLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace tessera
