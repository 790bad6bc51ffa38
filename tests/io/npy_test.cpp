#include "tessera/io/npy.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/test_tiles.h"
#include "tessera/common/error.h"

namespace tessera {
namespace {

using testing::run_python;
using testing::test_dir;

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A .npy file with a hand-written header dict (version 1.0 unless given).
std::string npy_bytes(const std::string& dict, const std::string& data, int major = 1) {
  std::string text = dict;
  const std::size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + text.size() + 1) % 64 != 0) text += ' ';
  text += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  for (std::size_t i = 0; i < prefix - 8; ++i) {
    out += static_cast<char>((text.size() >> (8 * i)) & 0xff);
  }
  return out + text + data;
}

std::string version_4() {
  std::string bytes = npy_bytes("{}", "");
  bytes[6] = 4;
  return bytes;
}

TEST(Npy, RoundTripsEveryDtype) {
  const std::string dir = test_dir("npy_roundtrip");
  const std::vector<double> values = {0, 1, 2, 3, 4, 5, 6, 7, 100, 120, 0, 1};
  for (DType d :
       {DType::kBool, DType::kInt8, DType::kUInt8, DType::kInt16, DType::kUInt16, DType::kInt32,
        DType::kUInt32, DType::kInt64, DType::kUInt64, DType::kFloat32, DType::kFloat64}) {
    const std::string path = dir + "/" + dtype_name(d) + ".npy";
    testing::write_values(path, d, {3, 4}, values);
    NpyArray a(path);
    EXPECT_EQ(a.dtype(), d);
    EXPECT_EQ(a.shape(), (std::vector<int64_t>{3, 4}));
    EXPECT_EQ(a.size(), 12);
    std::vector<float> f(12);
    a.read_as_float(0, 12, f.data());
    for (int i = 0; i < 12; ++i) {
      const double want = d == DType::kBool ? (values[i] != 0) : values[i];
      EXPECT_EQ(f[i], want) << dtype_name(d) << " element " << i;
      EXPECT_EQ(a.value(i), want) << dtype_name(d) << " element " << i;
    }
    // Strided: column 1 of the (3, 4) array.
    std::vector<double> col(3);
    a.read_as_double(1, 3, col.data(), 4);
    EXPECT_EQ(col[2], d == DType::kBool ? 1.0 : 120.0) << dtype_name(d);
    EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
  }
}

TEST(Npy, NegativeAndFractionalValues) {
  const std::string path = test_dir("npy_signed") + "/a.npy";
  testing::write_values(path, DType::kInt16, {4}, {-32768, -1, 0, 32767});
  NpyArray a(path);
  EXPECT_EQ(a.value(0), -32768);
  EXPECT_EQ(a.value(1), -1);
  EXPECT_EQ(a.value(3), 32767);
  testing::write_values(path, DType::kFloat64, {2}, {0.1, -1e-300});
  NpyArray b(path);
  EXPECT_EQ(b.value(0), 0.1);
  EXPECT_EQ(b.value(1), -1e-300);
  EXPECT_EQ(b.ndim(), 1);
}

