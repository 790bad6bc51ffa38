#pragma once
// The progress of long commands (bench, tune) on stderr, never on stdout (their tables). On a
// terminal one line is rewritten in place, before each step and when it is done; off a terminal
// (piped, redirected) each finished step is one line of its own, after a UTC timestamp:
//   2026-12-05T18:02:11Z tessera tune: round 1 3/12: ort fp32 core b=64: 0.0123 ms/px ...
// Quiet (-q): nothing at all.

#include <unistd.h>

#include <cstdio>
#include <functional>
#include <string>
#include <utility>

#include "tessera/common/clock.h"

namespace tessera::cli {

class StatusLine {
 public:
  // `command` names the lines ("tessera tune").
  StatusLine(std::string command, bool quiet)
      : command_(std::move(command)), quiet_(quiet), tty_(isatty(STDERR_FILENO) != 0) {}

  // For an options struct's `progress`: a step begins. Rewrites the line on a terminal; empty
  // off a terminal or when quiet.
  std::function<void(const std::string&)> callback() const {
    if (quiet_ || !tty_) return nullptr;
    return [](const std::string& line) { std::fprintf(stderr, "\r\033[K%s", line.c_str()); };
  }
  // For an options struct's `done`: a step has finished. Rewrites the line on a terminal, writes
  // a timestamped line off one; empty when quiet.
  std::function<void(const std::string&)> done_callback() const {
    if (quiet_) return nullptr;
    if (tty_) return callback();
    return [command = command_](const std::string& line) {
      std::fprintf(stderr, "%s %s: %s\n", utc_timestamp().c_str(), command.c_str(), line.c_str());
      std::fflush(stderr);
    };
  }
  // Erases the line once the command's output is about to follow.
  void clear() const {
    if (tty_ && !quiet_) std::fprintf(stderr, "\r\033[K");
  }

 private:
  std::string command_;
  bool quiet_;
  bool tty_;
};

}  // namespace tessera::cli
