#pragma once
// The one exception type that reaches users. Its message is a single line that names the
// file (or option) and the problem; the CLI prints it as "tessera: <message>" and exits 1
// (UsageError: exit 2).

#include <stdexcept>
#include <string>

namespace tessera {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A command line that cannot be acted on (bad flag value, conflicting options).
class UsageError : public Error {
 public:
  using Error::Error;
};

}  // namespace tessera
