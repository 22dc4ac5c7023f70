#include "convert.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <vector>

#include "error.h"

using namespace pyrmap;

namespace {

const ConvertRules kNumpy{"in.npy", 0, Missing::kNone};
const ConvertRules kR{"data", 1, Missing::kSentinels};

template <typename To, typename From>
To Convert1(Dtype from, From v, Dtype to, const ConvertRules& rules = kNumpy) {
  To out{};
  ConvertElements(from, &v, to, &out, 1, 0, rules);
  return out;
}

template <typename From>
std::string Refusal(Dtype from, From v, Dtype to, const ConvertRules& rules = kNumpy) {
  uint8_t out[8];
  try {
    ConvertElements(from, &v, to, out, 1, 41, rules);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kUsage);
    return e.what();
  }
  return "";
}

template <typename T>
uint64_t Bits(T v) {
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof v);
  return b;
}

double RNa() {
  double d;
  std::memcpy(&d, &kFloat64Missing, 8);
  return d;
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
  CHECK(Refusal(Dtype::kFloat64, 300.0, Dtype::kUInt8) == "in.npy[41] = 300 does not fit dtype 'uint8' exactly");
  CHECK(Refusal(Dtype::kFloat64, std::nan(""), Dtype::kInt32) ==
        "in.npy[41] = NaN does not fit dtype 'int32' exactly");
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

TEST_CASE("without sentinels every bit pattern is a value") {
  CHECK(Convert1<int64_t>(Dtype::kInt32, INT32_MIN, Dtype::kInt64) == INT32_MIN);
  CHECK(Convert1<int32_t>(Dtype::kFloat64, -2147483648.0, Dtype::kInt32) == INT32_MIN);
  CHECK(Convert1<int32_t>(Dtype::kInt32, INT32_MIN, Dtype::kInt32) == INT32_MIN);
  CHECK(Convert1<double>(Dtype::kInt64, INT64_MIN, Dtype::kFloat64) == -9223372036854775808.0);
  CHECK(Convert1<float>(Dtype::kFloat64, RNa(), Dtype::kFloat32) != Convert1<float>(Dtype::kFloat64, RNa(), Dtype::kFloat32));
  CHECK(Bits(Convert1<float>(Dtype::kFloat64, RNa(), Dtype::kFloat32)) != kFloat32Missing);
  int32_t many[3] = {1, INT32_MIN, 3};
  RefuseMissing(Dtype::kInt32, many, 3, 0, Dtype::kInt32, kNumpy);  // nothing is missing
}

TEST_CASE("with sentinels, a missing value is NaN in float types and an error elsewhere") {
  // Integer NA becomes R's NA_real_ in float64 and its float32 twin.
  CHECK(Bits(Convert1<double>(Dtype::kInt32, INT32_MIN, Dtype::kFloat64, kR)) == kFloat64Missing);
  CHECK(Bits(Convert1<double>(Dtype::kInt64, INT64_MIN, Dtype::kFloat64, kR)) == kFloat64Missing);
  CHECK(Bits(Convert1<float>(Dtype::kInt32, INT32_MIN, Dtype::kFloat32, kR)) == kFloat32Missing);
  CHECK(Bits(Convert1<float>(Dtype::kFloat64, RNa(), Dtype::kFloat32, kR)) == kFloat32Missing);
  CHECK(Bits(Convert1<double>(Dtype::kFloat64, RNa(), Dtype::kFloat64, kR)) == kFloat64Missing);
  // A NaN that is not NA stays a NaN that is not NA.
  CHECK(Bits(Convert1<float>(Dtype::kFloat64, std::nan(""), Dtype::kFloat32, kR)) != kFloat32Missing);
  // The types without a missing value refuse it, naming the element (from 1) and the dtype.
  const std::string why = "(float64 and float32 keep it as NaN)";
  CHECK(Refusal(Dtype::kInt32, INT32_MIN, Dtype::kInt32, kR) ==
        "data[42] is NA (a missing value), which dtype 'int32' cannot represent " + why);
  CHECK(Refusal(Dtype::kInt32, INT32_MIN, Dtype::kInt64, kR) ==
        "data[42] is NA (a missing value), which dtype 'int64' cannot represent " + why);
  CHECK(Refusal(Dtype::kInt64, INT64_MIN, Dtype::kInt64, kR).find("data[42] is NA") == 0);
  CHECK(Refusal(Dtype::kInt64, INT64_MIN, Dtype::kInt32, kR).find("data[42] is NA") == 0);
  CHECK(Refusal(Dtype::kFloat64, RNa(), Dtype::kInt32, kR).find("data[42] is NA") == 0);
  CHECK(Refusal(Dtype::kFloat64, RNa(), Dtype::kInt64, kR).find("data[42] is NA") == 0);
  CHECK(Refusal(Dtype::kInt32, INT32_MIN, Dtype::kBool, kR).find("'bool'") != std::string::npos);
  CHECK(Refusal(Dtype::kInt32, INT32_MIN, Dtype::kUInt8, kR).find("'uint8'") != std::string::npos);
  // A plain NaN is not missing: it is a value an integer type cannot hold.
  CHECK(Refusal(Dtype::kFloat64, std::nan(""), Dtype::kInt32, kR) ==
        "data[42] = NaN does not fit dtype 'int32' exactly");
}

TEST_CASE("with sentinels, an integer target's sentinel is not a value") {
  CHECK(Refusal(Dtype::kFloat64, -2147483648.0, Dtype::kInt32, kR) ==
        "data[42] = -2147483648 does not fit dtype 'int32' exactly (that value marks a missing value)");
  CHECK(Refusal(Dtype::kFloat64, -9223372036854775808.0, Dtype::kInt64, kR).find("marks a missing value") !=
        std::string::npos);
  CHECK(Convert1<int32_t>(Dtype::kFloat64, -2147483647.0, Dtype::kInt32, kR) == -2147483647);
  CHECK(Convert1<int64_t>(Dtype::kInt32, -2147483647, Dtype::kInt64, kR) == -2147483647);
  CHECK(Convert1<int32_t>(Dtype::kInt64, int64_t{7}, Dtype::kInt32, kR) == 7);
}

TEST_CASE("RefuseMissing finds the first missing element anywhere, for data handed over as it is") {
  std::vector<int32_t> v(10000, 5);
  RefuseMissing(Dtype::kInt32, v.data(), v.size(), 0, Dtype::kInt32, kR);  // none
  v[9000] = INT32_MIN;
  v[9999] = INT32_MIN;
  try {
    RefuseMissing(Dtype::kInt32, v.data(), v.size(), 100, Dtype::kInt32, kR);
    FAIL("accepted NA");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kUsage);
    CHECK(std::string(e.what()).find("data[9101] is NA") == 0);  // 1-based, after `first`
  }
  // Float targets hold it; without sentinels nothing is missing.
  RefuseMissing(Dtype::kInt32, v.data(), v.size(), 0, Dtype::kFloat64, kR);
  RefuseMissing(Dtype::kInt32, v.data(), v.size(), 0, Dtype::kInt32, kNumpy);
  std::vector<int64_t> w(5, 1);
  w[4] = INT64_MIN;
  CHECK_THROWS_AS(RefuseMissing(Dtype::kInt64, w.data(), w.size(), 0, Dtype::kInt64, kR), Error);
  std::vector<double> d(3, 1.0);
  d[1] = RNa();
  CHECK_THROWS_AS(RefuseMissing(Dtype::kFloat64, d.data(), d.size(), 0, Dtype::kInt32, kR), Error);
  d[1] = std::nan("");  // not NA: refused by the conversion instead, as a value
  RefuseMissing(Dtype::kFloat64, d.data(), d.size(), 0, Dtype::kInt32, kR);
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
  std::istringstream big("1\n2 256");
  try {
    ParseTextNumbers(big, Dtype::kUInt8, "stdin", &n);
    FAIL("accepted 256 as uint8");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) == "stdin: line 2: '256' does not fit dtype 'uint8' exactly");
  }
  std::istringstream empty("  \n\n");
  CHECK(ParseTextNumbers(empty, Dtype::kInt32, "stdin", &n).empty());
  CHECK(n == 0);
}

