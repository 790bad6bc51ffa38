#include "tessera/geo/crc32c.h"

#include <array>

namespace tessera {
namespace {

constexpr std::uint32_t kReflectedPolynomial = 0x82F63B78u;

// table[b] is the CRC register after feeding the byte b into a zero register.
constexpr std::array<std::uint32_t, 256> make_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t byte = 0; byte < 256; ++byte) {
    std::uint32_t reg = byte;
    for (int bit = 0; bit < 8; ++bit)
      reg = (reg & 1u) ? (reg >> 1) ^ kReflectedPolynomial : reg >> 1;
    table[byte] = reg;
  }
  return table;
}

constexpr std::array<std::uint32_t, 256> kTable = make_table();

}  // namespace

std::uint32_t crc32c(const void* data, std::size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t reg = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < bytes; ++i) reg = kTable[(reg ^ p[i]) & 0xFFu] ^ (reg >> 8);
  return reg ^ 0xFFFFFFFFu;
}

}  // namespace tessera
