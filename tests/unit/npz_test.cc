#include "npz.h"

#include <doctest/doctest.h>

#include <cstring>

#include "error.h"

using namespace pyrmap;

namespace {

std::vector<uint8_t> Write(const std::vector<NpzArray>& arrays) {
  std::vector<uint8_t> out;
  WriteNpz(arrays, [&](const void* p, uint64_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    out.insert(out.end(), b, b + n);
  });
  return out;
}

std::vector<NpzMember> Read(const std::vector<uint8_t>& file) {
  return ReadNpzDirectory(
      [&](void* dst, uint64_t n, uint64_t off) {
        if (off > file.size() || file.size() - off < n) throw Error(ErrorKind::kUsage, "short");
        std::memcpy(dst, file.data() + off, n);
      },
      file.size(), "t.npz");
}

}  // namespace

TEST_CASE("CRC-32 is zip's") {
  CHECK(Crc32(0, "123456789", 9) == 0xCBF43926u);
  CHECK(Crc32(Crc32(0, "1234", 4), "56789", 5) == 0xCBF43926u);
  CHECK(Crc32(0, "", 0) == 0u);
}

TEST_CASE("an archive written is read back: names, geometry and payload positions") {
  const double x[3] = {1.5, -2, 3};
  const int32_t m[6] = {1, 2, 3, 4, 5, 6};
  std::vector<NpzArray> arrays = {{"x", ArrayDesc::Make(Dtype::kFloat64, {3}), reinterpret_cast<const uint8_t*>(x)},
                                  {"größe", ArrayDesc::Make(Dtype::kInt32, {2, 3}, Order::kF),
                                   reinterpret_cast<const uint8_t*>(m)},
                                  {"empty", ArrayDesc::Make(Dtype::kUInt8, {0}), nullptr}};
  const auto file = Write(arrays);
  CHECK(IsZip(file.data(), file.size()));
  const auto members = Read(file);
  REQUIRE(members.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(members[i].name == arrays[i].name);
    CHECK(members[i].desc == arrays[i].desc);
    if (arrays[i].desc.nbytes)
      CHECK(std::memcmp(file.data() + members[i].payload_offset, arrays[i].data, arrays[i].desc.nbytes) == 0);
  }
  CHECK(Read(Write({})).empty());
}

TEST_CASE("the writer refuses duplicated and empty names; the reader refuses what is not an archive") {
  const double x = 1;
  NpzArray a{"a", ArrayDesc::Make(Dtype::kFloat64, {1}), reinterpret_cast<const uint8_t*>(&x)};
  CHECK_THROWS_WITH_AS(Write({a, a}), doctest::Contains("two results are named 'a'"), Error);
  a.name = "";
  CHECK_THROWS_AS(Write({a}), Error);
  a.name = "a";
  auto file = Write({a});
  CHECK_THROWS_WITH_AS(Read(std::vector<uint8_t>(file.begin(), file.end() - 1)),
                       doctest::Contains("no end-of-directory record"), Error);
  CHECK_THROWS_WITH_AS(Read(std::vector<uint8_t>(10, 0)), doctest::Contains("too short"), Error);
  // A member whose method says compressed.
  auto compressed = file;
  compressed[8] = 8;  // local header's method
  size_t cd = 0;
  for (size_t i = 0; i + 4 <= compressed.size(); ++i)
    if (std::memcmp(&compressed[i], "PK\x01\x02", 4) == 0) cd = i;
  REQUIRE(cd > 0);
  compressed[cd + 10] = 8;
  CHECK_THROWS_WITH_AS(Read(compressed), doctest::Contains("member 'a.npy' is compressed"), Error);
}
