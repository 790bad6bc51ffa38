#pragma once
// GDAL for tessera's geo code: drivers registered once, and GDAL's messages turned into the
// one-line tessera::Error of the caller instead of lines on stderr.

#include <string>

namespace tessera {

// Registers GDAL's drivers once per process (thread-safe); every geo entry point calls it.
void ensure_gdal_registered();

// While alive, GDAL's errors and warnings on this thread are not printed; gdal_error_text()
// gives the last one. GDAL keeps its error handler stack per thread.
class QuietGdalErrors {
 public:
  QuietGdalErrors();
  ~QuietGdalErrors();
  QuietGdalErrors(const QuietGdalErrors&) = delete;
  QuietGdalErrors& operator=(const QuietGdalErrors&) = delete;
};

// GDAL's last error message on this thread, on one line ("no details" when there is none).
std::string gdal_error_text();

}  // namespace tessera
