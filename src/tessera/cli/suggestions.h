#pragma once
// "did you mean" for a mistyped command or option: the closest known name, or what a name from
// another tool means here.

#include <string>
#include <vector>

namespace tessera::cli {

// The candidate nearest to `word` by edit distance, when it is within a third of the word's
// length (at least 1, at most 3); "" when none is that close.
std::string closest_name(const std::string& word, const std::vector<std::string>& candidates);

// What tessera calls an option that other tools spell `option` ("--threads": "--layout
// single:T (one worker of T threads) or --layout JxT"), or "".
std::string option_known_as(const std::string& option);

}  // namespace tessera::cli
