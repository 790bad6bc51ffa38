#include "tessera/geo/zarr_shard.h"

#include <blosc.h>
#include <unistd.h>

#include <bit>
#include <cstring>

#include "tessera/common/error.h"
#include "tessera/geo/crc32c.h"

namespace tessera {

static_assert(std::endian::native == std::endian::little,
              "the `bytes` codec's little-endian chunks are written as they lie in memory");

namespace {

constexpr int kZstdLevel = 3;

void put_u64(std::uint8_t* out, std::uint64_t v) {
  for (int b = 0; b < 8; ++b) out[b] = static_cast<std::uint8_t>(v >> (8 * b));
}

std::uint64_t get_u64(const std::uint8_t* in) {
  std::uint64_t v = 0;
  for (int b = 7; b >= 0; --b) v = (v << 8) | in[b];
  return v;
}

[[noreturn]] void corrupt_shard(const std::string& path, const std::string& what) {
  throw Error(path + ": corrupt shard (" + what + "); remove it or restore it");
}

}  // namespace

std::vector<std::uint8_t> blosc_compress_chunk(const void* data, std::size_t bytes, int item_size) {
  std::vector<std::uint8_t> frame(bytes + BLOSC_MAX_OVERHEAD);
  const int shuffle = item_size == 1 ? BLOSC_BITSHUFFLE : BLOSC_SHUFFLE;
  const int n = blosc_compress_ctx(kZstdLevel, shuffle, static_cast<std::size_t>(item_size), bytes,
                                   data, frame.data(), frame.size(), BLOSC_ZSTD_COMPNAME,
                                   /*blocksize=*/0, /*numinternalthreads=*/1);
  // With BLOSC_MAX_OVERHEAD of room blosc always succeeds (it stores the data uncompressed
  // when compressing does not pay); a failure is a bug, not a user's input.
  if (n <= 0) throw Error("blosc: cannot compress a chunk of " + std::to_string(bytes) + " bytes");
  frame.resize(static_cast<std::size_t>(n));
  return frame;
}

void blosc_decompress_chunk(const std::uint8_t* frame, std::size_t frame_bytes, void* out,
                            std::size_t out_bytes, const std::string& where) {
  std::size_t nbytes = 0, cbytes = 0, blocksize = 0;
  if (frame_bytes < BLOSC_MIN_HEADER_LENGTH)
    throw Error(where + ": corrupt chunk (shorter than a blosc header)");
  blosc_cbuffer_sizes(frame, &nbytes, &cbytes, &blocksize);
  if (cbytes != frame_bytes || nbytes != out_bytes)
    throw Error(where + ": corrupt chunk (blosc frame of " + std::to_string(cbytes) +
                " bytes holding " + std::to_string(nbytes) + ", expected " +
                std::to_string(frame_bytes) + " holding " + std::to_string(out_bytes) + ")");
  const int n = blosc_decompress_ctx(frame, out, out_bytes, /*numinternalthreads=*/1);
  if (n < 0 || static_cast<std::size_t>(n) != out_bytes)
    throw Error(where + ": corrupt chunk (blosc cannot decompress it)");
}

std::vector<std::uint8_t> encode_shard_index(const ShardIndex& index) {
  std::vector<std::uint8_t> out(shard_index_bytes(index.chunks()));
  for (std::size_t i = 0; i < index.chunks(); ++i) {
    put_u64(out.data() + 16 * i, index.offset[i]);
    put_u64(out.data() + 16 * i + 8, index.nbytes[i]);
  }
  const std::size_t body = 16 * index.chunks();
  const std::uint32_t crc = crc32c(out.data(), body);
  for (int b = 0; b < 4; ++b) out[body + b] = static_cast<std::uint8_t>(crc >> (8 * b));
  return out;
}

ShardIndex read_shard_index(int fd, std::uint64_t file_bytes, std::size_t chunks,
                            const std::string& path) {
  const std::uint64_t index_bytes = shard_index_bytes(chunks);
  if (file_bytes < index_bytes)
    corrupt_shard(path, std::to_string(file_bytes) + " bytes, shorter than its " +
                            std::to_string(index_bytes) + "-byte index");
  std::vector<std::uint8_t> raw(index_bytes);
  const auto at = static_cast<off_t>(file_bytes - index_bytes);
  if (::pread(fd, raw.data(), raw.size(), at) != static_cast<ssize_t>(raw.size()))
    corrupt_shard(path, "cannot read its index");
  const std::size_t body = 16 * chunks;
  std::uint32_t stored = 0;
  for (int b = 3; b >= 0; --b) stored = (stored << 8) | raw[body + b];
  if (crc32c(raw.data(), body) != stored) corrupt_shard(path, "index checksum does not match");
  ShardIndex index(chunks);
  const std::uint64_t data_end = file_bytes - index_bytes;
  for (std::size_t i = 0; i < chunks; ++i) {
    index.offset[i] = get_u64(raw.data() + 16 * i);
    index.nbytes[i] = get_u64(raw.data() + 16 * i + 8);
    const bool absent = index.offset[i] == kAbsentChunk && index.nbytes[i] == kAbsentChunk;
    if (!absent && (index.offset[i] > data_end || index.nbytes[i] > data_end - index.offset[i]))
      corrupt_shard(path, "chunk " + std::to_string(i) + " lies outside the file");
  }
  return index;
}

}  // namespace tessera
