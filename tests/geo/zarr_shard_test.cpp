#include "tessera/geo/zarr_shard.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "tessera/common/error.h"
#include "tessera/geo/crc32c.h"

namespace tessera {
namespace {

TEST(Crc32c, MatchesTheCheckValueOfTheCastagnoliPolynomial) {
  const std::string check = "123456789";
  EXPECT_EQ(crc32c(check.data(), check.size()), 0xE3069283u);
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
}

TEST(BloscChunk, RoundTripsBothItemSizes) {
  std::vector<float> values(32 * 32);
  std::iota(values.begin(), values.end(), -3.5f);
  const auto frame = blosc_compress_chunk(values.data(), values.size() * 4, 4);
  std::vector<float> back(values.size());
  blosc_decompress_chunk(frame.data(), frame.size(), back.data(), back.size() * 4, "t");
  EXPECT_EQ(back, values);
  std::vector<std::int8_t> codes(128 * 32 * 32, -7);
  const auto small = blosc_compress_chunk(codes.data(), codes.size(), 1);
  EXPECT_LT(small.size(), codes.size() / 10);  // constant data compresses
  EXPECT_THROW(
      {
        try {
          blosc_decompress_chunk(small.data(), small.size(), back.data(), 16, "s/c/0");
        } catch (const Error& e) {
          EXPECT_STREQ(
              e.what(),
              ("s/c/0: corrupt chunk (blosc frame of " + std::to_string(small.size()) +
               " bytes holding 131072, expected " + std::to_string(small.size()) + " holding 16)")
                  .c_str());
          throw;
        }
      },
      Error);
}

// A shard file with `index` at its end after `data_bytes` bytes of chunk data.
std::string write_shard(const ShardIndex& index, std::size_t data_bytes) {
  const std::string path = std::string(TESSERA_TEST_TMP) + "/shard_index_test";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  const std::vector<std::uint8_t> data(data_bytes, 0x5A);
  std::fwrite(data.data(), 1, data.size(), f);
  const auto bytes = encode_shard_index(index);
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  return path;
}

ShardIndex read_back(const std::string& path, std::size_t chunks) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  std::fseek(f, 0, SEEK_END);
  const auto size = static_cast<std::uint64_t>(std::ftell(f));
  const ShardIndex index = read_shard_index(fileno(f), size, chunks, path);
  std::fclose(f);
  return index;
}

TEST(ShardIndex, RoundTripsAndRefusesAChunkOutsideTheFile) {
  ShardIndex index(4);
  index.offset[1] = 0, index.nbytes[1] = 10;
  index.offset[3] = 10, index.nbytes[3] = 6;
  const std::string path = write_shard(index, 16);
  const ShardIndex back = read_back(path, 4);
  EXPECT_EQ(back.offset, index.offset);
  EXPECT_EQ(back.nbytes, index.nbytes);
  EXPECT_FALSE(back.present(0));
  index.nbytes[3] = 7;  // one byte past the data part
  const std::string bad = write_shard(index, 16);
  try {
    read_back(bad, 4);
    FAIL() << "a chunk outside the file was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              bad + ": corrupt shard (chunk 3 lies outside the file); remove it or restore it");
  }
}

}  // namespace
}  // namespace tessera
