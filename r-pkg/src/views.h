// views.h — ALTREP vectors whose elements live in a shared-memory mapping.
//
// A view owns (a share of) its mapping through an external pointer with a
// finalizer: the memory stays valid while any R object refers to the view,
// whatever happens to the segment's name, and is unmapped when R collects
// the last such object. Views are immutable from R's side: Duplicate and
// serialization materialise an ordinary vector. C code that writes through
// the data pointer writes into private copy-on-write pages (the mapping is
// MAP_PRIVATE), so it can never change what other processes see.
#pragma once

// R macros such as length() would clash with C++ headers.
#ifndef R_NO_REMAP
#define R_NO_REMAP
#endif
#include <Rinternals.h>

#include <cstdint>
#include <memory>
#include <string>

#include "segment.h"

namespace pyrmap::r {

// Where a view's elements are.
struct ViewSource {
  std::shared_ptr<Mapping> mapping;  // keeps the memory mapped
  const uint8_t* data = nullptr;     // first element
  R_xlen_t length = 0;
  // The named segment holding the elements (its directory and name) and
  // their byte offset in it, so that the view can be handed to Python
  // without a copy. Empty when the segment has no name any more (a
  // run_python result).
  std::string dir;
  std::string segment;
  uint64_t offset = 0;
  uint64_t generation = 0;  // registry page generation (0: not a page)
};

// Registers the ALTREP classes; called once from R_init_pyrmap.
void InitViewClasses(DllInfo* dll);

// A view of `src` as an R vector of `type` (REALSXP, INTSXP, LGLSXP or
// RAWSXP; the element size must match). Length 0 gives an ordinary empty
// vector. R's errors come as RUnwind (rlist.h): call it under Entry.
SEXP MakeView(SEXPTYPE type, ViewSource src);

// The source of `x` if it is one of our views that has not been
// materialised, else nullptr.
const ViewSource* ViewOf(SEXP x);

// ---- memory that follows the program ----------------------------------------
//
// A view is a small R object holding a large mapping, so R's collector sees
// no pressure from it and would leave unreachable views (and the shared
// memory they pin) alone. Views therefore count the bytes of the mappings
// they hold, once per mapping (column views share their matrix's mapping),
// and MakeView collects (R_gc(), which runs the finalizers of unreachable
// views) before it maps more when the bytes of the mappings first seen since
// the last such collection, the new one included, exceed CollectBound().

// Bytes of the distinct mappings that live views hold.
uint64_t MappedViewBytes();

// The bound: this process's anonymous resident memory (R's heap, mostly;
// RssAnon), at least kMinCollectBytes, and at most a quarter of the memory
// the system has available (MemAvailable).
uint64_t CollectBound();
inline constexpr uint64_t kMinCollectBytes = uint64_t{64} << 20;

// Collects now if `bytes` more would exceed the bound (as MakeView does);
// returns whether it collected.
bool CollectIfDue(uint64_t bytes);

}  // namespace pyrmap::r
