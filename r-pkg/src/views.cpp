#include "views.h"

#include "rlist.h"

#include <R.h>
#include <R_ext/Altrep.h>
#include <R_ext/Rdynload.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <string>
#include <unordered_map>

namespace pyrmap::r {

namespace {

R_altrep_class_t g_real, g_integer, g_logical, g_raw;

ViewSource* Src(SEXP x) {
  return static_cast<ViewSource*>(R_ExternalPtrAddr(R_altrep_data1(x)));
}

// ---- accounting of mapped bytes ----

struct MappingUse {
  size_t views = 0;    // live views holding the mapping
  uint64_t bytes = 0;  // its size
};

std::unordered_map<const Mapping*, MappingUse>& Uses() {
  static std::unordered_map<const Mapping*, MappingUse> m;
  return m;
}
uint64_t g_mapped_bytes = 0;     // sum of Uses()' bytes
uint64_t g_new_since_gc = 0;     // bytes of mappings first seen since the last collection

// The value in kB of field `key` (e.g. "MemAvailable:") of a /proc file, in
// bytes; 0 if it cannot be read.
uint64_t ProcBytes(const char* path, const char* key) {
  std::ifstream in(path);
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(in, line)) {
    if (line.compare(0, n, key) == 0) return std::strtoull(line.c_str() + n, nullptr, 10) * 1024;
  }
  return 0;
}

// Called when a view holding `m` is made; collects first when due.
void Hold(const Mapping* m) {
  if (!m) return;
  auto it = Uses().find(m);
  if (it != Uses().end()) {
    ++it->second.views;
    return;
  }
  // A new mapping. The collection runs finalizers (Release below), so the
  // map is looked up again afterwards.
  CollectIfDue(m->size());
  g_new_since_gc += m->size();
  MappingUse& u = Uses()[m];
  u.views = 1;
  u.bytes = m->size();
  g_mapped_bytes += u.bytes;
}

void Release(const Mapping* m) {
  if (!m) return;
  auto it = Uses().find(m);
  if (it == Uses().end()) return;
  if (--it->second.views == 0) {
    g_mapped_bytes -= it->second.bytes;
    Uses().erase(it);
  }
}

void Finalize(SEXP ptr) {
  auto* src = static_cast<ViewSource*>(R_ExternalPtrAddr(ptr));
  if (src) Release(src->mapping.get());
  delete src;
  R_ClearExternalPtr(ptr);
}

size_t ElementSize(SEXPTYPE type) {
  switch (type) {
    case REALSXP: return sizeof(double);
    case INTSXP:
    case LGLSXP: return sizeof(int);
    case RAWSXP: return 1;
    default: return 0;
  }
}

R_xlen_t Length(SEXP x) { return Src(x)->length; }

// The pointer goes straight into the mapping, for reads and writes alike:
// R's REAL()/INTEGER() always ask for a writable pointer, and materialising
// there would copy on every read. Writes land in private pages.
void* Dataptr(SEXP x, Rboolean) { return const_cast<uint8_t*>(Src(x)->data); }
const void* DataptrOrNull(SEXP x) { return Src(x)->data; }

SEXP Duplicate(SEXP x, Rboolean) {
  const ViewSource* s = Src(x);
  SEXP ans = PROTECT(Rf_allocVector(TYPEOF(x), s->length));
  std::memcpy(DATAPTR(ans), s->data, static_cast<size_t>(s->length) * ElementSize(TYPEOF(x)));
  UNPROTECT(1);
  return ans;
}

Rboolean Inspect(SEXP x, int, int, int, void (*)(SEXP, int, int, int)) {
  const ViewSource* s = Src(x);
  Rprintf(" pyrmap view of %lld elements in %s\n", static_cast<long long>(s->length),
          s->segment.empty() ? "an unnamed result segment" : s->segment.c_str());
  return TRUE;
}

template <typename T>
T Elt(SEXP x, R_xlen_t i) {
  T v;
  std::memcpy(&v, Src(x)->data + static_cast<size_t>(i) * sizeof(T), sizeof(T));
  return v;
}

template <typename T>
R_xlen_t GetRegion(SEXP x, R_xlen_t i, R_xlen_t n, T* buf) {
  const ViewSource* s = Src(x);
  R_xlen_t k = std::max<R_xlen_t>(0, std::min(n, s->length - i));
  std::memcpy(buf, s->data + static_cast<size_t>(i) * sizeof(T), static_cast<size_t>(k) * sizeof(T));
  return k;
}

void SetCommon(R_altrep_class_t c) {
  R_set_altrep_Length_method(c, Length);
  R_set_altrep_Duplicate_method(c, Duplicate);
  R_set_altrep_Inspect_method(c, Inspect);
  R_set_altvec_Dataptr_method(c, Dataptr);
  R_set_altvec_Dataptr_or_null_method(c, DataptrOrNull);
}

}  // namespace

