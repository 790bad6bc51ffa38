#pragma once
// The kernel's cpulist format ("0-3,8" -> {0,1,2,3,8}), parsed here independently of the
// library, so tests can compare the library's view of the machine with /sys.

#include <sstream>
#include <string>
#include <vector>

namespace tessera::testing {

inline std::vector<int> parse_sys_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty() || item == "\n") continue;
    const auto dash = item.find('-');
    const int first = std::stoi(item.substr(0, dash));
    const int last = dash == std::string::npos ? first : std::stoi(item.substr(dash + 1));
    for (int i = first; i <= last; ++i) out.push_back(i);
  }
  return out;
}

}  // namespace tessera::testing
