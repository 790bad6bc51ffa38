#include "tessera/geo/zone_shards.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "tessera/common/error.h"
#include "tessera/geo/store_lock.h"
#include "tessera/geo/zarr_shard.h"
#include "tessera/io/atomic_file.h"
#include "tessera/io/safe_file.h"

namespace tessera {
namespace {

// Pixels [begin, end) along one axis of the zone.
struct Span {
  std::int64_t begin = 0, end = 0;
  bool empty() const { return end <= begin; }
};

Span overlap(Span a, Span b) {
  return {std::max(a.begin, b.begin), std::min(a.end, b.end)};
}

// One item of the array's fill value: int8 0, or float32 +inf.
std::vector<std::uint8_t> fill_item(const ShardedArraySpec& spec) {
  std::vector<std::uint8_t> item(static_cast<std::size_t>(spec.item_size), 0);
  if (spec.item_size == 4) {
    const float inf = std::numeric_limits<float>::infinity();
    std::memcpy(item.data(), &inf, sizeof inf);
  }
  return item;
}

bool all_fill(const std::vector<std::uint8_t>& chunk, const std::vector<std::uint8_t>& fill) {
  for (std::size_t i = 0; i < chunk.size(); i += fill.size())
    if (std::memcmp(chunk.data() + i, fill.data(), fill.size()) != 0) return false;
  return true;
}

// The new shard as it is written: chunks appended in order, each recorded in the index.
class ShardBuilder {
 public:
  ShardBuilder(const std::string& path, std::size_t chunks) : file_(path), index_(chunks) {}

  void append(std::size_t chunk, const std::uint8_t* data, std::uint64_t bytes) {
    index_.offset[chunk] = position_;
    index_.nbytes[chunk] = bytes;
    file_.write(data, bytes);
    position_ += bytes;
  }

  void commit() {
    const std::vector<std::uint8_t> index = encode_shard_index(index_);
    file_.write(index.data(), index.size());
    file_.commit();
  }

 private:
  AtomicFile file_;
  ShardIndex index_;
  std::uint64_t position_ = 0;
};

// The old shard, read chunk by chunk.
struct OldShard {
  int fd = -1;
  ShardIndex index;
  std::string path;
  OldShard(const std::string& shard_path, std::size_t chunks) : index(chunks), path(shard_path) {
    fd = open_own_file(shard_path, O_RDONLY);
    if (fd < 0) return;
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw Error(path + ": cannot stat: " + errno_text(errno));
    index = read_shard_index(fd, static_cast<std::uint64_t>(st.st_size), chunks, path);
  }
  ~OldShard() {
    if (fd >= 0) ::close(fd);
  }
  OldShard(const OldShard&) = delete;
  OldShard& operator=(const OldShard&) = delete;

  std::vector<std::uint8_t> raw_chunk(std::size_t i) const {
    std::vector<std::uint8_t> raw(index.nbytes[i]);
    const auto at = static_cast<off_t>(index.offset[i]);
    if (::pread(fd, raw.data(), raw.size(), at) != static_cast<ssize_t>(raw.size()))
      throw Error(path + ": cannot read chunk " + std::to_string(i) + ": " + errno_text(errno));
    return raw;
  }
};

// Chunk `i`'s decoded values with the patch's pixels written over them.
std::vector<std::uint8_t> patched_chunk(const OldShard& old, std::size_t i,
                                        const ShardedArraySpec& spec, Span rows, Span cols,
                                        const PlanarPatch& patch) {
  const std::vector<std::uint8_t> fill = fill_item(spec);
  std::vector<std::uint8_t> chunk(spec.chunk_bytes());
  if (old.index.present(i)) {
    const std::vector<std::uint8_t> raw = old.raw_chunk(i);
    blosc_decompress_chunk(raw.data(), raw.size(), chunk.data(), chunk.size(),
                           old.path + " chunk " + std::to_string(i));
  } else {
    for (std::size_t b = 0; b < chunk.size(); b += fill.size())
      std::memcpy(chunk.data() + b, fill.data(), fill.size());
  }
  const std::int64_t side = spec.chunk_side, item = spec.item_size;
  const std::int64_t chunk_row0 = rows.begin - (rows.begin % side);  // zone row of its row 0
  const std::int64_t chunk_col0 = cols.begin - (cols.begin % side);
  const auto* src = static_cast<const std::uint8_t*>(patch.data);
  const std::int64_t run = (cols.end - cols.begin) * item;
  for (std::int64_t p = 0; p < spec.planes(); ++p)
    for (std::int64_t r = rows.begin; r < rows.end; ++r) {
      const std::int64_t from =
          ((p * patch.height + (r - patch.row)) * patch.width + (cols.begin - patch.col)) * item;
      const std::int64_t to =
          ((p * side + (r - chunk_row0)) * side + (cols.begin - chunk_col0)) * item;
      std::memcpy(chunk.data() + to, src + from, static_cast<std::size_t>(run));
    }
  return chunk;
}

}  // namespace

void update_shard(const std::string& shard_path, const ShardedArraySpec& spec,
                  std::int64_t shard_row, std::int64_t shard_col, const PlanarPatch& patch) {
  const std::int64_t per_side = kShardSide / spec.chunk_side;
  const auto chunks = static_cast<std::size_t>(per_side * per_side);
  const Span patch_rows{patch.row, patch.row + patch.height};
  const Span patch_cols{patch.col, patch.col + patch.width};
  StoreLock lock(shard_path + ".lock");
  const OldShard old(shard_path, chunks);
  ShardBuilder fresh(shard_path, chunks);
  const std::vector<std::uint8_t> fill = fill_item(spec);
  for (std::size_t i = 0; i < chunks; ++i) {
    const std::int64_t row0 =
        shard_row * kShardSide + static_cast<std::int64_t>(i) / per_side * spec.chunk_side;
    const std::int64_t col0 =
        shard_col * kShardSide + static_cast<std::int64_t>(i) % per_side * spec.chunk_side;
    const Span rows = overlap({row0, row0 + spec.chunk_side}, patch_rows);
    const Span cols = overlap({col0, col0 + spec.chunk_side}, patch_cols);
    if (rows.empty() || cols.empty()) {
      if (!old.index.present(i)) continue;
      const std::vector<std::uint8_t> raw = old.raw_chunk(i);  // untouched: copied as it is
      fresh.append(i, raw.data(), raw.size());
      continue;
    }
    const std::vector<std::uint8_t> chunk = patched_chunk(old, i, spec, rows, cols, patch);
    if (all_fill(chunk, fill)) continue;  // stored absent, as zarr writers do
    const std::vector<std::uint8_t> frame =
        blosc_compress_chunk(chunk.data(), chunk.size(), spec.item_size);
    fresh.append(i, frame.data(), frame.size());
  }
  fresh.commit();
}

}  // namespace tessera
