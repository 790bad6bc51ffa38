#include "tessera/runtime/tile_job.h"

#include <sys/mman.h>
#include <unistd.h>

namespace tessera {

// Writes back the pages of [begin, end) of a MAP_SHARED mapping and waits for the disk.
void sync_range(void* begin, void* end) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = reinterpret_cast<uintptr_t>(begin) & ~(page - 1);
  const uintptr_t last = reinterpret_cast<uintptr_t>(end);
  if (last > first) ::msync(reinterpret_cast<void*>(first), last - first, MS_SYNC);
}

}  // namespace tessera
