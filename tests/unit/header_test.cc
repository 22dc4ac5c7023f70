// header_test.cc — the exchange header against the golden files that the
// Python tests read too (tests/golden/expected.json describes each file).
#include "header.h"

#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>

#include "error.h"
#include "golden.h"

using namespace pyrmap;
using nlohmann::json;

namespace {

void CheckDesc(const ArrayDesc& d, const json& j, const std::string& what) {
  INFO(what);
  CHECK(std::string(DtypeName(d.dtype)) == j["dtype"].get<std::string>());
  CHECK((d.order == Order::kF ? "F" : "C") == j["order"].get<std::string>());
  CHECK(d.shape == j["shape"].get<std::vector<uint64_t>>());
  CHECK(d.count == j["count"].get<uint64_t>());
  CHECK(d.offset == j["offset"].get<uint64_t>());
  CHECK(d.nbytes == j["nbytes"].get<uint64_t>());
}

}  // namespace

TEST_CASE("every golden header decodes to its described fields, or is rejected with its message") {
  json expected = test::ReadGoldenJson("expected.json");
  REQUIRE(expected.size() >= 20);
  for (auto& [file, want] : expected.items()) {
    CAPTURE(file);
    std::vector<uint8_t> bytes = test::ReadGolden(file);
    if (want.contains("error")) {
      std::string phrase = want["error"];
      try {
        DecodeHeader(bytes.data(), bytes.size(), file);
        FAIL("decoded a header that must be rejected: " << file);
      } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::kProtocol);
        CHECK_MESSAGE(std::string(e.what()).find(phrase) != std::string::npos,
                      "message '" << e.what() << "' lacks '" << phrase << "'");
        CHECK(std::string(e.what()).find(file) != std::string::npos);
      }
      continue;
    }
    ExchangeHeader h = DecodeHeader(bytes.data(), bytes.size(), file);
    CHECK(h.version_major == want["version_major"].get<int>());
    CHECK(h.version_minor == want["version_minor"].get<int>());
    CHECK(static_cast<int>(h.state) == want["state"].get<int>());
    CHECK(h.flags == want["flags"].get<uint32_t>());
    CHECK(h.owner_pid == want["owner_pid"].get<int64_t>());
    CHECK(h.worker_pid == want["worker_pid"].get<int64_t>());
    CHECK(h.result_location == want["result_location"].get<uint32_t>());
    CHECK(h.input_kind == want["input_kind"].get<uint32_t>());
    CHECK(h.result_kind == want["result_kind"].get<uint32_t>());
    CheckDesc(h.input, want["input"], "input");
    CheckDesc(h.result, want["result"], "result");
    CHECK(h.error_type == want["error_type"].get<std::string>());
    CHECK(h.error_text == want["error_text"].get<std::string>());
    CHECK(h.error_truncated == want["error_truncated"].get<bool>());
    // The encoder writes exactly the golden bytes for the same fields.
    std::vector<uint8_t> again(kHeaderSize);
    EncodeHeader(h, again.data(), again.size());
    REQUIRE(bytes.size() >= kHeaderSize);
    CHECK(std::equal(again.begin(), again.end(), bytes.begin()));
  }
}

TEST_CASE("a long traceback keeps its end and is marked as cut") {
  ExchangeHeader h;
  h.state = State::kError;
  h.error_type = std::string(100, 'T');
  h.error_text = std::string(5000, 'a') + "ValueError: the end";
  std::vector<uint8_t> buf(kHeaderSize);
  EncodeHeader(h, buf.data(), buf.size());
  ExchangeHeader d = DecodeHeader(buf.data(), buf.size(), "test");
  CHECK(d.error_truncated);
  CHECK(d.error_text.size() == kErrorTextSize);
  CHECK(d.error_text.substr(d.error_text.size() - 19) == "ValueError: the end");
  CHECK(d.error_type == std::string(kErrorTypeSize, 'T'));
}

