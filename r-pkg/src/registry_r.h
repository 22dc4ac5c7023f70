// registry_r.h — what run_python() needs to know about registered objects.
#pragma once

#ifndef R_NO_REMAP
#define R_NO_REMAP
#endif
#include <Rinternals.h>

#include <cstdint>
#include <string>

#include "dtype.h"
#include "rconvert.h"
#include "registry.h"

namespace pyrmap::r {

// If `x` is an object registered with registerVariables() whose page still
// exists with the same contents as `x`, sets the page's segment directory,
// segment name and the payload's byte offset and returns true.
bool RegisteredPayload(SEXP x, std::string* dir, std::string* segment, uint64_t* offset);

// ---- how R objects are described in pages (and in a call's packed data) ----

// The tag stored with an array: its R kind, and whether the object had a
// dim attribute.
inline constexpr uint32_t kTagKindMask = 0xff;
inline constexpr uint32_t kTagHasDim = 0x100;
uint32_t ArrayTag(RKind kind, bool has_dim);
// The R kind of a tag; throws Error(kProtocol) for a tag that is none.
RKind TagKind(uint32_t tag);
inline bool TagHasDim(uint32_t tag) { return (tag & kTagHasDim) != 0; }
// The R type and the stored dtype of a kind.
SEXPTYPE SexpType(RKind kind);
Dtype StorageDtype(RKind kind);
// The array `x` (a supported vector, matrix or array) is stored as: its
// dtype, shape (column-major) and tag. Throws Error(kUsage) naming `what`
// for an unsupported type or class.
PageArray Describe(SEXP x, const std::string& what);

}  // namespace pyrmap::r
