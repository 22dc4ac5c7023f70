#include "packed.h"

#include <doctest/doctest.h>

#include <cstring>
#include <numeric>
#include <vector>

#include "error.h"

using namespace pyrmap;

namespace {

struct Written {
  Segment seg;
  Mapping map;
  PackedTable table;
};

// Writes `w` at offset `at` of a fresh unnamed segment and reads it back.
Written WriteAndRead(const PackedWriter& w, uint64_t at = 4096) {
  Segment seg = Segment::CreateUnnamed("/dev/shm", at + w.Size(), "packed test");
  w.Write(seg, at);
  Mapping map = seg.Map(MapMode::kReadOnly, at);
  PackedTable t(map.data(), at, map.size(), at, "object 1");
  return Written{std::move(seg), std::move(map), t};
}

}  // namespace

TEST_CASE("arrays of every dtype and shape come back as they went in") {
  std::vector<double> d = {1.5, -2.5, 3.25};
  std::vector<int32_t> m(6);
  std::iota(m.begin(), m.end(), 10);
  std::vector<uint8_t> raw = {7, 8, 9, 10, 11};
  std::vector<double> big(20000);  // 160 kB: written straight from memory, 64-aligned
  std::iota(big.begin(), big.end(), 0.0);
  std::vector<int64_t> mid(600, -3);  // 4800 bytes: 64-aligned, staged
  PackedWriter w(5);
  w.Add({11, Dtype::kFloat64, {}, d.size(), d.data()});
  w.Add({12, Dtype::kInt32, {2, 3}, m.size(), m.data()});
  w.Add({13, Dtype::kUInt8, {}, raw.size(), raw.data()});
  w.Add({14, Dtype::kFloat64, {}, 0, nullptr});
  w.Add({15, Dtype::kFloat64, {100, 200}, big.size(), big.data()});
  w.Add({16, Dtype::kInt64, {}, mid.size(), mid.data()});
  Written r = WriteAndRead(w);
  REQUIRE(r.table.size() == 6);
  CHECK(r.table.flags() == 5);
  PackedEntry e = r.table.at(0);
  CHECK(e.tag == 11);
  CHECK(e.dtype == Dtype::kFloat64);
  CHECK(e.ndim == 0);
  CHECK(e.count == 3);
  CHECK(std::memcmp(e.data, d.data(), 24) == 0);
  e = r.table.at(1);
  CHECK(e.ndim == 2);
  CHECK(e.shape[0] == 2);
  CHECK(e.shape[1] == 3);
  CHECK(std::memcmp(e.data, m.data(), 24) == 0);
  CHECK(std::memcmp(r.table.at(2).data, raw.data(), 5) == 0);
  CHECK(r.table.at(3).count == 0);
  CHECK(r.table.at(3).data == nullptr);
  e = r.table.at(4);
  CHECK(e.offset % 64 == 0);
  CHECK(e.shape[1] == 200);
  CHECK(std::memcmp(e.data, big.data(), big.size() * 8) == 0);
  e = r.table.at(5);
  CHECK(e.offset % 64 == 0);
  CHECK(std::memcmp(e.data, mid.data(), mid.size() * 8) == 0);
  CHECK_THROWS_AS(r.table.at(6), Error);
}

TEST_CASE("20000 small elements take 32 bytes of table and 8 of payload each") {
  std::vector<double> values(20000);
  std::iota(values.begin(), values.end(), 1.0);
  PackedWriter w;
  for (double& v : values) w.Add({1, Dtype::kFloat64, {}, 1, &v});
  CHECK(w.Size() <= 20000 * (32 + 8) + 128);
  Written r = WriteAndRead(w);
  REQUIRE(r.table.size() == 20000);
  for (uint64_t i = 0; i < 20000; i += 997) {
    double v;
    std::memcpy(&v, r.table.at(i).data, 8);
    CHECK(v == values[i]);
  }
}

TEST_CASE("a shape that does not match the count, or too many dims, cannot be packed") {
  double x[6] = {};
  PackedWriter w;
  CHECK_THROWS_AS(w.Add({0, Dtype::kFloat64, {2, 2}, 6, x}), Error);
  CHECK_THROWS_AS(w.Add({0, Dtype::kFloat64, std::vector<uint64_t>(17, 1), 1, x}), Error);
}

TEST_CASE("a damaged table is refused with the entry and the reason, never read out of bounds") {
  double x[4] = {1, 2, 3, 4};
  PackedWriter w;
  w.Add({0, Dtype::kFloat64, {2, 2}, 4, x});
  w.Add({0, Dtype::kFloat64, {}, 4, x});
  const uint64_t at = 0;
  Segment seg = Segment::CreateUnnamed("/dev/shm", w.Size(), "packed damage");
  w.Write(seg, at);
  std::vector<uint8_t> bytes(w.Size());
  seg.Read(0, bytes.data(), bytes.size());
  auto refused = [&](std::vector<uint8_t> b, uint64_t entry, const char* why) {
    PackedTable t(b.data(), 0, b.size(), 0, "object 2");
    try {
      t.at(entry);
      FAIL("accepted: " << why);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kProtocol);
      CHECK(std::string(e.what()).find("object 2") != std::string::npos);
      CHECK(std::string(e.what()).find(why) != std::string::npos);
    }
  };
  auto put64 = [](std::vector<uint8_t>& b, size_t off, uint64_t v) { std::memcpy(b.data() + off, &v, 8); };
  std::vector<uint8_t> b = bytes;
  b[16 + 4] = 99;  // dtype code of entry 1
  refused(b, 0, "unknown dtype code 99");
  b = bytes;
  put64(b, 16 + 32 + 8, 5);  // entry 2's count: 5 doubles from its offset run past the end
  refused(b, 1, "outside the mapped data");
  b = bytes;
  put64(b, 16 + 8, 5);  // entry 1's count no longer matches its 2 x 2 shape
  refused(b, 0, "does not match its count");
  b = bytes;
  put64(b, 16 + 16, 1u << 30);  // entry 1's payload far away
  refused(b, 0, "outside the mapped data");
  b = bytes;
  put64(b, 0, 1u << 28);  // a count the table cannot hold
  CHECK_THROWS_AS(PackedTable(b.data(), 0, b.size(), 0, "object 2"), Error);
  CHECK_THROWS_AS(PackedTable(bytes.data(), 0, bytes.size(), bytes.size() - 4, "object 2"), Error);
}
