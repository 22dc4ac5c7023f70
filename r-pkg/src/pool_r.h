// pool_r.h — the R side of warm Python worker pools (python_pool()).
#pragma once

#ifndef R_NO_REMAP
#define R_NO_REMAP
#endif
#include <Rinternals.h>

#include "pool.h"

namespace pyrmap::r {

// The Pool behind an R pool handle (an external pointer), or nullptr if
// `x` is not one. Throws Error(kUsage) for a pool that was closed.
Pool* PoolOf(SEXP x);

}  // namespace pyrmap::r
