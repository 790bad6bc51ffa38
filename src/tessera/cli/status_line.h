#pragma once
// The one-line status that long commands (bench, tune) rewrite in place on stderr. Only on a
// terminal: a piped or redirected stderr gets no status lines.

#include <unistd.h>

#include <cstdio>
#include <functional>
#include <string>

namespace tessera::cli {

class StatusLine {
 public:
  StatusLine() : tty_(isatty(STDERR_FILENO) != 0) {}

  // For an options struct's `progress`: rewrites the line; empty when stderr is no terminal.
  std::function<void(const std::string&)> callback() const {
    if (!tty_) return nullptr;
    return [](const std::string& line) { std::fprintf(stderr, "\r\033[K%s", line.c_str()); };
  }
  // Erases the line once the command's output is about to follow.
  void clear() const {
    if (tty_) std::fprintf(stderr, "\r\033[K");
  }

 private:
  bool tty_;
};

}  // namespace tessera::cli