TEST(Npy, ReadsFilesWrittenByNumpy) {
  const std::string dir = test_dir("npy_numpy");
  ASSERT_EQ(run_python("-c \"import numpy as np; d='" + dir +
                       "'; np.save(d+'/h.npy', np.array([[1.5, -2.25], [65504, 6e-8]], "
                       "np.float16)); np.save(d+'/u.npy', np.arange(24, dtype=np.uint16)"
                       ".reshape(2, 3, 4)); np.save(d+'/b.npy', np.array([True, False, True])); "
                       "np.save(d+'/s.npy', np.float64(2.5)); "
                       "np.save(d+'/e.npy', np.zeros((0, 3, 2), np.int16))\""),
            0);
  NpyArray h(dir + "/h.npy");
  EXPECT_EQ(h.dtype(), DType::kFloat16);
  EXPECT_EQ(h.value(0), 1.5);
  EXPECT_EQ(h.value(1), -2.25);
  EXPECT_EQ(h.value(2), 65504.0);
  EXPECT_EQ(static_cast<float>(h.value(3)), std::ldexp(1.0f, -24));  // a float16 subnormal
  NpyArray u(dir + "/u.npy");
  EXPECT_EQ(u.shape(), (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(u.value(23), 23);
  NpyArray b(dir + "/b.npy");
  EXPECT_EQ(b.dtype(), DType::kBool);
  EXPECT_EQ(b.value(1), 0);
  EXPECT_EQ(b.value(2), 1);
  NpyArray s(dir + "/s.npy");
  EXPECT_EQ(s.ndim(), 0);
  EXPECT_EQ(s.size(), 1);
  EXPECT_EQ(s.value(0), 2.5);
  NpyArray e(dir + "/e.npy");
  EXPECT_EQ(e.shape(), (std::vector<int64_t>{0, 3, 2}));
  EXPECT_EQ(e.size(), 0);
}

TEST(Npy, NumpyReadsOurFiles) {
  const std::string dir = test_dir("npy_ours");
  testing::write_values(dir + "/a.npy", DType::kInt32, {2, 2}, {1, -2, 3, 70000});
  testing::write_values(dir + "/z.npy", DType::kUInt8, {0, 5}, {});
  EXPECT_EQ(run_python("-c \"import numpy as np; d='" + dir +
                       "'; a=np.load(d+'/a.npy'); z=np.load(d+'/z.npy'); "
                       "assert a.dtype==np.int32 and a.tolist()==[[1,-2],[3,70000]]; "
                       "assert z.shape==(0,5) and z.dtype==np.uint8\""),
            0);
  // The data starts on a 64-byte boundary.
  EXPECT_EQ(make_npy_header(DType::kInt16, {3, 4}).size() % 64, 0u);
}

TEST(Npy, HeaderVersions2And3) {
  const std::string dir = test_dir("npy_versions");
  std::string data(8, '\0');
  data[0] = 7;
  for (int major : {2, 3}) {
    const std::string path = dir + "/v" + std::to_string(major) + ".npy";
    write_bytes(
        path, npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", data, major));
    NpyArray a(path);
    EXPECT_EQ(a.value(0), 7);
  }
  // Key order and quotes are free; a 1-byte type may say '>' or '='.
  const std::string path = dir + "/order.npy";
  write_bytes(path,
              npy_bytes("{\"shape\": (2,), \"fortran_order\": False, \"descr\": \">u1\"}", "ab"));
  NpyArray a(path);
  EXPECT_EQ(a.dtype(), DType::kUInt8);
  EXPECT_EQ(a.value(1), 'b');
}

TEST(Npy, ErrorsNameTheFileAndTheProblem) {
  const std::string dir = test_dir("npy_errors");
  auto err = [&](const std::string& name, const std::string& bytes) {
    const std::string path = dir + "/" + name;
    write_bytes(path, bytes);
    return message_of([&] { NpyArray a(path); });
  };
  const std::string p = dir + "/";
  EXPECT_EQ(err("magic.npy", "PK\x03\x04 not numpy at all"),
            p + "magic.npy: not a .npy file (bad magic)");
  EXPECT_EQ(err("empty.npy", ""), p + "empty.npy: not a .npy file (bad magic)");
  EXPECT_EQ(
      err("fortran.npy", npy_bytes("{'descr': '<i2', 'fortran_order': True, 'shape': (2, 2), }",
                                   std::string(8, '\0'))),
      p + "fortran.npy: Fortran-order arrays are not supported");
  EXPECT_EQ(err("big.npy", npy_bytes("{'descr': '>i2', 'fortran_order': False, 'shape': (2,), }",
                                     std::string(4, '\0'))),
            p + "big.npy: big-endian dtype '>i2' is not supported");
  EXPECT_EQ(
      err("object.npy", npy_bytes("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", "")),
      p + "object.npy: unsupported dtype '|O' (supported: bool, int8-64, uint8-64, "
          "float16, float32, float64)");
  EXPECT_EQ(err("complex.npy",
                npy_bytes("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", "")),
            p + "complex.npy: unsupported dtype '<c8' (supported: bool, int8-64, uint8-64, "
                "float16, float32, float64)");
  EXPECT_EQ(err("record.npy", npy_bytes("{'descr': [('a', '<i4'), ('b', '<f4')], "
                                        "'fortran_order': False, 'shape': (2,), }",
                                        "")),
            p + "record.npy: unsupported dtype '[('a', '<i4'), ('b', '<f4')]' (supported: bool, "
                "int8-64, uint8-64, float16, float32, float64)");
  EXPECT_EQ(err("short.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, "
                                       "'shape': (2, 3), }",
                                       std::string(20, '\0'))),
            p + "short.npy: truncated: header says 24 bytes of data, file has 20");
  EXPECT_EQ(err("nokey.npy", npy_bytes("{'descr': '<f4', 'shape': (2, 3), }", "")),
            p + "nokey.npy: bad header: missing 'fortran_order'");
  EXPECT_EQ(err("extra.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (), "
                                       "'x': 1}",
                                       "")),
            p + "extra.npy: bad header: unexpected key 'x'");
  EXPECT_EQ(
      err("neg.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", "")),
      p + "neg.npy: bad header: expected a non-negative integer");
  EXPECT_EQ(err("huge.npy", npy_bytes("{'descr': '<f8', 'fortran_order': False, "
                                      "'shape': (4294967296, 4294967296)}",
                                      "")),
            p + "huge.npy: bad header: shape (4294967296, 4294967296) is too large");
  EXPECT_EQ(err("v4.npy", version_4()), p + "v4.npy: unsupported .npy format version 4.0");
  std::string cut = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", "");
  EXPECT_EQ(err("cut.npy", cut.substr(0, 30)),
            p + "cut.npy: bad header: header says 118 bytes, file has 20");
  EXPECT_EQ(message_of([&] { NpyArray a(p + "absent.npy"); }),
            p + "absent.npy: cannot open: No such file or directory");
}

