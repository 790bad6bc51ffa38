#pragma once
// How much memory this process may still allocate, so that a request too large for the machine
// is refused with one line before anything is allocated instead of meeting the OOM killer.

#include <cstdint>

namespace tessera {

// Bytes this process may still allocate: MemAvailable (/proc/meminfo), or less where its cgroup's
// limit (v2 memory.max, v1 memory.limit_in_bytes) leaves less above the cgroup's current use;
// -1 when neither can be read.
int64_t available_memory_bytes();

}  // namespace tessera
