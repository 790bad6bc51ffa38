#pragma once
// BatchJournal: the record of which batches of a tile are finished, so an interrupted run can
// resume. File format: one text line (the run key, ending in '\n'), then one little-endian
// uint32 per finished batch, appended with O_APPEND. A torn last record (a size that is not a
// multiple of 4 after the key) is ignored.
//
// The file outlives the object only when the process dies (kill, crash, power loss): the
// destructor removes it, because an orderly error also removes the partial outputs it
// describes.
//
// Invariant: a batch number is appended only after that batch's output rows are written back
// to the output files (the caller msyncs them first), so "in the journal" implies "on disk".

#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

class BatchJournal {
 public:
  // Opens `path`. If it exists and starts with `key`, its finished batches are loaded
  // (resumed() is true); otherwise it is (re)created holding just the key.
  BatchJournal(std::string path, const std::string& key, int64_t batch_count);
  ~BatchJournal();
  BatchJournal(const BatchJournal&) = delete;
  BatchJournal& operator=(const BatchJournal&) = delete;

  bool resumed() const { return resumed_; }
  bool done(int64_t batch) const { return done_[static_cast<size_t>(batch)] != 0; }
  int64_t done_count() const { return done_count_; }

  // Appends `batch` and makes it durable (fdatasync). Thread-safe.
  void mark_done(int64_t batch);
  // Deletes the journal file (after the outputs are committed). The destructor does too.
  void remove();

 private:
  std::string path_;
  int fd_ = -1;
  bool resumed_ = false;
  std::vector<uint8_t> done_;
  int64_t done_count_ = 0;
};

}  // namespace tessera
