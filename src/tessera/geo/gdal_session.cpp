#include "tessera/geo/gdal_session.h"

#include <cpl_error.h>
#include <gdal.h>

#include <mutex>

namespace tessera {

void ensure_gdal_registered() {
  static std::once_flag registered;
  std::call_once(registered, [] { GDALAllRegister(); });
}

QuietGdalErrors::QuietGdalErrors() {
  CPLPushErrorHandler(CPLQuietErrorHandler);
  CPLErrorReset();
}

QuietGdalErrors::~QuietGdalErrors() {
  CPLPopErrorHandler();
}

std::string gdal_error_text() {
  std::string text = CPLGetLastErrorMsg();
  for (char& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  return text.empty() ? "no details" : text;
}

}  // namespace tessera
