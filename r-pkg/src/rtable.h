// rtable.h — R data as tables (table.h) and tables as R data: data frames,
// named lists, factors, Date, POSIXct, character, integer64, and NA.
//
// R -> table (the input of a call): a data.frame becomes a frame entry, a
// list a list entry (named when it has names), a factor a category (codes
// 0-based, narrowed to 1, 2 or 4 bytes so that pandas shares them), a Date
// a datetime in days, a POSIXct a datetime in nanoseconds with its time
// zone, a character vector strings (the one copy: R keeps its strings in
// its own cache), integer64 an int64 array; an NA in an integer, logical,
// integer64 or character vector becomes a mask. double, integer and raw
// elements are written as R holds them; logical ones as bool. Everything
// that cannot be exact (a Date with a fraction of a day, a POSIXct with a
// fraction of a nanosecond or beyond datetime64[ns], a level that is NA, a
// matrix or list column, an unsupported class) is an Error(kUsage) naming
// the column or element and the type.
//
// table -> R (a result): the inverse. A column (or element) the script
// returned unchanged is the R vector it came from (TableOrigins): no view,
// no copy, and nothing keeps the input's block. Other numeric columns
// (float64, int32, uint8, and int64 as integer64) are zero-copy views of
// the result's block (or of the input's, for a buffer returned unchanged
// under a new meaning); the rest are converted copies.
#pragma once

#include <vector>

#ifndef R_NO_REMAP
#define R_NO_REMAP
#endif
#include <Rinternals.h>

#include "input.h"
#include "run.h"
#include "table.h"

namespace pyrmap::r {

// Whether `x` travels as a table: a list, a data.frame, a factor, a Date,
// a POSIXct, a character vector, or (when no dtype is asked) an integer or
// logical vector holding NA. Everything else goes as one array.
bool NeedsTable(SEXP x, bool dtype_given);

// Which R vector each entry of a table input was made from (R_NilValue for
// lists, frames, names and levels), and the input's laid-out table. The
// vectors belong to the caller's input, which must stay protected.
struct TableOrigins {
  Table table;
  std::vector<SEXP> objects;  // per entry of `table`
};

// The input carrying `x` as a table. Strings are gathered (in UTF-8) now;
// the other elements are read from R's memory by the fill, so `x` must stay
// protected while the input is used. `origins` (optional) receives where
// each entry came from. R errors come as RUnwind (rlist.h).
Input TableInputOf(SEXP x, TableOrigins* origins = nullptr);

// The R object for table result `r`. `bit64_available`: integer64 results
// are possible (else an int64 column beyond 2^53 is an error). `origins`:
// those of the call's table input (when the result may refer to it). R
// errors come as RUnwind.
SEXP TableToR(const Result& r, bool bit64_available, const TableOrigins* origins = nullptr);

}  // namespace pyrmap::r
