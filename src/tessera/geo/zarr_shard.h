#pragma once
// The bytes of a Zarr v3 `sharding_indexed` shard as tessera's zone stores write them, and the
// `blosc` codec of its inner chunks.
//
// A shard of n inner chunks is: the encoded chunks, packed in row-major chunk order with no
// gaps, then the index at the end: n pairs (offset, nbytes) of little-endian uint64 (the
// `bytes` codec), then the CRC-32C of those 16 n bytes, little-endian (the `crc32c` codec). An
// absent chunk (all fill value) has offset = nbytes = 2^64 - 1. Each inner chunk is the
// C-order array (`bytes` codec, little endian) compressed by blosc: zstd level 3, typesize =
// item size, bit-shuffle for 1-byte items, byte-shuffle otherwise.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

// One inner chunk's blosc frame: compress `bytes` bytes of items of `item_size` bytes.
std::vector<std::uint8_t> blosc_compress_chunk(const void* data, std::size_t bytes, int item_size);

// Decompresses one frame into exactly `out_bytes` bytes at `out`. A frame that is not blosc,
// or does not hold exactly `out_bytes`, throws Error "<where>: corrupt chunk (...)".
void blosc_decompress_chunk(const std::uint8_t* frame, std::size_t frame_bytes, void* out,
                            std::size_t out_bytes, const std::string& where);

constexpr std::uint64_t kAbsentChunk = ~std::uint64_t{0};

// Where each inner chunk lies in a shard file, in row-major chunk order.
struct ShardIndex {
  std::vector<std::uint64_t> offset;  // kAbsentChunk when absent
  std::vector<std::uint64_t> nbytes;
  explicit ShardIndex(std::size_t chunks)
      : offset(chunks, kAbsentChunk), nbytes(chunks, kAbsentChunk) {}
  std::size_t chunks() const { return offset.size(); }
  bool present(std::size_t i) const { return offset[i] != kAbsentChunk; }
};

// Bytes the index takes at the end of a shard of `chunks` inner chunks: 16 per chunk + 4.
constexpr std::uint64_t shard_index_bytes(std::size_t chunks) {
  return 16 * std::uint64_t{chunks} + 4;
}

// The index's bytes as written at the end of a shard, its CRC-32C included.
std::vector<std::uint8_t> encode_shard_index(const ShardIndex& index);

// Reads the index of the shard file open at `fd` (`file_bytes` long, `chunks` inner chunks).
// A file too short for its index, a CRC that does not match, or a chunk that lies outside the
// data part throws Error "<path>: corrupt shard (<what>); remove it or restore it".
ShardIndex read_shard_index(int fd, std::uint64_t file_bytes, std::size_t chunks,
                            const std::string& path);

}  // namespace tessera
