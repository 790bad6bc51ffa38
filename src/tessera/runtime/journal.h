#pragma once
// BatchJournal: the record of which batches of a tile are finished, so an interrupted run can
// resume. File format: one text line (the run key, ending in '\n'), then one little-endian
// uint32 per finished batch, appended with O_APPEND. A torn last record (a size that is not a
// multiple of 4 after the key) is ignored.
//
// The file outlives the object when the process dies (kill, crash, power loss) and when
// keep() was called (a write to the journal or of the outputs failed, e.g. a full disk: the
// batches already journaled are on disk, so the partial outputs are kept too and the next run
// resumes from them). Otherwise the destructor removes it, because an orderly error also
// removes the partial outputs it describes.
//
// The file is opened and created without following links (io/safe_file.h): a symbolic link or
// anything but a regular file of our own at `path` is an error naming it.
//
// Invariant: a batch number is appended only after that batch's output rows are written back
// to the output files (the caller msyncs them first), so "in the journal" implies "on disk".

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

class BatchJournal {
 public:
  // Opens `path`. If it exists and starts with `key`, its finished batches are loaded
  // (resumed() is true); otherwise it is (re)created holding just the key. Throws Error naming
  // `path` with the cause ("No space left on device") when that fails.
  BatchJournal(std::string path, const std::string& key, int64_t batch_count);
  ~BatchJournal();
  BatchJournal(const BatchJournal&) = delete;
  BatchJournal& operator=(const BatchJournal&) = delete;

  bool resumed() const { return resumed_; }
  bool done(int64_t batch) const { return done_[static_cast<size_t>(batch)] != 0; }
  int64_t done_count() const { return done_count_; }

  // Appends `batch` and makes it durable (fdatasync). Thread-safe. On failure throws Error
  // "<path>: cannot write journal: <cause>" and keeps the file (keep()).
  void mark_done(int64_t batch);
  // Deletes the journal file (after the outputs are committed). The destructor does too,
  // unless keep() was called.
  void remove();
  // The destructor leaves the file on disk: the next run resumes from it.
  void keep() { kept_ = true; }
  bool kept() const { return kept_.load(); }

 private:
  void load(const std::string& content, const std::string& header);
  void close_file() noexcept;

  std::string path_;
  int fd_ = -1;
  bool resumed_ = false;
  std::atomic<bool> kept_{false};  // set by the committer thread, read after it joined
  std::vector<uint8_t> done_;
  int64_t done_count_ = 0;
};

}  // namespace tessera
