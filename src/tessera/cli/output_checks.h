#pragma once
// Checks of the files a command will write, made before it does any work, so that a mistake in
// an output path costs nothing and never touches what the user has.

#include <string>
#include <vector>

#include "tessera/common/output_location.h"

namespace tessera::cli {

// An output file that the command replaces only with --force, and one whose location alone is
// checked: see common/output_location.h.
using tessera::check_new_output;
using tessera::check_output_location;

}  // namespace tessera::cli