TEST_CASE("text numbers may be separated by commas, as CSV writes them") {
  std::istringstream in("1,2, 3 ,4\n5 6,7\n8\n");
  uint64_t n = 0;
  auto bytes = ParseTextNumbers(in, Dtype::kInt32, "stdin", &n);
  REQUIRE(n == 8);
  int32_t v[8];
  std::memcpy(v, bytes.data(), sizeof v);
  for (int i = 0; i < 8; ++i) CHECK(v[i] == i + 1);

  // An empty field is an error naming the line, never a silent 0 or a
  // shifted column.
  for (const char* text : {"1,,2\n", "1 2\n,3\n", "1,2,\n3\n", "1, ,2\n"}) {
    std::istringstream bad(text);
    CAPTURE(text);
    try {
      ParseTextNumbers(bad, Dtype::kFloat64, "stdin", &n);
      FAIL("accepted an empty field");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kUsage);
      CHECK(std::string(e.what()).find("an empty field") != std::string::npos);
    }
  }
  std::istringstream second_line("1 2\n,3\n");
  try {
    ParseTextNumbers(second_line, Dtype::kFloat64, "data.txt", &n);
  } catch (const Error& e) {
    CHECK(std::string(e.what()).rfind("data.txt: line 2: ", 0) == 0);
  }
  // A comma inside a token is not a decimal comma.
  std::istringstream decimal("1,5\n");
  ParseTextNumbers(decimal, Dtype::kFloat64, "stdin", &n);
  CHECK(n == 2);
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
