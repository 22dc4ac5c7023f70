// rconvert.h — R vectors to exchange dtypes and back, exactly.
//
// R's missing values have no counterpart in most dtypes. The rules: NA of an
// integer or logical vector is INT32_MIN in int32 and INT64_MIN in int64 (as
// bit64's integer64 does); NA_real_ keeps R's NaN payload in float64 and is
// NaN with payload 1954 in float32 (read back as NA); any NA is an error for
// uint8 and bool. A value the dtype cannot hold (300 as uint8, 3e9 as int32,
// 1.5 as an integer type, 2^53 + 1 as float64) is an error naming the value
// and its 1-based position; nothing is ever wrapped or rounded silently,
// except the rounding to the nearest float32 that asking for float32 means.
#pragma once

// R macros such as length() would clash with C++ headers.
#ifndef R_NO_REMAP
#define R_NO_REMAP
#endif
#include <Rinternals.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dtype.h"

namespace pyrmap::r {

// How R stores the elements of a supported vector.
enum class RKind { kDouble, kInteger, kLogical, kRaw, kInteger64 };

// The kind of `x`; throws Error(kUsage) naming its type or class for
// anything else (character, list, factor, data.frame, complex, ...).
RKind ClassifyInput(SEXP x);

// The dtype a vector gets when none is asked: double -> float64, integer ->
// int32, logical -> bool, raw -> uint8, integer64 -> int64.
Dtype DefaultDtype(RKind kind);

// True if R's bytes are already the dtype's bytes (no conversion needed).
bool SameBytes(RKind kind, Dtype dtype);

// Bytes per element as R stores them.
size_t RItemSize(RKind kind);

// Converts `count` elements starting at R index `first` (0-based) of R data
// `src` to `dst` in dtype `to`. Throws Error(kUsage) for values that do not
// fit.
void ConvertFromR(RKind from, const void* src, Dtype to, void* dst, uint64_t count, uint64_t first);

// The elements of a double, integer, logical or raw vector (materialising
// an ALTREP vector that has no data pointer yet); nullptr for other types.
const void* RData(SEXP x);

// The shape of an R vector or array: its dims (column-major), or its length.
std::vector<uint64_t> ShapeOf(SEXP x);

// The float32 bit pattern that stands for R's NA.
inline constexpr uint32_t kFloat32NA = 0x7FC007A2u;

}  // namespace pyrmap::r
