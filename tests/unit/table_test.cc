// table_test.cc — table blocks against the golden files the Python tests read
// too (tests/golden/tables.json), and the builder's layout.
#include "table.h"

#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "bytes.h"
#include "error.h"
#include "golden.h"

using namespace pyrmap;
using nlohmann::json;

namespace {

const char* KindName(EntryKind k) {
  static const char* names[] = {"", "array", "string", "category", "datetime", "list", "frame", "null"};
  return names[static_cast<uint32_t>(k)];
}

const char* RoleName(EntryRole r) {
  static const char* names[] = {"element", "names", "levels"};
  return names[static_cast<uint32_t>(r)];
}

int64_t Index(uint32_t i) { return i == kNoIndex ? -1 : static_cast<int64_t>(i); }

}  // namespace

TEST_CASE("every golden table decodes to its described structure, or is rejected with its message") {
  json expected = test::ReadGoldenJson("tables.json");
  REQUIRE(expected.size() >= 10);
  for (auto& [file, want] : expected.items()) {
    CAPTURE(file);
    std::vector<uint8_t> bytes = test::ReadGolden(file);
    // The reference block lies at offset 4096 of an input of 4160 bytes.
    const std::optional<uint64_t> input =
        file == "table_input_ref.bin" ? std::optional<uint64_t>(4160) : std::nullopt;
    if (want.contains("error")) {
      const std::string phrase = want["error"];
      try {
        DecodeTable(bytes.data(), bytes.size(), file);
        FAIL("decoded a table that must be rejected: " << file);
      } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::kProtocol);
        CHECK_MESSAGE(std::string(e.what()).find(phrase) != std::string::npos,
                      "message '" << e.what() << "' lacks '" << phrase << "'");
        CHECK(std::string(e.what()).find(file) != std::string::npos);
      }
      continue;
    }
    Table t = DecodeTable(bytes.data(), bytes.size(), file, input);
    CHECK(t.size == want["size"].get<uint64_t>());
    REQUIRE(t.entries.size() == want["entries"].size());
    for (size_t i = 0; i < t.entries.size(); ++i) {
      const TableEntry& e = t.entries[i];
      const json& w = want["entries"][i];
      CAPTURE(i);
      CHECK(KindName(e.kind) == w["kind"].get<std::string>());
      CHECK(RoleName(e.role) == w["role"].get<std::string>());
      CHECK(Index(e.parent) == w["parent"].get<int64_t>());
      CHECK(e.flags == w["flags"].get<uint32_t>());
      CHECK(e.length == w["length"].get<uint64_t>());
      CHECK(Index(e.buffer) == w["buffer"].get<int64_t>());
      CHECK(Index(e.mask) == w["mask"].get<int64_t>());
      CHECK(e.name == w["name"].get<std::string>());
      CHECK(e.tz == w["tz"].get<std::string>());
      CHECK(e.unit == w["unit"].get<uint32_t>());
      CHECK(e.children == w["children"].get<std::vector<uint32_t>>());
    }
    REQUIRE(t.buffers.size() == want["buffers"].size());
    for (size_t i = 0; i < t.buffers.size(); ++i) {
      const json& w = want["buffers"][i];
      CHECK(std::string(DtypeName(t.buffers[i].dtype)) == w["dtype"].get<std::string>());
      CHECK(t.buffers[i].shape == w["shape"].get<std::vector<uint64_t>>());
      CHECK(t.buffers[i].offset == w["offset"].get<uint64_t>());
      CHECK(t.buffers[i].nbytes == w["nbytes"].get<uint64_t>());
      CHECK(t.locations[i] == w["location"].get<uint32_t>());
    }
    // The encoder writes the same directory for the decoded table.
    std::vector<uint8_t> dir = EncodeTableDirectory(t);
    REQUIRE(dir.size() <= bytes.size());
    CHECK(std::memcmp(dir.data(), bytes.data(), dir.size()) == 0);
  }
}

TEST_CASE("a built table lays its buffers out after the directory, 64-aligned, and decodes back") {
  Table t;
  TableEntry root;
  root.kind = EntryKind::kList;
  root.flags = kEntryNamed;
  root.length = 2;
  AddEntry(t, root);
  TableEntry a;
  a.kind = EntryKind::kArray;
  a.parent = 0;
  a.name = "X";
  a.length = 6;
  a.buffer = AddBuffer(t, Dtype::kFloat64, {3, 2}, Order::kF);
  AddEntry(t, a);
  TableEntry b = a;
  b.name = "größe";
  b.length = 5;
  b.buffer = AddBuffer(t, Dtype::kUInt8, {5});
  AddEntry(t, b);
  LayoutTable(t);
  CHECK(t.directory_size % 64 == 0);
  CHECK(t.buffers[0].offset == t.directory_size);
  CHECK(t.buffers[1].offset == t.directory_size + 64);
  CHECK(t.size == t.buffers[1].offset + 64);
  std::vector<uint8_t> block(t.size, 0);
  std::vector<uint8_t> dir = EncodeTableDirectory(t);
  std::memcpy(block.data(), dir.data(), dir.size());
  Table back = DecodeTable(block.data(), block.size(), "test");
  REQUIRE(back.entries.size() == 3);
  CHECK(back.entries[2].name == "größe");
  CHECK(back.entries[0].children == std::vector<uint32_t>{1, 2});
  CHECK(EntryPath(back, 2) == "element 'größe'");
  // Cut short, the same block is refused, naming what does not fit.
  CHECK_THROWS_WITH_AS(DecodeTable(block.data(), block.size() - 64, "test"),
                       doctest::Contains("exceeds the"), Error);
}

TEST_CASE("entries must come after their parent, and a table has one root") {
  Table t;
  TableEntry child;
  child.kind = EntryKind::kNull;
  child.parent = 0;
  CHECK_THROWS_AS(AddEntry(t, child), Error);
  TableEntry root;
  root.kind = EntryKind::kList;
  AddEntry(t, root);
  CHECK_THROWS_AS(AddEntry(t, root), Error);
  child.parent = 5;
  CHECK_THROWS_AS(AddEntry(t, child), Error);
}

TEST_CASE("the header refuses a table described as anything but bytes, and an unknown kind") {
  ExchangeHeader h;
  h.input = ArrayDesc::Make(Dtype::kUInt8, {128});
  h.input_kind = kKindTable;
  std::vector<uint8_t> buf(kHeaderSize);
  EncodeHeader(h, buf.data(), buf.size());
  CHECK(DecodeHeader(buf.data(), buf.size(), "m").input_kind == kKindTable);
  h.input = ArrayDesc::Make(Dtype::kInt32, {32});
  EncodeHeader(h, buf.data(), buf.size());
  CHECK_THROWS_WITH_AS(DecodeHeader(buf.data(), buf.size(), "m"),
                       doctest::Contains("is a table block described as int32[32]"), Error);
  // A 1.x header's reserved bytes are not kinds: they are ignored.
  h.input = ArrayDesc::Make(Dtype::kInt32, {32});
  h.input_kind = kKindArray;
  h.version_major = 1;
  h.version_minor = 1;
  EncodeHeader(h, buf.data(), buf.size());
  Store<uint32_t>(buf.data() + off::kInputKind, 7);
  CHECK(DecodeHeader(buf.data(), buf.size(), "m").input_kind == kKindArray);
}
