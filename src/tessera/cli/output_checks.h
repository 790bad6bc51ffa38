#pragma once
// Checks of the files a command will write, made before it does any work, so that a mistake in
// an output path costs nothing and never touches what the user has.

#include <string>
#include <vector>

#include "tessera/common/output_location.h"

namespace tessera::cli {

// An output file that the command replaces only with --force (models, exports, run outputs).
// Throws Error "<path>: already exists (use --force to overwrite)" when it exists and `force` is
// false; "<path>: is a directory"; "<path>: is also an input of this command" when it is the
// same file as one of `inputs` (under any name), even with `force`; and the errors of
// check_output_location.
void check_new_output(const std::string& path, bool force,
                      const std::vector<std::string>& inputs = {});

// An output file that each run writes afresh (summaries, profiles, reports): see
// common/output_location.h.
using tessera::check_output_location;

}  // namespace tessera::cli
