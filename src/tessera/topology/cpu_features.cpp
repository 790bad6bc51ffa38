#include "tessera/topology/cpu_features.h"

#include <fstream>
#include <set>
#include <sstream>
#include <utility>

namespace tessera {
namespace {

// (kernel flag, documented name), in the order they are listed.
const std::pair<const char*, const char*> kKnownFeatures[] = {
    {"avx2", "AVX2"},
    {"avx512f", "AVX-512"},
    {"avx512_vnni", "AVX512_VNNI"},
    {"avx512_bf16", "AVX512_BF16"},
    {"avx512_fp16", "AVX512_FP16"},
    {"amx_tile", "AMX"},
    {"amx_bf16", "AMX-BF16"},
    {"amx_int8", "AMX-INT8"},
};

}  // namespace

std::vector<std::string> features_of_flags(const std::string& flags) {
  std::set<std::string> present;
  std::istringstream words(flags);
  for (std::string word; words >> word;) present.insert(word);
  std::vector<std::string> features;
  for (const auto& [flag, name] : kKnownFeatures)
    if (present.count(flag) > 0) features.emplace_back(name);
  return features;
}

std::vector<std::string> this_cpu_features() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("flags", 0) == 0) return features_of_flags(line.substr(line.find(':') + 1));
  }
  return {};
}

}  // namespace tessera