void InitViewClasses(DllInfo* dll) {
  g_real = R_make_altreal_class("pyrmap_real_view", "pyrmap", dll);
  SetCommon(g_real);
  R_set_altreal_Elt_method(g_real, Elt<double>);
  R_set_altreal_Get_region_method(g_real, GetRegion<double>);

  g_integer = R_make_altinteger_class("pyrmap_integer_view", "pyrmap", dll);
  SetCommon(g_integer);
  R_set_altinteger_Elt_method(g_integer, Elt<int>);
  R_set_altinteger_Get_region_method(g_integer, GetRegion<int>);

  g_logical = R_make_altlogical_class("pyrmap_logical_view", "pyrmap", dll);
  SetCommon(g_logical);
  R_set_altlogical_Elt_method(g_logical, Elt<int>);
  R_set_altlogical_Get_region_method(g_logical, GetRegion<int>);

  g_raw = R_make_altraw_class("pyrmap_raw_view", "pyrmap", dll);
  SetCommon(g_raw);
  R_set_altraw_Elt_method(g_raw, Elt<Rbyte>);
  R_set_altraw_Get_region_method(g_raw, GetRegion<Rbyte>);
}

SEXP MakeView(SEXPTYPE type, ViewSource src) {
  if (src.length == 0 || src.data == nullptr) {
    SEXP empty = R_NilValue;
    RCall([&] { empty = Rf_allocVector(type, 0); });
    return empty;
  }
  R_altrep_class_t cls;
  switch (type) {
    case REALSXP: cls = g_real; break;
    case INTSXP: cls = g_integer; break;
    case LGLSXP: cls = g_logical; break;
    case RAWSXP: cls = g_raw; break;
    default: throw Error(ErrorKind::kProtocol, std::string("no view class for R type ") + Rf_type2char(type));
  }
  // The R objects first, the C++ source last: an allocation error leaves no
  // ViewSource (and no count) behind; the finalizer copes with an empty pointer.
  SEXP ptr = R_NilValue, ans = R_NilValue;
  RCall([&] {
    ptr = PROTECT(R_MakeExternalPtr(nullptr, R_NilValue, R_NilValue));
    R_RegisterCFinalizerEx(ptr, Finalize, TRUE);
    ans = R_new_altrep(cls, ptr, R_NilValue);
    UNPROTECT(1);
  });
  PROTECT(ans);  // holds ptr too
  auto* heap = new ViewSource(std::move(src));
  R_SetExternalPtrAddr(ptr, heap);
  Hold(heap->mapping.get());  // may collect (the view is protected)
  UNPROTECT(1);
  return ans;
}

uint64_t MappedViewBytes() { return g_mapped_bytes; }

uint64_t CollectBound() {
  uint64_t bound = std::max(kMinCollectBytes, ProcBytes("/proc/self/status", "RssAnon:"));
  const uint64_t available = ProcBytes("/proc/meminfo", "MemAvailable:");
  if (available > 0) bound = std::min(bound, available / 4);
  return bound;
}

bool CollectIfDue(uint64_t bytes) {
  if (g_new_since_gc + bytes <= CollectBound()) return false;
  g_new_since_gc = 0;
  R_gc();
  return true;
}

const ViewSource* ViewOf(SEXP x) {
  if (!ALTREP(x)) return nullptr;
  if (!(R_altrep_inherits(x, g_real) || R_altrep_inherits(x, g_integer) ||
        R_altrep_inherits(x, g_logical) || R_altrep_inherits(x, g_raw)))
    return nullptr;
  return Src(x);
}

}  // namespace pyrmap::r
