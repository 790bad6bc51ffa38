#include "tessera/cli/suggestions.h"

#include <algorithm>
#include <map>
#include <numeric>

namespace tessera::cli {
namespace {

// Levenshtein distance (insertions, deletions and substitutions cost 1).
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  std::iota(row.begin(), row.end(), 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

std::string closest_name(const std::string& word, const std::vector<std::string>& candidates) {
  const size_t limit = std::clamp<size_t>(word.size() / 3, 1, 3);
  std::string best;
  size_t best_distance = limit + 1;
  for (const std::string& candidate : candidates) {
    const size_t distance = edit_distance(word, candidate);
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

std::string option_known_as(const std::string& option) {
  static const std::map<std::string, std::string> known = {
      {"--threads", "--layout single:T (one worker of T threads) or --layout JxT"},
      {"--num-threads", "--layout single:T (one worker of T threads) or --layout JxT"},
      {"--workers", "--layout JxT (J workers of T threads) or --layout core"},
      {"--batch-size", "-b/--batch"},
      {"--gpu", "--device cuda:N"},
      {"--cuda", "--device cuda:N"},
      {"--dtype", "--precision"},
  };
  const auto found = known.find(option);
  return found == known.end() ? "" : found->second;
}

}  // namespace tessera::cli
