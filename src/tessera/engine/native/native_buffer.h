#pragma once
// NativeBuffer: zeroed, 64-byte aligned memory, first touched by the thread that creates it.

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

namespace tessera {

class NativeBuffer {
 public:
  NativeBuffer() = default;
  explicit NativeBuffer(size_t bytes)
      : bytes_(bytes), data_(static_cast<std::byte*>(std::aligned_alloc(64, rounded(bytes)))) {
    if (!data_) throw std::bad_alloc();
    std::memset(data_.get(), 0, rounded(bytes));
  }

  template <typename T>
  T* as() const {
    return reinterpret_cast<T*>(data_.get());
  }
  size_t bytes() const { return bytes_; }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  static size_t rounded(size_t bytes) { return (bytes + 63) / 64 * 64 + 64; }

  size_t bytes_ = 0;
  std::unique_ptr<std::byte, Free> data_;
};

}  // namespace tessera
