#include "tessera/io/npy.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "tessera/common/error.h"

namespace tessera {
namespace {

constexpr uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
constexpr std::size_t kMaxHeaderText = 1 << 20;  // numpy itself refuses headers over 10 kB

struct DTypeInfo {
  DType dtype;
  const char* code;   // kind + size, e.g. "i2"
  const char* descr;  // as numpy writes it
  const char* name;
  std::size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kBool, "b1", "|b1", "bool", 1},       {DType::kInt8, "i1", "|i1", "int8", 1},
    {DType::kUInt8, "u1", "|u1", "uint8", 1},     {DType::kInt16, "i2", "<i2", "int16", 2},
    {DType::kUInt16, "u2", "<u2", "uint16", 2},   {DType::kInt32, "i4", "<i4", "int32", 4},
    {DType::kUInt32, "u4", "<u4", "uint32", 4},   {DType::kInt64, "i8", "<i8", "int64", 8},
    {DType::kUInt64, "u8", "<u8", "uint64", 8},   {DType::kFloat16, "f2", "<f2", "float16", 2},
    {DType::kFloat32, "f4", "<f4", "float32", 4}, {DType::kFloat64, "f8", "<f8", "float64", 8},
};

const DTypeInfo& info(DType dtype) {
  return kDTypes[static_cast<int>(dtype)];
}

// Reads the header dict: {'descr': '<i2', 'fortran_order': False, 'shape': (3, 4), }
// A tiny recursive-descent reader over [pos, end) that never reads past `end`.
class DictReader {
 public:
  DictReader(const char* begin, const char* end, const std::string& name)
      : pos_(begin), end_(end), name_(name) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(name_ + ": bad header: " + what);
  }

