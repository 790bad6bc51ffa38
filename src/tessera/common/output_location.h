#pragma once
// Where a command may write a file it writes afresh each run (summaries, profiles, reports):
// checked before any work, so that a mistake in an output path costs nothing.

#include <string>

namespace tessera {

// That `path` is not a directory and that its directory exists and can be written. Throws Error
// "<path>: is a directory", "<path>: directory D does not exist", "<path>: D is not a directory"
// or "<path>: cannot write in D: <reason>".
void check_output_location(const std::string& path);

}  // namespace tessera
