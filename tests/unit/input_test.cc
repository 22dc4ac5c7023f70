#include "input.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "error.h"
#include "npy.h"
#include "segment.h"

using namespace pyrmap;

namespace {

// A private directory for input files, removed with its files at scope exit.
struct TempDir {
  std::string path;
  std::vector<std::string> files;
  TempDir() {
    char tmpl[] = "/tmp/pyrmap-input-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    for (const auto& f : files) unlink(f.c_str());
    rmdir(path.c_str());
  }
  std::string Write(const std::string& name, const std::string& bytes) {
    std::string p = path + "/" + name;
    std::ofstream(p, std::ios::binary) << bytes;
    files.push_back(p);
    return p;
  }
};

template <typename T>
std::string BytesOf(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

template <typename T>
std::string Npy(const std::vector<T>& v, Dtype dtype, std::vector<uint64_t> shape, Order order = Order::kC) {
  return FormatNpyHeader(ArrayDesc::Make(dtype, std::move(shape), order)) + BytesOf(v);
}

// Runs the input's fill into a fresh segment and returns the segment's bytes.
std::string Filled(const Input& in, void (*check)(void*) = nullptr, void* arg = nullptr) {
  std::string name = NewCallPrefix() + "-input-test";
  SegmentDir shm = SegmentDir::Open("/dev/shm");
  SegmentGuard guard(shm);
  guard.Add(name);
  Segment seg = Segment::Create(shm, name, std::max<uint64_t>(in.desc.nbytes, 1));
  REQUIRE(in.fill);
  in.fill(seg, check, arg);
  std::string out(in.desc.nbytes, '\0');
  seg.Read(0, out.data(), out.size());
  return out;
}

std::string ErrorOf(const std::function<void()>& f, ErrorKind kind = ErrorKind::kUsage) {
  try {
    f();
  } catch (const Error& e) {
    CHECK(e.kind() == kind);
    return e.what();
  }
  FAIL("no error");
  return "";
}

InputLayout Layout(std::string format = "auto") {
  InputLayout l;
  l.format = std::move(format);
  return l;
}

}  // namespace

TEST_CASE("a .npy file keeps its dtype, shape and order, and its payload is copied as it is") {
  TempDir d;
  std::vector<double> v = {1, 2, 3, 4, 5, 6};
  std::string p = d.Write("a.npy", Npy(v, Dtype::kFloat64, {3, 2}, Order::kF));
  Input in = FileInput(p, Layout());
  CHECK(in.desc == ArrayDesc::Make(Dtype::kFloat64, {3, 2}, Order::kF));
  CHECK(in.segment.empty());
  CHECK(Filled(in) == BytesOf(v));
}

TEST_CASE("a .npy file converted to another dtype, exactly or not at all") {
  TempDir d;
  std::string p = d.Write("a.npy", Npy(std::vector<int64_t>{1, -2, 300}, Dtype::kInt64, {3}));
  InputLayout l = Layout();
  l.dtype = Dtype::kFloat32;
  CHECK(Filled(FileInput(p, l)) == BytesOf(std::vector<float>{1, -2, 300}));
  l.dtype = Dtype::kUInt8;
  Input in = FileInput(p, l);  // the values are looked at when the fill runs
  CHECK(ErrorOf([&] { Filled(in); }) == p + "[1] = -2 does not fit dtype 'uint8' exactly");
}

TEST_CASE("raw files need a dtype and a whole number of elements; a shape must hold them all") {
  TempDir d;
  std::vector<int32_t> v = {1, 2, 3, 4, 5, 6};
  std::string p = d.Write("a.bin", BytesOf(v));
  CHECK(ErrorOf([&] { FileInput(p, Layout()); }) == p + ": not a .npy file; raw binary input needs a dtype");
  InputLayout l = Layout();
  l.dtype = Dtype::kInt32;
  l.shape = std::vector<uint64_t>{2, 3};
  l.order = Order::kF;
  Input in = FileInput(p, l);
  CHECK(in.desc == ArrayDesc::Make(Dtype::kInt32, {2, 3}, Order::kF));
  CHECK(Filled(in) == BytesOf(v));
  l.shape = std::vector<uint64_t>{4, 2};
  CHECK(ErrorOf([&] { FileInput(p, l); }) == p + ": shape 4,2 holds 8 elements but the input has 6");
  l.shape.reset();
  l.dtype = Dtype::kFloat64;
  std::string odd = d.Write("odd.bin", std::string(20, '\0'));
  CHECK(ErrorOf([&] { FileInput(odd, l); }) == odd + ": 20 bytes is not a whole number of float64 elements");
}

TEST_CASE("a shape is refused for .npy input, which has its own") {
  TempDir d;
  std::string p = d.Write("a.npy", Npy(std::vector<uint8_t>{1, 2}, Dtype::kUInt8, {2}));
  InputLayout l = Layout();
  l.shape = std::vector<uint64_t>{2};
  CHECK(ErrorOf([&] { FileInput(p, l); }) == p + ": a shape applies to raw and text input; a .npy file has its own");
}

TEST_CASE("text is parsed when the input is made, into the dtype asked (float64 by default)") {
  TempDir d;
  std::string p = d.Write("a.txt", "1 2\n3 4.5\n");
  Input in = FileInput(p, Layout("text"));
  CHECK(in.desc == ArrayDesc::Make(Dtype::kFloat64, {4}));
  CHECK(Filled(in) == BytesOf(std::vector<double>{1, 2, 3, 4.5}));
  InputLayout l = Layout("text");
  l.dtype = Dtype::kInt32;
  CHECK(ErrorOf([&] { FileInput(p, l); }).find(p + ": line 2: '4.5'") == 0);
}

TEST_CASE("bytes (stdin): .npy is recognised by its magic, anything else is text unless raw is asked") {
  std::string n = Npy(std::vector<int32_t>{7, 8, 9}, Dtype::kInt32, {3});
  auto bytes = std::make_shared<const std::vector<uint8_t>>(n.begin(), n.end());
  Input in = BytesInput(bytes, Layout(), "stdin");
  CHECK(in.desc == ArrayDesc::Make(Dtype::kInt32, {3}));
  CHECK(Filled(in) == BytesOf(std::vector<int32_t>{7, 8, 9}));

  std::string t = "5 6\n";
  Input text = BytesInput(std::make_shared<const std::vector<uint8_t>>(t.begin(), t.end()), Layout(), "stdin");
  CHECK(Filled(text) == BytesOf(std::vector<double>{5, 6}));

  std::string r = BytesOf(std::vector<int64_t>{-1, 2});
  auto raw = std::make_shared<const std::vector<uint8_t>>(r.begin(), r.end());
  CHECK(ErrorOf([&] { BytesInput(raw, Layout("raw"), "stdin"); }) == "stdin: raw binary input needs a dtype");
  InputLayout l = Layout("raw");
  l.dtype = Dtype::kInt64;
  CHECK(Filled(BytesInput(raw, l, "stdin")) == r);

  // A truncated .npy payload is refused before anything runs.
  auto cut = std::make_shared<const std::vector<uint8_t>>(n.begin(), n.end() - 1);
  CHECK(ErrorOf([&] { BytesInput(cut, Layout(), "stdin"); }) ==
        "stdin: .npy payload holds 11 bytes, its header describes 12");
}

TEST_CASE("a file that cannot be opened is 'not found'; a directory is a usage error") {
  TempDir d;
  CHECK(ErrorOf([&] { FileInput(d.path + "/missing.npy", Layout()); }, ErrorKind::kNotFound)
            .find("cannot open (No such file or directory)") != std::string::npos);
  CHECK(ErrorOf([&] { FileInput(d.path, Layout()); }) == "input '" + d.path + "' is a directory");
}

TEST_CASE("a file that shrinks before the fill is refused, not padded") {
  TempDir d;
  std::vector<int32_t> v(1000, 3);
  const std::string npy = Npy(v, Dtype::kInt32, {1000});
  const uint64_t header = npy.size() - v.size() * 4;
  for (bool convert : {false, true}) {  // sendfile; pread and convert
    CAPTURE(convert);
    std::string p = d.Write("a.npy", npy);
    InputLayout l = Layout();
    if (convert) l.dtype = Dtype::kInt64;
    Input in = FileInput(p, l);
    REQUIRE(truncate(p.c_str(), static_cast<off_t>(header + 100)) == 0);
    CHECK(ErrorOf([&] { Filled(in); }) == "input '" + p + "': ends early");
  }
}

TEST_CASE("memory sources under R's convention: conversion in chunks, NA refused where it cannot be held") {
  // More than one chunk (2^20 elements), with the NA in the second chunk.
  const uint64_t n = (uint64_t{1} << 20) + 10;
  auto data = std::make_shared<std::vector<int32_t>>(n);
  for (uint64_t i = 0; i < n; ++i) (*data)[i] = static_cast<int32_t>(i % 1000);
  InputSource src;
  src.dtype = Dtype::kInt32;
  src.rules = ConvertRules{"data", 1, Missing::kSentinels};
  src.data = reinterpret_cast<const uint8_t*>(data->data());
  src.owner = data;

  // Same dtype: written as it is.
  std::string same = Filled(SourceInput(src, ArrayDesc::Make(Dtype::kInt32, {n})));
  CHECK(same == BytesOf(*data));
  // Converted: every element, across the chunk boundary.
  std::string wide = Filled(SourceInput(src, ArrayDesc::Make(Dtype::kInt64, {n})));
  int64_t last;
  std::memcpy(&last, wide.data() + (n - 1) * 8, 8);
  CHECK(last == static_cast<int64_t>((n - 1) % 1000));

  (*data)[n - 3] = INT32_MIN;  // NA, in the second chunk
  for (Dtype to : {Dtype::kInt32, Dtype::kInt64}) {
    CAPTURE(DtypeName(to));
    Input in = SourceInput(src, ArrayDesc::Make(to, {n}));
    CHECK(ErrorOf([&] { Filled(in); }).find("data[" + std::to_string(n - 2) + "] is NA") == 0);
  }
  // A float dtype keeps it, as NaN.
  std::string f = Filled(SourceInput(src, ArrayDesc::Make(Dtype::kFloat64, {n})));
  uint64_t bits;
  std::memcpy(&bits, f.data() + (n - 3) * 8, 8);
  CHECK(bits == kFloat64Missing);
}

TEST_CASE("logical data (int32 with NA) as bool: 0 and 1 pass, NA and 2 are refused") {
  auto data = std::make_shared<std::vector<int32_t>>(std::vector<int32_t>{1, 0, INT32_MIN});
  InputSource src;
  src.dtype = Dtype::kInt32;
  src.rules = ConvertRules{"data", 1, Missing::kSentinels};
  src.data = reinterpret_cast<const uint8_t*>(data->data());
  src.owner = data;
  CHECK(ErrorOf([&] { Filled(SourceInput(src, ArrayDesc::Make(Dtype::kBool, {3}))); }) ==
        "data[3] is NA (a missing value), which dtype 'bool' cannot represent (float64 and float32 keep it as NaN)");
  (*data)[2] = 2;
  CHECK(ErrorOf([&] { Filled(SourceInput(src, ArrayDesc::Make(Dtype::kBool, {3}))); }) ==
        "data[3] = 2 does not fit dtype 'bool' exactly");
  (*data)[2] = 1;
  CHECK(Filled(SourceInput(src, ArrayDesc::Make(Dtype::kBool, {3}))) == std::string("\1\0\1", 3));
}

TEST_CASE("the fill calls `check` between chunks, and an exception from it stops the fill") {
  const uint64_t n = uint64_t{3} << 20;
  auto data = std::make_shared<std::vector<int32_t>>(n, 1);
  InputSource src;
  src.dtype = Dtype::kInt32;
  src.data = reinterpret_cast<const uint8_t*>(data->data());
  src.owner = data;
  int calls = 0;
  auto count = [](void* arg) { ++*static_cast<int*>(arg); };
  Filled(SourceInput(src, ArrayDesc::Make(Dtype::kFloat64, {n})), count, &calls);
  CHECK(calls >= 3);
  auto stop = [](void*) { throw Error(ErrorKind::kInterrupt, "stop"); };
  CHECK(ErrorOf([&] { Filled(SourceInput(src, ArrayDesc::Make(Dtype::kFloat64, {n})), stop, nullptr); },
                ErrorKind::kInterrupt) == "stop");
}