  void skip_space() {
    while (pos_ < end_ && (*pos_ == ' ' || *pos_ == '\t' || *pos_ == '\n' || *pos_ == '\r')) {
      ++pos_;
    }
  }
  bool at(char c) {
    skip_space();
    return pos_ < end_ && *pos_ == c;
  }
  void expect(char c) {
    if (!at(c)) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  bool at_end() {
    skip_space();
    return pos_ >= end_;
  }

  std::string read_string() {
    skip_space();
    if (pos_ >= end_ || (*pos_ != '\'' && *pos_ != '"')) fail("expected a quoted string");
    const char quote = *pos_++;
    const char* start = pos_;
    while (pos_ < end_ && *pos_ != quote) {
      if (*pos_ == '\\') fail("escapes in strings are not supported");
      ++pos_;
    }
    if (pos_ >= end_) fail("unterminated string");
    std::string s(start, pos_);
    ++pos_;
    return s;
  }

  bool read_bool() {
    skip_space();
    auto take = [&](const char* word) {
      const std::size_t n = std::strlen(word);
      if (static_cast<std::size_t>(end_ - pos_) >= n && std::memcmp(pos_, word, n) == 0) {
        pos_ += n;
        return true;
      }
      return false;
    };
    if (take("True")) return true;
    if (take("False")) return false;
    fail("expected True or False");
  }

  int64_t read_int() {
    skip_space();
    if (pos_ >= end_ || *pos_ < '0' || *pos_ > '9') fail("expected a non-negative integer");
    int64_t v = 0;
    while (pos_ < end_ && *pos_ >= '0' && *pos_ <= '9') {
      if (v > (std::numeric_limits<int64_t>::max() - 9) / 10) fail("dimension too large");
      v = v * 10 + (*pos_ - '0');
      ++pos_;
    }
    if (pos_ < end_ && (*pos_ == 'L' || *pos_ == 'l')) ++pos_;  // Python 2 long suffix
    return v;
  }

  std::vector<int64_t> read_shape() {
    expect('(');
    std::vector<int64_t> shape;
    while (!at(')')) {
      if (shape.size() >= 64) fail("too many dimensions");
      shape.push_back(read_int());
      if (at(',')) {
        ++pos_;
      } else if (!at(')')) {
        fail("expected ',' or ')' in shape");
      }
    }
    ++pos_;
    return shape;
  }

  // Skips a value we do not interpret (a structured descr list) for the error message.
  std::string raw_until_comma_at_depth0() {
    skip_space();
    const char* start = pos_;
    int depth = 0;
    while (pos_ < end_) {
      const char c = *pos_;
      if (c == '[' || c == '(' || c == '{') ++depth;
      if (c == ']' || c == ')' || c == '}') {
        if (depth == 0) break;
        --depth;
      }
      if (c == ',' && depth == 0) break;
      ++pos_;
    }
    return std::string(start, pos_);
  }

 private:
  const char* pos_;
  const char* end_;
  const std::string& name_;
};

DType parse_descr(const std::string& descr, const std::string& name) {
  const std::string shown = descr.size() > 40 ? descr.substr(0, 40) + "..." : descr;
  const std::string unsupported =
      name + ": unsupported dtype '" + shown +
      "' (supported: bool, int8-64, uint8-64, float16, float32, float64)";
  if (descr.size() != 3) throw Error(unsupported);
  const char order = descr[0];
  const std::string code = descr.substr(1);
  const DTypeInfo* found = nullptr;
  for (const DTypeInfo& d : kDTypes) {
    if (code == d.code) found = &d;
  }
  if (code == "?1") found = &kDTypes[0];
  if (found == nullptr) throw Error(unsupported);
  if (order == '>' || order == '!') {
    if (found->size != 1) throw Error(name + ": big-endian dtype '" + shown + "' is not supported");
  } else if (order != '<' && order != '|' && order != '=') {
    throw Error(unsupported);
  }
  return found->dtype;
}

// IEEE binary16 -> binary32, exact (subnormals, infinities and NaN included).
float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

template <typename T>
inline T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The typed inner loop: one instantiation per (stored type, output type).
template <typename Stored, typename Out>
void convert(const uint8_t* base, int64_t first, int64_t count, int64_t stride, Out* out) {
  const uint8_t* p = base + first * static_cast<int64_t>(sizeof(Stored));
  const int64_t step = stride * static_cast<int64_t>(sizeof(Stored));
  for (int64_t k = 0; k < count; ++k, p += step) {
    out[k] = static_cast<Out>(load<Stored>(p));
  }
}

template <typename Out>
void convert_any(DType dtype, const uint8_t* base, int64_t first, int64_t count, int64_t stride,
                 Out* out) {
  switch (dtype) {
    case DType::kBool:
    case DType::kUInt8:
      return convert<uint8_t>(base, first, count, stride, out);
    case DType::kInt8:
      return convert<int8_t>(base, first, count, stride, out);
    case DType::kInt16:
      return convert<int16_t>(base, first, count, stride, out);
    case DType::kUInt16:
      return convert<uint16_t>(base, first, count, stride, out);
    case DType::kInt32:
      return convert<int32_t>(base, first, count, stride, out);
    case DType::kUInt32:
      return convert<uint32_t>(base, first, count, stride, out);
    case DType::kInt64:
      return convert<int64_t>(base, first, count, stride, out);
    case DType::kUInt64:
      return convert<uint64_t>(base, first, count, stride, out);
    case DType::kFloat32:
      return convert<float>(base, first, count, stride, out);
    case DType::kFloat64:
      return convert<double>(base, first, count, stride, out);
    case DType::kFloat16: {
      const uint8_t* p = base + first * 2;
      for (int64_t k = 0; k < count; ++k, p += stride * 2) {
        out[k] = static_cast<Out>(half_to_float(load<uint16_t>(p)));
      }
      return;
    }
  }
}

}  // namespace

std::size_t dtype_size(DType dtype) {
  return info(dtype).size;
}
const char* dtype_name(DType dtype) {
  return info(dtype).name;
}
const char* dtype_descr(DType dtype) {
  return info(dtype).descr;
}
bool dtype_is_float(DType dtype) {
  return dtype == DType::kFloat16 || dtype == DType::kFloat32 || dtype == DType::kFloat64;
}

DType parse_dtype_name(const std::string& name, const std::string& what) {
  for (const DTypeInfo& d : kDTypes) {
    if (name == d.name) return d.dtype;
  }
  throw UsageError(what + ": unknown dtype '" + name + "'");
}