TEST_CASE("cut texts never split a UTF-8 character") {
  ExchangeHeader h;
  h.state = State::kError;
  // "é" is two bytes; put one across each cut point.
  h.error_type = std::string(63, 'T') + "\xc3\xa9";
  h.error_text = "\xc3\xa9" + std::string(kErrorTextSize - 1, 'x');
  std::vector<uint8_t> buf(kHeaderSize);
  EncodeHeader(h, buf.data(), buf.size());
  ExchangeHeader d = DecodeHeader(buf.data(), buf.size(), "utf8");
  CHECK(d.error_type == std::string(63, 'T'));
  CHECK(d.error_text == std::string(kErrorTextSize - 1, 'x'));
  CHECK(d.error_truncated);
}

TEST_CASE("a descriptor with more dimensions than the table holds is refused") {
  ArrayDesc d;
  d.dtype = Dtype::kUInt8;
  d.shape.assign(kMaxDims + 1, 1);
  uint8_t buf[kArrayDescSize];
  CHECK_THROWS_AS(EncodeArrayDesc(d, buf), Error);
}

TEST_CASE("a header round-trips through encode and decode") {
  ExchangeHeader h;
  h.state = State::kResultReady;
  h.flags = kFlagResultOrderF;
  h.owner_pid = 123456;
  h.worker_pid = 654321;
  h.input = ArrayDesc::Make(Dtype::kInt64, {2, 3, 4, 5}, Order::kF, 4096);
  h.result = ArrayDesc::Make(Dtype::kBool, {}, Order::kC);
  std::vector<uint8_t> buf(kHeaderSize + 100);
  EncodeHeader(h, buf.data(), buf.size());
  ExchangeHeader d = DecodeHeader(buf.data(), buf.size(), "seg");
  CHECK(d.input == h.input);
  CHECK(d.result == h.result);
  CHECK(d.result.count == 1);
  CHECK(d.owner_pid == 123456);
  CHECK(d.input.Describe() == "int64[2, 3, 4, 5] (column-major)");
}

TEST_CASE("payloads that do not fit their segment are rejected") {
  ArrayDesc d = ArrayDesc::Make(Dtype::kFloat64, {10}, Order::kC, 64);
  CHECK_NOTHROW(CheckPayloadFits(d, 64 + 80, "s"));
  CHECK_THROWS_AS(CheckPayloadFits(d, 64 + 79, "s"), Error);
  d.offset = UINT64_MAX - 10;  // offset + nbytes overflows
  CHECK_THROWS_AS(CheckPayloadFits(d, UINT64_MAX, "s"), Error);
}

TEST_CASE("shapes whose size overflows are refused when made") {
  CHECK_THROWS_AS(ArrayDesc::Make(Dtype::kFloat64, {uint64_t{1} << 62, 4}), Error);
  CHECK_THROWS_AS(ArrayDesc::Make(Dtype::kFloat64, std::vector<uint64_t>(17, 1)), Error);
  CHECK(ArrayDesc::Make(Dtype::kFloat64, {0, 5}).nbytes == 0);
}

TEST_CASE("random and mutated bytes never read out of bounds") {
  // Run under the sanitizer build (make test-asan) this proves bounds; here
  // it proves decode either throws a protocol error or returns.
  std::mt19937_64 rng(42);
  ExchangeHeader h;
  h.input = ArrayDesc::Make(Dtype::kFloat32, {3, 3});
  std::vector<uint8_t> good(kHeaderSize);
  EncodeHeader(h, good.data(), good.size());
  for (int i = 0; i < 20000; ++i) {
    size_t size = rng() % (kHeaderSize + 64);
    std::vector<uint8_t> buf(good.begin(), good.begin() + std::min(size, kHeaderSize));
    buf.resize(size);
    for (int k = 0; k < 4 && size > 0; ++k) buf[rng() % size] = static_cast<uint8_t>(rng());
    // Exact-size heap buffer so an overread is caught by ASan.
    std::unique_ptr<uint8_t[]> exact(new uint8_t[size ? size : 1]);
    std::copy(buf.begin(), buf.end(), exact.get());
    try {
      DecodeHeader(exact.get(), size, "fuzz");
    } catch (const Error& e) {
      REQUIRE(e.kind() == ErrorKind::kProtocol);
    }
  }
}
