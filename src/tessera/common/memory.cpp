#include "tessera/common/memory.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

namespace tessera {
namespace {

// The first number of the file at `path` ("max" or no file: -1).
int64_t number_in(const std::string& path) {
  std::ifstream in(path);
  int64_t value = -1;
  if (!(in >> value)) return -1;
  return value;
}

// MemAvailable of /proc/meminfo in bytes, -1 when absent.
int64_t mem_available() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    std::istringstream fields(line.substr(13));
    int64_t kib = -1;
    return fields >> kib ? kib * 1024 : -1;
  }
  return -1;
}

// What the cgroup of this process still allows, -1 without a limit (a limit above 2^60 bytes,
// cgroup v1's "unlimited", counts as none).
int64_t cgroup_room() {
  for (const auto& [limit, usage] :
       {std::pair{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
        std::pair{"/sys/fs/cgroup/memory/memory.limit_in_bytes",
                  "/sys/fs/cgroup/memory/memory.usage_in_bytes"}}) {
    const int64_t max = number_in(limit);
    if (max < 0 || max > (int64_t{1} << 60)) continue;
    return std::max<int64_t>(0, max - std::max<int64_t>(0, number_in(usage)));
  }
  return -1;
}

}  // namespace

int64_t available_memory_bytes() {
  const int64_t available = mem_available(), room = cgroup_room();
  if (available < 0) return room;
  return room < 0 ? available : std::min(available, room);
}

}  // namespace tessera
