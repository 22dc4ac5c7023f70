#include "convert.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>

#include "error.h"

using namespace pyrmap;

namespace {

template <typename To, typename From>
To Convert1(Dtype from, From v, Dtype to) {
  To out{};
  ConvertElements(from, &v, to, &out, 1, 0, "test");
  return out;
}

template <typename From>
std::string Refusal(Dtype from, From v, Dtype to) {
  uint8_t out[8];
  try {
    ConvertElements(from, &v, to, out, 1, 41, "data");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kUsage);
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("values that fit convert exactly") {
  CHECK(Convert1<int32_t>(Dtype::kFloat64, 3.0, Dtype::kInt32) == 3);
  CHECK(Convert1<uint8_t>(Dtype::kInt64, int64_t{255}, Dtype::kUInt8) == 255);
  CHECK(Convert1<double>(Dtype::kInt64, int64_t{1} << 53, Dtype::kFloat64) == 9007199254740992.0);
  CHECK(Convert1<float>(Dtype::kFloat64, 0.1, Dtype::kFloat32) == 0.1f);  // rounding is asked for
  CHECK(std::isnan(Convert1<float>(Dtype::kFloat64, std::nan(""), Dtype::kFloat32)));
  CHECK(Convert1<uint8_t>(Dtype::kInt32, int32_t{1}, Dtype::kBool) == 1);
  CHECK(Convert1<int64_t>(Dtype::kFloat64, -9223372036854775808.0, Dtype::kInt64) == INT64_MIN);
}

TEST_CASE("values that do not fit are refused with the value and position") {
  std::string m = Refusal(Dtype::kFloat64, 300.0, Dtype::kUInt8);
  CHECK(m.find("300") != std::string::npos);
  CHECK(m.find("position 41") != std::string::npos);
  CHECK(m.find("uint8") != std::string::npos);
  CHECK(!Refusal(Dtype::kFloat64, 3e9, Dtype::kInt32).empty());
  CHECK(!Refusal(Dtype::kFloat64, 1.5, Dtype::kInt64).empty());
  CHECK(!Refusal(Dtype::kFloat64, std::nan(""), Dtype::kInt32).empty());
  CHECK(!Refusal(Dtype::kFloat64, 9223372036854775808.0, Dtype::kInt64).empty());
  CHECK(!Refusal(Dtype::kInt64, (int64_t{1} << 53) + 1, Dtype::kFloat64).empty());
  CHECK(!Refusal(Dtype::kInt64, INT64_MAX, Dtype::kFloat64).empty());
  CHECK(!Refusal(Dtype::kFloat64, 1e39, Dtype::kFloat32).empty());
  CHECK(!Refusal(Dtype::kInt32, int32_t{2}, Dtype::kBool).empty());
  CHECK(!Refusal(Dtype::kInt32, int32_t{16777217}, Dtype::kFloat32).empty());
}

TEST_CASE("text numbers parse into the dtype, with errors naming line and token") {
  std::istringstream in("1 2.5 -3e2\n  nan inf\n-0\n");
  uint64_t n = 0;
  auto bytes = ParseTextNumbers(in, Dtype::kFloat64, "stdin", &n);
  REQUIRE(n == 6);
  double v[6];
  std::memcpy(v, bytes.data(), sizeof v);
  CHECK(v[1] == 2.5);
  CHECK(v[2] == -300);
  CHECK(std::isnan(v[3]));
  CHECK(std::isinf(v[4]));
  CHECK(std::signbit(v[5]));

  std::istringstream bad("1 2\n3 x4\n");
  try {
    ParseTextNumbers(bad, Dtype::kFloat64, "stdin", &n);
    FAIL("accepted x4");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) == "stdin: line 2: 'x4' is not a number");
  }
  std::istringstream big("1 256");
  CHECK_THROWS_AS(ParseTextNumbers(big, Dtype::kUInt8, "stdin", &n), Error);
  std::istringstream empty("  \n\n");
  CHECK(ParseTextNumbers(empty, Dtype::kInt32, "stdin", &n).empty());
  CHECK(n == 0);
}

TEST_CASE("text output: shortest round-trip floats, rows of a matrix on lines, F order honoured") {
  double col_major[6] = {1, 2, 3, 0.1, -0.0, 1e300};  // [[1, .1], [2, -0], [3, 1e300]]
  ArrayDesc d = ArrayDesc::Make(Dtype::kFloat64, {3, 2}, Order::kF);
  std::ostringstream out;
  FormatTextArray(d, reinterpret_cast<const uint8_t*>(col_major), out);
  CHECK(out.str() == "1.0 0.1\n2.0 -0.0\n3.0 1e+300\n");

  int32_t cube[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  std::ostringstream out3;
  FormatTextArray(ArrayDesc::Make(Dtype::kInt32, {2, 2, 2}), reinterpret_cast<const uint8_t*>(cube), out3);
  CHECK(out3.str() == "0 1\n2 3\n\n4 5\n6 7\n");

  uint8_t flags[3] = {1, 0, 1};
  std::ostringstream outb;
  FormatTextArray(ArrayDesc::Make(Dtype::kBool, {3}), flags, outb);
  CHECK(outb.str() == "True\nFalse\nTrue\n");
}
