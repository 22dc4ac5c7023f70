// convert.h — exact conversions between dtypes, missing values, and numbers
// as text.
//
// "Exact" means no silent loss: a value that the target type cannot hold
// (300 as uint8, 1.5 or NaN as an integer, 2^53 + 1 as float64, 1e39 as
// float32, 2 as bool) is an Error(kUsage) that names the data, the element's
// position and the value. Rounding a float64 to the nearest float32 is
// allowed (that is what asking for float32 means); overflowing it is not.
#pragma once

#include <cstdint>
#include <istream>
#include <ostream>
#include <string>
#include <vector>

#include "header.h"

namespace pyrmap {

// Which bit patterns of the data stand for a missing value.
enum class Missing {
  // Every bit pattern is a value (numpy's view: .npy, raw and text input).
  kNone,
  // Sentinels mark missing values (R's convention): INT32_MIN in int32 data,
  // INT64_MIN in int64 data, and in float64 data the NaN whose low 32 bits
  // are 1954 (R's NA_real_). A missing value becomes that NaN in float64 and
  // kFloat32Missing in float32; the integer types, uint8 and bool cannot
  // represent it, so it is an error there (until a masked form exists). The
  // integer targets' sentinels are not values either: -2^31 asked as int32
  // is refused, since a reader of the same convention would take it for
  // missing.
  kSentinels,
};

// The float32 bit pattern of a missing value under Missing::kSentinels (a
// quiet NaN with payload 1954, as R's float64 NA).
inline constexpr uint32_t kFloat32Missing = 0x7FC007A2u;
// The float64 bit pattern of R's NA_real_.
inline constexpr uint64_t kFloat64Missing = 0x7FF00000000007A2ull;

// How a conversion names its data in messages and which values are missing.
struct ConvertRules {
  // Messages name element i as "<name>[<index_base + i>]": "in.npy[2]" (the
  // command, numpy's flat index from 0) or "data[3]" (R, from 1).
  std::string name = "data";
  uint64_t index_base = 0;
  Missing missing = Missing::kNone;
};

// Converts `count` elements from `src` (of type `from`) to `dst` (of type
// `to`). `first` is the position of src[0] in the whole data (for messages).
// Throws Error(kUsage) at the first element that does not fit or is a
// missing value `to` cannot represent.
void ConvertElements(Dtype from, const void* src, Dtype to, void* dst, uint64_t count,
                     uint64_t first, const ConvertRules& rules);

// True if `to` can represent a missing value (float32, float64).
bool HoldsMissing(Dtype to);

// Throws Error(kUsage) naming the first of `count` elements of `data` (of
// type `dtype`, starting at position `first`) that is missing under `rules`
// when `to` cannot represent a missing value; for data handed over without
// a conversion. Does nothing under Missing::kNone.
void RefuseMissing(Dtype dtype, const void* data, uint64_t count, uint64_t first, Dtype to,
                   const ConvertRules& rules);

// Parses numbers separated by whitespace or by commas (one comma between two
// numbers, with or without spaces: "1,2, 3 4") from `in` as `dtype` into
// raw little-endian bytes. Accepts integers, decimals, exponents, nan/inf
// (floats) and true/false/True/False (bool). An empty field (",1", "1,,2",
// "1,") is an error. Errors name `where`, the line and the token.
std::vector<uint8_t> ParseTextNumbers(std::istream& in, Dtype dtype, const std::string& where,
                                      uint64_t* count);

// Writes an array as text: a scalar or 1-D array one value per line, a 2-D
// array one row per line (values separated by a space), higher dimensions as
// 2-D blocks of the last two axes separated by blank lines. Floats use the
// shortest representation that reads back to the same value, always with a
// '.' or an exponent ("2.0", "1e+300"); bools are True/False.
void FormatTextArray(const ArrayDesc& desc, const uint8_t* data, std::ostream& out);

}  // namespace pyrmap
