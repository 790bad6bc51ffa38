#pragma once
// Outputs that appear whole or not at all. A reader never sees a half-written file or
// directory under its final name: the content is written under "<final>.partial" and renamed
// into place by commit().

#include <cstdint>
#include <functional>
#include <string>

namespace tessera {

// Owns an open, read-write temp file "<final>.partial" (created new by the constructor; a
// stale regular file there is replaced, anything else there, such as a symbolic link, is an
// error naming it and is left alone: see safe_file.h). commit() fsyncs it, closes it, renames it
// over `final_path` and fsyncs the directory. Destroying an uncommitted AtomicFile closes and
// removes the temp file. Errors (unwritable directory, full disk) throw tessera::Error naming the
// path.
class AtomicFile {
 public:
  explicit AtomicFile(std::string final_path);
  // With keep_existing, an existing "<final>.partial" is opened as it is (not truncated), so
  // an interrupted run can continue filling it; reused() tells whether one was there. It is
  // opened only if it is a regular file with one link, never through a symbolic link.
  AtomicFile(std::string final_path, bool keep_existing);
  ~AtomicFile();
  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  int fd() const { return fd_; }
  const std::string& final_path() const { return final_path_; }
  const std::string& temp_path() const { return temp_path_; }
  bool committed() const { return fd_ < 0 && temp_path_.empty(); }
  bool reused() const { return reused_; }

  // Sets the file size to `bytes` and reserves the blocks (posix_fallocate): ENOSPC here
  // becomes "<final>: cannot reserve N bytes: No space left on device".
  void reserve(int64_t bytes);
  // Writes all of `data` at the current position; throws on a short write.
  void write(const void* data, std::size_t bytes);
  void commit();
  // Closes the temp file and leaves it on disk (a later run resumes from it); the object is
  // then empty and its destructor removes nothing.
  void keep() noexcept;

 private:
  void discard() noexcept;

  std::string final_path_;
  std::string temp_path_;
  int fd_ = -1;
  bool reused_ = false;
};

// A directory built under "<final>.partial" and renamed to `final_path` by commit(). With
// replace_existing, an existing directory `final_path` is replaced: commit() moves it aside to a
// fresh "<final>.old-XXXXXX", renames the new one into place and only then removes the old one
// (a failure on the way puts it back). The constructor throws when `final_path` names . or ..,
// when it exists and is not a directory, and, without replace_existing, when it exists at all
// ("<final>: already exists (use --force to overwrite)").
//
// `deletable(dir)`, when given, says why a directory must not be deleted ("" when it may be):
// an existing `final_path` is replaced, and a stale "<final>.partial" removed, only when it says
// "" (checked in the constructor, and again on the copy moved aside in commit(), so nothing
// written there meanwhile is lost). Without it, both are deleted unchecked. Destroying an
// uncommitted AtomicDirectory removes the temp directory and everything in it.
class AtomicDirectory {
 public:
  using Deletable = std::function<std::string(const std::string& dir)>;
  AtomicDirectory(std::string final_path, bool replace_existing, Deletable deletable = nullptr);
  ~AtomicDirectory();
  AtomicDirectory(const AtomicDirectory&) = delete;
  AtomicDirectory& operator=(const AtomicDirectory&) = delete;

  const std::string& temp_path() const { return temp_path_; }
  void commit();

 private:
  std::string final_path_;
  std::string temp_path_;
  bool replace_existing_;
  Deletable deletable_;
  bool committed_ = false;
};

// "<text of errno>" for messages, e.g. "No space left on device".
std::string errno_text(int err);

}  // namespace tessera
