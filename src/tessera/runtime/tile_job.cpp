#include "tessera/runtime/tile_job.h"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tessera/common/error.h"

namespace tessera {

void sync_range(void* begin, void* end, const std::string& file) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = reinterpret_cast<uintptr_t>(begin) & ~(page - 1);
  const uintptr_t last = reinterpret_cast<uintptr_t>(end);
  if (last > first && ::msync(reinterpret_cast<void*>(first), last - first, MS_SYNC) != 0) {
    throw Error(fmt::format("{}: writing results back failed: {}", file, std::strerror(errno)));
  }
}

void keep_for_resume(const BatchJournal& journal, NpyWriter& embeddings, NpyWriter& scales) {
  if (!journal.kept()) return;
  embeddings.keep();
  scales.keep();
}

Error non_finite_output_error(const Tile& tile, const std::string& model_path, int64_t pixel,
                              const NonFiniteOutput& e) {
  return Error(fmt::format(
      "{}: pixel {},{}: the model ({}) produced a non-finite output ({} in "
      "element {})",
      tile.dir, pixel / tile.width, pixel % tile.width, model_path, e.kind(), e.element()));
}

}  // namespace tessera
