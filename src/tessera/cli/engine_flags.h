#pragma once
// The engine flags subcommands share: the backends' own options (engine_spec.h:
// Backend::options, e.g. ort's --opt-level), so that no subcommand names a backend's option, and
// lists of precisions.

#include <CLI/CLI.hpp>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tessera/engine/engine_spec.h"

namespace tessera::cli {

// Adds each backend option's flag to `cmd`; a value given is stored in `into` under the
// option's key (checked later by check_option_of_any_backend). `into` outlives `cmd`'s parse.
inline void add_backend_option_flags(CLI::App& cmd, std::map<std::string, std::string>& into) {
  for (const BackendOption& option : all_backend_options()) {
    cmd.add_option_function<std::string>(
           option.flag, [&into, key = option.key](const std::string& value) { into[key] = value; },
           option.help)
        ->default_str(option.default_value);
  }
}

// Each of `texts` as parse_optional_precision reads it ("" is the engine's default).
inline std::vector<std::optional<Precision>> parse_precisions(
    const std::vector<std::string>& texts) {
  std::vector<std::optional<Precision>> out;
  for (const auto& text : texts) out.push_back(parse_optional_precision(text));
  return out;
}

}  // namespace tessera::cli
