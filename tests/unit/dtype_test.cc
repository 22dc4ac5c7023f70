#include "dtype.h"

#include <doctest/doctest.h>

using namespace pyrmap;

TEST_CASE("dtype codes are the protocol's and never change") {
  CHECK(static_cast<uint32_t>(Dtype::kInt32) == 1);
  CHECK(static_cast<uint32_t>(Dtype::kInt64) == 2);
  CHECK(static_cast<uint32_t>(Dtype::kFloat32) == 3);
  CHECK(static_cast<uint32_t>(Dtype::kFloat64) == 4);
  CHECK(static_cast<uint32_t>(Dtype::kUInt8) == 5);
  CHECK(static_cast<uint32_t>(Dtype::kBool) == 6);
  CHECK_FALSE(DtypeFromCode(0));
  CHECK_FALSE(DtypeFromCode(7));
}

TEST_CASE("names parse both ways; R's names are accepted; unknown names are refused") {
  for (uint32_t c = 1; c <= kMaxDtypeCode; ++c) {
    Dtype d = *DtypeFromCode(c);
    CHECK(ParseDtype(DtypeName(d)) == d);
    CHECK(ParseNumpyTypeString(NumpyTypeString(d)) == d);
  }
  CHECK(ParseDtype("raw") == Dtype::kUInt8);
  CHECK(ParseDtype("logical") == Dtype::kBool);
  CHECK_FALSE(ParseDtype("float128"));
  CHECK_FALSE(ParseDtype("Float64"));
  CHECK_FALSE(ParseNumpyTypeString(">f8"));  // big-endian
  CHECK_FALSE(ParseNumpyTypeString("<c16"));
  CHECK(ItemSize(Dtype::kBool) == 1);
  CHECK(ItemSize(Dtype::kInt64) == 8);
}