std::string format_shape(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

NpyHeader parse_npy_header(const uint8_t* data, std::size_t size, const std::string& name) {
  if (size < 8 || std::memcmp(data, kMagic, sizeof kMagic) != 0) {
    throw Error(name + ": not a .npy file (bad magic)");
  }
  const int major = data[6];
  const int minor = data[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0) {
    throw Error(name + ": unsupported .npy format version " + std::to_string(major) + "." +
                std::to_string(minor));
  }
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  if (size < 8 + len_bytes) throw Error(name + ": bad header: truncated before the header length");
  std::size_t header_len = data[8] | (static_cast<std::size_t>(data[9]) << 8);
  if (major != 1) {
    header_len |=
        (static_cast<std::size_t>(data[10]) << 16) | (static_cast<std::size_t>(data[11]) << 24);
  }
  if (header_len > kMaxHeaderText) {
    throw Error(name + ": bad header: header length " + std::to_string(header_len) +
                " is implausibly large");
  }
  const std::size_t text_start = 8 + len_bytes;
  if (size - text_start < header_len) {
    throw Error(name + ": bad header: header says " + std::to_string(header_len) +
                " bytes, file has " + std::to_string(size - text_start));
  }
  const char* text = reinterpret_cast<const char*>(data + text_start);
  DictReader r(text, text + header_len, name);

  bool have_descr = false, have_order = false, have_shape = false;
  std::string descr;
  bool fortran = false;
  NpyHeader h;
  r.expect('{');
  while (!r.at('}')) {
    const std::string key = r.read_string();
    r.expect(':');
    if (key == "descr") {
      if (r.at('\'') || r.at('"')) {
        descr = r.read_string();
      } else {
        descr = r.raw_until_comma_at_depth0();  // structured dtype: rejected below
      }
      have_descr = true;
    } else if (key == "fortran_order") {
      fortran = r.read_bool();
      have_order = true;
    } else if (key == "shape") {
      h.shape = r.read_shape();
      have_shape = true;
    } else {
      r.fail("unexpected key '" + (key.size() > 40 ? key.substr(0, 40) + "..." : key) + "'");
    }
    if (r.at(',')) {
      r.expect(',');
    } else if (!r.at('}')) {
      r.fail("expected ',' or '}'");
    }
  }
  r.expect('}');
  if (!r.at_end()) r.fail("trailing characters after the dict");
  if (!have_descr) r.fail("missing 'descr'");
  if (!have_order) r.fail("missing 'fortran_order'");
  if (!have_shape) r.fail("missing 'shape'");

  h.dtype = parse_descr(descr, name);
  if (fortran) throw Error(name + ": Fortran-order arrays are not supported");

  const int64_t item = static_cast<int64_t>(dtype_size(h.dtype));
  h.count = 1;
  for (int64_t d : h.shape) {
    if (d != 0 && h.count > std::numeric_limits<int64_t>::max() / item / d) {
      throw Error(name + ": bad header: shape " + format_shape(h.shape) + " is too large");
    }
    h.count *= d;
  }
  h.data_bytes = h.count * item;
  h.data_offset = text_start + header_len;
  return h;
}

std::string make_npy_header(DType dtype, const std::vector<int64_t>& shape) {
  std::string dict = std::string("{'descr': '") + dtype_descr(dtype) +
                     "', 'fortran_order': False, 'shape': " + format_shape(shape) + ", }";
  // Pad with spaces so that the data starts on a 64-byte boundary; the text ends in '\n'.
  const bool v1 = dict.size() + 1 + 10 <= 65535;
  const std::size_t prefix = v1 ? 10 : 12;
  const std::size_t total = (prefix + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - prefix - dict.size() - 1, ' ');
  dict += '\n';
  const std::size_t len = dict.size();
  std::string out(reinterpret_cast<const char*>(kMagic), sizeof kMagic);
  out += static_cast<char>(v1 ? 1 : 2);
  out += '\0';
  out += static_cast<char>(len & 0xff);
  out += static_cast<char>((len >> 8) & 0xff);
  if (!v1) {
    out += static_cast<char>((len >> 16) & 0xff);
    out += static_cast<char>((len >> 24) & 0xff);
  }
  return out + dict;
}

// ---------------------------------------------------------------------------- NpyArray

NpyArray::NpyArray(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    throw Error(path + ": cannot open: " + errno_text(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  const std::size_t file_size = static_cast<std::size_t>(st.st_size);
  if (file_size < sizeof kMagic) {
    ::close(fd);
    throw Error(path + ": not a .npy file (bad magic)");
  }
  void* map = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);
  if (map == MAP_FAILED) throw Error(path + ": cannot map: " + errno_text(map_err));
  map_ = static_cast<const uint8_t*>(map);
  map_size_ = file_size;
  mapping_ = register_mapping(map_, map_size_, path, MappedUse::kInput);
  try {
    header_ = parse_npy_header(map_, map_size_, path);
    const std::size_t have = map_size_ - header_.data_offset;
    if (have < static_cast<std::size_t>(header_.data_bytes)) {
      throw Error(path + ": truncated: header says " + std::to_string(header_.data_bytes) +
                  " bytes of data, file has " + std::to_string(have));
    }
  } catch (...) {
    release();
    throw;
  }
}

NpyArray::~NpyArray() {
  release();
}

NpyArray::NpyArray(NpyArray&& other) noexcept
    : path_(std::move(other.path_)),
      header_(std::move(other.header_)),
      map_(std::exchange(other.map_, nullptr)),
      map_size_(std::exchange(other.map_size_, 0)),
      mapping_(std::exchange(other.mapping_, -1)) {}

NpyArray& NpyArray::operator=(NpyArray&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    header_ = std::move(other.header_);
    map_ = std::exchange(other.map_, nullptr);
    map_size_ = std::exchange(other.map_size_, 0);
    mapping_ = std::exchange(other.mapping_, -1);
  }
  return *this;
}

void NpyArray::release() {
  unregister_mapping(std::exchange(mapping_, -1));
  if (map_ != nullptr) ::munmap(const_cast<uint8_t*>(map_), map_size_);
  map_ = nullptr;
  map_size_ = 0;
}

double NpyArray::value(int64_t i) const {
  double v = 0;
  read_as_double(i, 1, &v);
  return v;
}

void NpyArray::read_as_float(int64_t first, int64_t count, float* out, int64_t stride) const {
  convert_any(header_.dtype, map_ + header_.data_offset, first, count, stride, out);
}

void NpyArray::read_as_double(int64_t first, int64_t count, double* out, int64_t stride) const {
  convert_any(header_.dtype, map_ + header_.data_offset, first, count, stride, out);
}

// ---------------------------------------------------------------------------- writers

void write_npy(const std::string& path, DType dtype, const std::vector<int64_t>& shape,
               const void* data) {
  NpyWriter writer(path, dtype, shape);
  if (writer.data_bytes() > 0) {
    std::memcpy(writer.data(), data, static_cast<std::size_t>(writer.data_bytes()));
  }
  writer.commit();
}

NpyWriter::NpyWriter(const std::string& path, DType dtype, const std::vector<int64_t>& shape)
    : NpyWriter(path, dtype, shape, false) {}

NpyWriter::NpyWriter(const std::string& path, DType dtype, const std::vector<int64_t>& shape,
                     bool resume)
    : file_(path, resume) {
  int64_t count = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Error(path + ": negative dimension in shape " + format_shape(shape));
    count *= d;
  }
  const std::string header = make_npy_header(dtype, shape);
  data_offset_ = header.size();
  data_bytes_ = count * static_cast<int64_t>(dtype_size(dtype));
  map_size_ = data_offset_ + static_cast<std::size_t>(data_bytes_);
  if (file_.reused()) {
    struct stat st {};
    std::string existing(header.size(), '\0');
    resumed_ = ::fstat(file_.fd(), &st) == 0 && static_cast<std::size_t>(st.st_size) == map_size_ &&
               ::pread(file_.fd(), existing.data(), existing.size(), 0) ==
                   static_cast<ssize_t>(existing.size()) &&
               existing == header;
    // Not ours to continue: start from an empty file.
    if (!resumed_ && ::ftruncate(file_.fd(), 0) != 0) {
      const int err = errno;
      throw Error(path + ": cannot truncate " + file_.temp_path() + ": " + errno_text(err));
    }
  }
  if (!resumed_) file_.reserve(static_cast<int64_t>(map_size_));
  void* map = ::mmap(nullptr, map_size_, PROT_READ | PROT_WRITE, MAP_SHARED, file_.fd(), 0);
  if (map == MAP_FAILED) {
    const int err = errno;
    throw Error(path + ": cannot map " + file_.temp_path() + ": " + errno_text(err));
  }
  map_ = static_cast<uint8_t*>(map);
  mapping_ = register_mapping(map_, map_size_, file_.temp_path(), MappedUse::kOutput);
  if (!resumed_) std::memcpy(map_, header.data(), header.size());
}

NpyWriter::NpyWriter(NpyWriter&& other) noexcept
    : file_(std::move(other.file_)),
      map_(std::exchange(other.map_, nullptr)),
      map_size_(std::exchange(other.map_size_, 0)),
      mapping_(std::exchange(other.mapping_, -1)),
      data_offset_(other.data_offset_),
      data_bytes_(other.data_bytes_),
      resumed_(other.resumed_) {}

NpyWriter::~NpyWriter() {
  unmap();
}

void NpyWriter::unmap() noexcept {
  unregister_mapping(std::exchange(mapping_, -1));
  if (map_ != nullptr) ::munmap(map_, map_size_);
  map_ = nullptr;
  map_size_ = 0;
}

void NpyWriter::flush() {
  if (map_ != nullptr && ::msync(map_, map_size_, MS_SYNC) != 0) {
    const int err = errno;
    throw Error(path() + ": cannot write back " + temp_path() + ": " + errno_text(err));
  }
}

void NpyWriter::keep() noexcept {
  unmap();  // dirty MAP_SHARED pages belong to the file's page cache: nothing is lost
  file_.keep();
}

void NpyWriter::commit() {
  flush();
  unmap();
  file_.commit();
}

}  // namespace tessera
