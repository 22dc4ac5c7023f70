// rconvert.h — what R data enter a run as: R's storage mapped to dtypes,
// and R's convention for missing values in the core's terms.
//
// The conversion itself is the core's (input.h, convert.h): R hands over a
// pointer to its elements (RSource), their storage dtype, and
// Missing::kSentinels, under which NA_integer_ (INT32_MIN), integer64's NA
// (INT64_MIN) and NA_real_ are missing. A missing value is NA (NaN with R's
// payload) in float64 and float32 and an error in every other dtype; a
// value the dtype cannot hold (300 as uint8, 3e9 as int32, 1.5 as an
// integer type, 2^53 + 1 as float64) is an error naming the value and its
// 1-based position ("data[2] = 300"); nothing is wrapped or rounded
// silently, except the rounding to the nearest float32 that asking for
// float32 means.
#pragma once

// R macros such as length() would clash with C++ headers.
#ifndef R_NO_REMAP
#define R_NO_REMAP
#endif
#include <Rinternals.h>

#include <cstdint>
#include <string>
#include <vector>

#include "convert.h"
#include "dtype.h"
#include "input.h"

namespace pyrmap::r {

// How R stores the elements of a supported vector.
enum class RKind { kDouble, kInteger, kLogical, kRaw, kInteger64 };

// The kind of `x` as one array; throws Error(kUsage) naming its class or
// type for anything else (complex, ..., classed vectors other than matrix,
// array and integer64: difftime, ts, ..., which would otherwise arrive as
// bare numbers). Data frames, lists, factors, Date, POSIXct and character
// vectors travel as tables (rtable.h) and never come here.
RKind ClassifyInput(SEXP x);

// The dtype a vector gets when none is asked: double -> float64, integer ->
// int32, logical -> bool, raw -> uint8, integer64 -> int64.
Dtype DefaultDtype(RKind kind);

// The dtype of R's own bytes: float64 (double), int32 (integer, logical),
// uint8 (raw), int64 (integer64).
Dtype SourceDtype(RKind kind);

// Bytes per element as R stores them.
size_t RItemSize(RKind kind);

// The elements of `x` (of kind `kind`) as the core reads them: R's memory,
// its storage dtype, named "data" from 1, with R's missing values. `x` must
// stay protected while the source is used.
InputSource RSource(SEXP x, RKind kind);

// The elements of a double, integer, logical or raw vector (materialising
// an ALTREP vector that has no data pointer yet); nullptr for other types.
const void* RData(SEXP x);

// The shape of an R vector or array: its dims (column-major), or its length.
std::vector<uint64_t> ShapeOf(SEXP x);

// The float32 bit pattern that stands for R's NA.
inline constexpr uint32_t kFloat32NA = kFloat32Missing;

}  // namespace pyrmap::r
