#include "tessera/runtime/device_batches.h"

#include <algorithm>
#include <cstring>

#include "tessera/common/error.h"
#include "tessera/model/ort_cuda.h"

namespace tessera {

BatchCounter::Range BatchCounter::claim(int64_t count) {
  const int64_t first = next_.fetch_add(std::max<int64_t>(count, 1));
  if (first >= batches_) return {batches_, batches_};
  return {first, std::min(first + std::max<int64_t>(count, 1), batches_)};
}

bool leave_to_streams(double stream_pixels_per_second, int64_t unclaimed_pixels,
                      double cpu_batch_seconds) {
  if (stream_pixels_per_second <= 0 || cpu_batch_seconds <= 0) return false;
  return static_cast<double>(unclaimed_pixels) / stream_pixels_per_second < cpu_batch_seconds;
}

void run_in_sub_batches(Engine& engine, const float* s2, const float* s1, int64_t count, float* out,
                        int64_t* limit, const std::function<void(int64_t)>& on_halve) {
  const ModelShape& shape = engine.shape();
  int64_t done = 0;
  while (done < count) {
    const int64_t n = std::min({count - done, *limit, engine.max_batch()});
    std::memcpy(engine.s2_input(), s2 + done * shape.s2_pixel_floats(),
                static_cast<size_t>(n * shape.s2_pixel_floats()) * sizeof(float));
    std::memcpy(engine.s1_input(), s1 + done * shape.s1_pixel_floats(),
                static_cast<size_t>(n * shape.s1_pixel_floats()) * sizeof(float));
    try {
      engine.run(n);
    } catch (const Error& e) {
      if (n <= 1 || !is_out_of_memory_message(e.what())) throw;
      *limit = n / 2;
      if (on_halve) on_halve(*limit);
      continue;
    }
    std::memcpy(out + done * shape.output_dim, engine.output(),
                static_cast<size_t>(n * shape.output_dim) * sizeof(float));
    done += n;
  }
}

}  // namespace tessera
