#pragma once
// FNV-1a, 64 bits: a fast, stable hash of bytes (not cryptographic). Stable across platforms
// and releases: model weights are seeded from it and profiles fingerprint with it, so its
// values never change.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tessera {

inline constexpr uint64_t kFnv1aOffset = 0xcbf29ce484222325ULL;
inline constexpr uint64_t kFnv1aPrime = 0x100000001b3ULL;

// Continues `hash` (kFnv1aOffset to start) over `bytes` bytes at `data`.
inline uint64_t fnv1a_update(uint64_t hash, const unsigned char* data, std::size_t bytes) {
  for (std::size_t i = 0; i < bytes; ++i) {
    hash ^= data[i];
    hash *= kFnv1aPrime;
  }
  return hash;
}

// The hash of `text`'s bytes.
inline uint64_t fnv1a(std::string_view text) {
  return fnv1a_update(kFnv1aOffset, reinterpret_cast<const unsigned char*>(text.data()),
                      text.size());
}

}  // namespace tessera
