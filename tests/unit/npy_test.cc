#include "npy.h"

#include <doctest/doctest.h>

#include <cstring>

#include "error.h"

using namespace pyrmap;

namespace {
// An .npy header as numpy 1.24 writes it for np.zeros((3, 2), order="F").
std::string NumpyHeader(const std::string& dict) {
  std::string text = dict;
  size_t total = (10 + text.size() + 1 + 63) / 64 * 64;
  text.append(total - 10 - text.size() - 1, ' ');
  text += '\n';
  uint16_t len = static_cast<uint16_t>(text.size());
  std::string out("\x93NUMPY\x01\x00", 8);
  out.append(reinterpret_cast<const char*>(&len), 2);
  return out + text;
}
}  // namespace

TEST_CASE("headers as numpy writes them are parsed") {
  std::string h = NumpyHeader("{'descr': '<f8', 'fortran_order': True, 'shape': (3, 2), }");
  auto* p = reinterpret_cast<const uint8_t*>(h.data());
  CHECK(IsNpy(p, h.size()));
  CHECK(NpyHeaderLength(p, h.size(), "x") == h.size());
  NpyHeader n = ParseNpyHeader(p, h.size(), "x.npy");
  CHECK(n.desc.dtype == Dtype::kFloat64);
  CHECK(n.desc.order == Order::kF);
  CHECK(n.desc.shape == std::vector<uint64_t>{3, 2});
  CHECK(n.payload_offset == 128);  // numpy 1.24 writes this header in 128 bytes

  std::string s = NumpyHeader("{'descr': '|u1', 'fortran_order': False, 'shape': (7,), }");
  CHECK(ParseNpyHeader(reinterpret_cast<const uint8_t*>(s.data()), s.size(), "y").desc.count == 7);
  std::string scalar = NumpyHeader("{'descr': '<i8', 'fortran_order': False, 'shape': (), }");
  NpyHeader sc = ParseNpyHeader(reinterpret_cast<const uint8_t*>(scalar.data()), scalar.size(), "z");
  CHECK(sc.desc.shape.empty());
  CHECK(sc.desc.count == 1);
}

TEST_CASE("formatted headers parse back and align the payload to 64 bytes") {
  for (auto shape : {std::vector<uint64_t>{}, {5}, {3, 2}, {2, 3, 4, 5, 6}}) {
    for (Order o : {Order::kC, Order::kF}) {
      ArrayDesc d = ArrayDesc::Make(Dtype::kInt32, shape, o);
      std::string h = FormatNpyHeader(d);
      CHECK(h.size() % 64 == 0);
      NpyHeader n = ParseNpyHeader(reinterpret_cast<const uint8_t*>(h.data()), h.size(), "f");
      CHECK(n.desc.shape == shape);
      CHECK(n.desc.dtype == Dtype::kInt32);
      if (shape.size() >= 2) CHECK(n.desc.order == o);
    }
  }
}

TEST_CASE("unsupported or malformed .npy headers are usage errors naming the file") {
  auto bad = [](const std::string& dict, const char* phrase) {
    std::string h = NumpyHeader(dict);
    try {
      ParseNpyHeader(reinterpret_cast<const uint8_t*>(h.data()), h.size(), "in.npy");
      FAIL("accepted " << dict);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kUsage);
      CHECK(std::string(e.what()).find("in.npy") != std::string::npos);
      CHECK_MESSAGE(std::string(e.what()).find(phrase) != std::string::npos, e.what());
    }
  };
  bad("{'descr': '>f8', 'fortran_order': False, 'shape': (3,), }", "'>f8' is not supported");
  bad("{'descr': '<c16', 'fortran_order': False, 'shape': (3,), }", "not supported");
  bad("{'descr': '<f8', 'fortran_order': False, }", "lacks");
  bad("{'descr': '<f8', 'fortran_order': Maybe, 'shape': (3,), }", "True or False");
  bad("{'descr': '<f8', 'fortran_order': False, 'shape': (-3,), }", "non-negative");
  uint8_t junk[16] = {'P', 'K', 3, 4};
  CHECK(NpyHeaderLength(junk, sizeof junk, "j") == 0);
  uint8_t v9[16] = {0x93, 'N', 'U', 'M', 'P', 'Y', 9, 0};
  CHECK_THROWS_AS(NpyHeaderLength(v9, sizeof v9, "v9"), Error);
}
