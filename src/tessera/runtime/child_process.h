#pragma once
// ChildProcess: another program (usually this executable) started with a line-based control
// channel: the child's stdin and stdout are one end of a Unix socket pair, its stderr is ours
// (or a file).
// Used to run pinned workers as separate processes (the study's numactl method) for comparison
// with in-process workers, and `tessera import`'s checkpoint reader.
//
// Writes never raise SIGPIPE (MSG_NOSIGNAL): a dead child shows up as a failed send or EOF.
// The destructor kills a child that is still running and reaps it.

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace tessera {

class ChildProcess {
 public:
  // Starts argv[0] (looked up on PATH when it has no '/') with arguments argv[1..]. With a
  // `stderr_path`, the child's stderr goes to that file (created or truncated, mode 0600)
  // instead of ours. Throws Error if it cannot be started.
  explicit ChildProcess(const std::vector<std::string>& argv, const std::string& stderr_path = "");
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Sends `line` plus '\n'; false if the child is gone.
  bool send_line(const std::string& line);
  // The next line the child wrote (without '\n'), or nullopt at EOF.
  std::optional<std::string> read_line();
  // Waits for the child to exit; returns its exit code (128 + signal if killed).
  int wait();

  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string buffer_;
  bool reaped_ = false;
  int status_ = 0;
};

// This executable's path (/proc/self/exe), to start copies of it.
std::string self_executable();

}  // namespace tessera
