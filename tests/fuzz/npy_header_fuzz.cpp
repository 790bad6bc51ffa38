// libFuzzer target for the .npy header parser. Build: cmake -DTESSERA_FUZZ=ON with clang
// (see CMakeLists.txt here), then run ./npy_header_fuzz -max_total_time=60 corpus/.
//
// Properties checked on every input: the parser either throws tessera::Error or returns a
// header whose data offset lies inside the buffer and whose sizes are consistent; and a header
// written back by make_npy_header() for the parsed dtype and shape parses to the same thing.

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "tessera/common/error.h"
#include "tessera/io/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tessera::NpyHeader h;
  try {
    h = tessera::parse_npy_header(data, size, "fuzz");
  } catch (const tessera::Error&) {
    return 0;
  }
  if (h.data_offset > size) std::abort();
  int64_t count = 1;
  for (int64_t d : h.shape) {
    if (d < 0) std::abort();
    count *= d;
  }
  if (count != h.count) std::abort();
  if (h.data_bytes != h.count * static_cast<int64_t>(tessera::dtype_size(h.dtype))) std::abort();

  const std::string again = tessera::make_npy_header(h.dtype, h.shape);
  const tessera::NpyHeader h2 = tessera::parse_npy_header(
      reinterpret_cast<const uint8_t*>(again.data()), again.size(), "again");
  if (h2.dtype != h.dtype || h2.shape != h.shape || h2.data_offset != again.size() ||
      again.size() % 64 != 0) {
    std::abort();
  }
  return 0;
}
