#pragma once
// NumPy .npy files: a header parser that works on a byte buffer, a read-only memory-mapped
// array (NpyArray), and writers (write_npy, NpyWriter) that create files atomically.
//
// Supported: format versions 1.0, 2.0 and 3.0; C order; little-endian data ('<', '=' or '|'
// byte order; '>' only for 1-byte types); dtypes bool, int8..int64, uint8..uint64, float16,
// float32, float64. Everything else is rejected with a one-line tessera::Error that starts
// with the file's path.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tessera/io/atomic_file.h"
#include "tessera/io/mapped_files.h"

namespace tessera {

enum class DType {
  kBool,
  kInt8,
  kUInt8,
  kInt16,
  kUInt16,
  kInt32,
  kUInt32,
  kInt64,
  kUInt64,
  kFloat16,
  kFloat32,
  kFloat64
};

// Bytes per element (1, 2, 4 or 8).
std::size_t dtype_size(DType dtype);
// The numpy name: "bool", "int16", "float32", ...
const char* dtype_name(DType dtype);
// The .npy descr string as numpy writes it: "|b1", "<i2", "<f4", ...
const char* dtype_descr(DType dtype);
// Parses a numpy name ("int16", "uint16", ...); throws UsageError naming `what` otherwise.
DType parse_dtype_name(const std::string& name, const std::string& what);
bool dtype_is_float(DType dtype);

// "(3, 4)", "(5,)", "()": shapes in messages, written the way numpy prints them.
std::string format_shape(const std::vector<int64_t>& shape);

struct NpyHeader {
  DType dtype = DType::kUInt8;
  std::vector<int64_t> shape;   // every dimension >= 0
  int64_t count = 1;            // product of shape (1 for a 0-d array)
  int64_t data_bytes = 0;       // count * dtype_size(dtype); fits in int64
  std::size_t data_offset = 0;  // where the data starts: magic + version + length + header
};

// Parses the magic, version and header dict at the start of `data` (which holds `size` bytes,
// at least the whole header). Never reads past data + size. Throws tessera::Error whose
// message starts with "<name_for_errors>: ".
NpyHeader parse_npy_header(const uint8_t* data, std::size_t size,
                           const std::string& name_for_errors);

// The header bytes (magic .. trailing '\n') for an array; the data offset is a multiple of 64.
std::string make_npy_header(DType dtype, const std::vector<int64_t>& shape);

// A read-only, memory-mapped view of one .npy file (mmap PROT_READ, MAP_PRIVATE). Owns the
// mapping; the file descriptor is closed once mapped. Nothing is read until touched, so
// files of many GB cost only address space. Move-only. All const methods are thread-safe.
// Invariant: the mapping holds at least data_offset + data_bytes bytes.
class NpyArray {
 public:
  NpyArray() = default;
  explicit NpyArray(const std::string& path);
  ~NpyArray();
  NpyArray(NpyArray&& other) noexcept;
  NpyArray& operator=(NpyArray&& other) noexcept;
  NpyArray(const NpyArray&) = delete;
  NpyArray& operator=(const NpyArray&) = delete;

  const std::string& path() const { return path_; }
  DType dtype() const { return header_.dtype; }
  const std::vector<int64_t>& shape() const { return header_.shape; }
  int ndim() const { return static_cast<int>(header_.shape.size()); }
  int64_t dim(int axis) const { return header_.shape[static_cast<std::size_t>(axis)]; }
  int64_t size() const { return header_.count; }
  const void* data() const { return map_ + header_.data_offset; }

  // Element `i` (flat, C order) converted to double (exact for every integer up to 2^53).
  double value(int64_t i) const;
  // Converts elements first, first + stride, ..., first + (count - 1) * stride to float /
  // double. The dtype switch happens once per call, outside the loop. No bounds checks:
  // the caller keeps every index below size().
  void read_as_float(int64_t first, int64_t count, float* out, int64_t stride = 1) const;
  void read_as_double(int64_t first, int64_t count, double* out, int64_t stride = 1) const;

 private:
  void release();

  std::string path_;
  NpyHeader header_;
  const uint8_t* map_ = nullptr;
  std::size_t map_size_ = 0;
  int mapping_ = -1;  // register_mapping's handle (mapped_files.h): a SIGBUS here names path_
};

// Writes a whole array to `path` atomically (via "<path>.partial"). `data` holds
// product(shape) elements of `dtype`, little-endian.
void write_npy(const std::string& path, DType dtype, const std::vector<int64_t>& shape,
               const void* data);

// Creates "<path>.partial" holding the header and room for the data (disk space reserved
// with posix_fallocate, so a full disk fails here, not halfway through), maps it read-write,
// and lets the caller fill data() in place (rows from many threads are fine: disjoint
// writes). commit() flushes, fsyncs and renames the file to `path`; destroying an
// uncommitted writer removes the temp file. Move-only.
class NpyWriter {
 public:
  NpyWriter(const std::string& path, DType dtype, const std::vector<int64_t>& shape);
  // With resume, an existing "<path>.partial" of exactly this header and size is mapped as it
  // is, keeping the rows an interrupted run wrote (resumed() is then true); anything else
  // there is replaced by a fresh zero-filled file.
  NpyWriter(const std::string& path, DType dtype, const std::vector<int64_t>& shape, bool resume);
  ~NpyWriter();
  NpyWriter(NpyWriter&& other) noexcept;
  NpyWriter& operator=(NpyWriter&&) = delete;
  NpyWriter(const NpyWriter&) = delete;
  NpyWriter& operator=(const NpyWriter&) = delete;

  void* data() { return map_ + data_offset_; }
  bool resumed() const { return resumed_; }
  int64_t data_bytes() const { return data_bytes_; }
  const std::string& path() const { return file_.final_path(); }
  const std::string& temp_path() const { return file_.temp_path(); }

  // Writes dirty pages back to the temp file (msync); the file stays open.
  void flush();
  // flush + fsync + unmap + rename into place. After commit the writer is empty.
  void commit();
  // Unmaps and closes the temp file, leaving it on disk for a later run to resume from (see
  // AtomicFile::keep). After keep the writer is empty.
  void keep() noexcept;

 private:
  void unmap() noexcept;

  AtomicFile file_;
  uint8_t* map_ = nullptr;
  std::size_t map_size_ = 0;
  int mapping_ = -1;  // register_mapping's handle (mapped_files.h)
  std::size_t data_offset_ = 0;
  int64_t data_bytes_ = 0;
  bool resumed_ = false;
};

}  // namespace tessera
