// convert.h — exact conversions between dtypes, and numbers as text.
//
// "Exact" means no silent loss: a value that the target type cannot hold
// (300 as uint8, 1.5 or NaN as an integer, 2^53 + 1 as float64, 1e39 as
// float32, 2 as bool) is an Error(kUsage) that names the value and its
// position. Rounding a float64 to the nearest float32 is allowed (that is
// what asking for float32 means); overflowing it is not.
#pragma once

#include <cstdint>
#include <istream>
#include <ostream>
#include <string>
#include <vector>

#include "header.h"

namespace pyrmap {

// Converts `count` elements from `src` (of type `from`) to `dst` (of type
// `to`). `first_index` is added to positions in messages; `where` names the
// data ("input.npy").
void ConvertElements(Dtype from, const void* src, Dtype to, void* dst, uint64_t count,
                     uint64_t first_index, const std::string& where);

// Parses whitespace-separated numbers from `in` as `dtype` into raw little-
// endian bytes. Accepts integers, decimals, exponents, nan/inf (floats) and
// true/false/True/False (bool). Errors name `where`, the line and the token.
std::vector<uint8_t> ParseTextNumbers(std::istream& in, Dtype dtype, const std::string& where,
                                      uint64_t* count);

// Writes an array as text: a scalar or 1-D array one value per line, a 2-D
// array one row per line (values separated by a space), higher dimensions as
// 2-D blocks of the last two axes separated by blank lines. Floats use the
// shortest representation that reads back to the same value, always with a
// '.' or an exponent ("2.0", "1e+300"); bools are True/False.
void FormatTextArray(const ArrayDesc& desc, const uint8_t* data, std::ostream& out);

}  // namespace pyrmap
