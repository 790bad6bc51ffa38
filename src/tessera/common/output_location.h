#pragma once
// Where a command may write a file, and whether it may replace what is there: checked before any
// work, so that a mistake in an output path costs nothing and never touches what the user has.

#include <string>
#include <vector>

namespace tessera {

// That `path` is not a directory and that its directory exists and can be written. Throws Error
// "<path>: is a directory", "<path>: directory D does not exist", "<path>: D is not a directory"
// or "<path>: cannot write in D: <reason>".
void check_output_location(const std::string& path);

// An output file that the command replaces only with --force (models, exports, run outputs,
// summaries). Throws Error "<path>: already exists (use --force to overwrite)" when it exists and
// `force` is false; "<path>: is a directory"; "<path>: is also an input of this command" when it
// is the same file as one of `inputs` (under any name), even with `force`; and the errors of
// check_output_location.
void check_new_output(const std::string& path, bool force,
                      const std::vector<std::string>& inputs = {});

}  // namespace tessera
