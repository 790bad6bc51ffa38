#pragma once
// CRC-32C (Castagnoli), the checksum of a Zarr v3 `crc32c` codec: reflected polynomial
// 0x82F63B78, initial value and final xor 0xFFFFFFFF. crc32c("123456789") == 0xE3069283.

#include <cstddef>
#include <cstdint>

namespace tessera {

std::uint32_t crc32c(const void* data, std::size_t bytes);

}  // namespace tessera