TEST(Npy, ParserWorksOnBuffers) {
  const std::string bytes = make_npy_header(DType::kUInt16, {5, 6, 7});
  const NpyHeader h =
      parse_npy_header(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "buf");
  EXPECT_EQ(h.dtype, DType::kUInt16);
  EXPECT_EQ(h.shape, (std::vector<int64_t>{5, 6, 7}));
  EXPECT_EQ(h.count, 210);
  EXPECT_EQ(h.data_bytes, 420);
  EXPECT_EQ(h.data_offset, bytes.size());
  EXPECT_EQ(message_of([&] {
              parse_npy_header(reinterpret_cast<const uint8_t*>(bytes.data()), 9, "buf");
            }),
            "buf: bad header: truncated before the header length");
}

TEST(NpyWriter, WritesInPlaceAndCommitsAtomically) {
  const std::string dir = test_dir("npy_writer");
  const std::string path = dir + "/out.npy";
  {
    NpyWriter w(path, DType::kFloat32, {2, 3});
    EXPECT_TRUE(std::filesystem::exists(path + ".partial"));
    EXPECT_FALSE(std::filesystem::exists(path));
    auto* f = static_cast<float*>(w.data());
    for (int i = 0; i < 6; ++i) f[i] = 0.5f * static_cast<float>(i);
    w.flush();
    w.commit();
  }
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
  NpyArray a(path);
  EXPECT_EQ(a.value(5), 2.5);
  {
    NpyWriter w(path, DType::kInt8, {4});
    static_cast<int8_t*>(w.data())[0] = -3;
  }  // not committed: the old file stays, the temp file is gone
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
  EXPECT_EQ(NpyArray(path).dtype(), DType::kFloat32);
}

TEST(NpyWriter, UnwritableDirectoryAndFullDisk) {
  const std::string dir = test_dir("npy_writer_errors");
  EXPECT_EQ(message_of([&] { NpyWriter w(dir + "/nope/out.npy", DType::kInt8, {4}); }),
            dir + "/nope/out.npy: cannot create " + dir +
                "/nope/out.npy.partial: No such file or directory");
  write_bytes(dir + "/file", "x");
  EXPECT_EQ(message_of([&] { write_npy(dir + "/file/out.npy", DType::kInt8, {0}, nullptr); }),
            dir + "/file/out.npy: cannot create " + dir + "/file/out.npy.partial: Not a directory");
  // A file size limit stands in for a full disk: the space reservation must fail up front.
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit small = old;
  small.rlim_cur = 1 << 20;
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string msg = message_of([&] {
    NpyWriter w(dir + "/big.npy", DType::kFloat32, {1024, 1024});
  });
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  EXPECT_EQ(msg, dir + "/big.npy: cannot reserve 4194432 bytes: File too large");
  EXPECT_FALSE(std::filesystem::exists(dir + "/big.npy.partial"));
}

TEST(AtomicDirectory, RefusesToOverwriteWithoutForce) {
  const std::string dir = test_dir("atomic_dir");
  const std::string target = dir + "/tile";
  {
    AtomicDirectory d(target, false);
    write_bytes(d.temp_path() + "/a", "1");
    d.commit();
  }
  EXPECT_EQ(read_bytes(target + "/a"), "1");
  EXPECT_EQ(message_of([&] { AtomicDirectory d(target, false); }),
            target + ": already exists (use --force to overwrite)");
  {
    AtomicDirectory d(target, true);
    write_bytes(d.temp_path() + "/b", "2");
  }  // not committed: the old directory is untouched and the temp one is gone
  EXPECT_TRUE(std::filesystem::exists(target + "/a"));
  EXPECT_FALSE(std::filesystem::exists(target + ".partial"));
  {
    AtomicDirectory d(target, true);
    write_bytes(d.temp_path() + "/b", "2");
    d.commit();
  }
  EXPECT_FALSE(std::filesystem::exists(target + "/a"));
  EXPECT_EQ(read_bytes(target + "/b"), "2");
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

// A mapped input truncated under a run used to end the process with a bare SIGBUS. It now ends
// it with one line naming the file, exit code 1 (mapped_files.h).
TEST(NpyArrayDeathTest, InputTruncatedWhileMappedEndsWithOneLineNamingIt) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::string dir = test_dir("npy_sigbus");
  const std::string path = dir + "/bands.npy";
  std::vector<float> values(4 * 4096, 1.0f);
  write_npy(path, DType::kFloat32, {4, 4096}, values.data());
  EXPECT_EXIT(
      {
        NpyArray a(path);
        std::filesystem::resize_file(path, 0);
        float v[1] = {0};
        a.read_as_float(3 * 4096, 1, v);  // a page past the new end of the file
        std::fprintf(stderr, "read %g\n", v[0]);
      },
      ::testing::ExitedWithCode(1),
      "^tessera: " + path + ": the file was truncated while tessera was reading it\n$");
}

}  // namespace
}  // namespace tessera
