#pragma once
// Where a command may write a file, and whether it may replace what is there: checked before any
// work, so that a mistake in an output path costs nothing and never touches what the user has.

#include <sys/types.h>

#include <string>
#include <vector>

namespace tessera {

// "a symbolic link", "a directory", "a FIFO", "a character device", ... : what a file of this
// st_mode is, for messages.
std::string file_kind(mode_t mode);

// Invariant of every output: tessera writes only regular files. Throws Error "<path>: is a
// character device, not a regular file: tessera writes only regular files" (or a block device,
// a FIFO, a socket; "is a symbolic link to a FIFO" and so on through a link) when something
// other than a regular file or a directory is at `path`; nothing there, a dangling link, a
// regular file or a directory (the callers' own errors) pass. --force never overrides it.
void require_regular_or_absent(const std::string& path);

// That `path` is not a directory and that its directory exists and can be written. Throws Error
// "<path>: is a directory", the error of require_regular_or_absent, "<path>: directory D does not
// exist", "<path>: D is not a directory" or "<path>: cannot write in D: <reason>".
void check_output_location(const std::string& path);

// An output file that the command replaces only with --force (models, exports, run outputs,
// summaries). Throws the error of require_regular_or_absent (even with --force); Error "<path>:
// already exists (use --force to overwrite)" when it exists and `force` is false; "<path>: is a
// directory"; "<path>: is also an input of this command" when it is the same file as one of
// `inputs` (under any name), even with `force`; and the errors of check_output_location.
void check_new_output(const std::string& path, bool force,
                      const std::vector<std::string>& inputs = {});

}  // namespace tessera
