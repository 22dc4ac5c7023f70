// registry_r.h — what run_python() needs to know about registered objects.
#pragma once

#ifndef R_NO_REMAP
#define R_NO_REMAP
#endif
#include <Rinternals.h>

#include <cstdint>
#include <string>

namespace pyrmap::r {

// If `x` is an object registered with registerVariables() whose page still
// exists with the same contents as `x`, sets the page's segment directory,
// segment name and the payload's byte offset and returns true.
bool RegisteredPayload(SEXP x, std::string* dir, std::string* segment, uint64_t* offset);

}  // namespace pyrmap::r
