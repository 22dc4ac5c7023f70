// registry_r.cpp — R objects in and out of registry pages (the memshare API's
// C++ half), and the pieces of views that workers hand to FUN.
//
// Plain R API, no Rcpp (see rlist.h): cluster workers call these and need
// not load Rcpp.
#ifndef R_NO_REMAP
#define R_NO_REMAP
#endif
#include <Rinternals.h>
#include <R_ext/Altrep.h>
#include <R_ext/Rdynload.h>
#include <Rversion.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "error.h"
#include "inventory.h"
#include "rconvert.h"
#include "registry.h"
#include "registry_r.h"
#include "rlist.h"
#include "views.h"

using namespace pyrmap;
using namespace pyrmap::r;

namespace pyrmap::r {

uint32_t ArrayTag(RKind k, bool has_dim) { return (static_cast<uint32_t>(k) + 1) | (has_dim ? kTagHasDim : 0u); }

// Set on every column of a data.frame page (a list page whose arrays are
// the frame's columns, with automatic row names): retrieveViews() gives a
// data.frame of views back. Readers that do not know the bit see a list.
constexpr uint32_t kTagFrameColumn = 0x200;

// Whether page `p` holds a data.frame (every array a column of one).
bool IsFramePage(const PageInfo& info) {
  if (!info.is_list || info.arrays.empty()) return false;
  for (const PageArray& a : info.arrays)
    if (!(a.tag & kTagFrameColumn)) return false;
  return true;
}

RKind TagKind(uint32_t tag) {
  uint32_t k = (tag & kTagKindMask) - 1;
  if (k > static_cast<uint32_t>(RKind::kInteger64))
    throw Error(ErrorKind::kProtocol, fmt::format("page array tag {} is not an R type", tag));
  return static_cast<RKind>(k);
}

SEXPTYPE SexpType(RKind k) {
  switch (k) {
    case RKind::kDouble:
    case RKind::kInteger64: return REALSXP;
    case RKind::kInteger: return INTSXP;
    case RKind::kLogical: return LGLSXP;
    case RKind::kRaw: return RAWSXP;
  }
  return REALSXP;
}

Dtype StorageDtype(RKind k) {
  switch (k) {
    case RKind::kDouble: return Dtype::kFloat64;
    case RKind::kInteger64: return Dtype::kInt64;
    case RKind::kInteger:
    case RKind::kLogical: return Dtype::kInt32;
    case RKind::kRaw: return Dtype::kUInt8;
  }
  return Dtype::kFloat64;
}

PageArray Describe(SEXP x, const std::string& what) {
  RKind kind;
  try {
    kind = ClassifyInput(x);
  } catch (const Error& e) {
    throw Error(ErrorKind::kUsage, fmt::format("{}: {}", what, e.what()));
  }
  SEXP cls = Rf_getAttrib(x, R_ClassSymbol);
  if (cls != R_NilValue && kind != RKind::kInteger64)
    throw Error(ErrorKind::kUsage,
                fmt::format("{}: objects of class '{}' are not supported: give a plain numeric, "
                            "integer, logical or raw vector, matrix or array",
                            what, CHAR(STRING_ELT(cls, 0))));
  PageArray a;
  a.desc = ArrayDesc::Make(StorageDtype(kind), ShapeOf(x), Order::kF);
  a.tag = ArrayTag(kind, Rf_getAttrib(x, R_DimSymbol) != R_NilValue);
  return a;
}

}  // namespace pyrmap::r

namespace {

// An R object (a view, or an ordinary empty vector) for array i of a page.
// R errors come as RUnwind (run under Entry).
// Throws unless every array of `p` can be an R object (checked before any
// R object is made, so that the protection stack stays balanced).
void CheckArrays(const OpenedPage& p) {
  for (const PageArray& a : p.info.arrays) {
    TagKind(a.tag);
    if (TagHasDim(a.tag))
      for (uint64_t d : a.desc.shape)
        if (d > static_cast<uint64_t>(INT_MAX))
          throw Error(ErrorKind::kUsage,
                      fmt::format("variable '{}' of namespace '{}' is an array of shape {}, which has "
                                  "a dimension beyond R's limit of {}",
                                  p.info.var, p.info.ns, a.desc.Describe(), INT_MAX));
  }
}

// (After CheckArrays.)
SEXP ArrayToR(const OpenedPage& p, size_t i) {
  const PageArray& a = p.info.arrays[i];
  RKind kind = TagKind(a.tag);
  ViewSource src;
  src.mapping = p.mapping;
  src.data = p.data(i);
  src.length = static_cast<R_xlen_t>(a.desc.count);
  src.dir = p.info.dir;
  src.segment = p.info.segment;
  src.offset = a.desc.offset;
  src.generation = p.info.generation;
  SEXP ans = PROTECT(MakeView(SexpType(kind), std::move(src)));
  RCall([&] {
    if (TagHasDim(a.tag)) {
      SEXP dim = PROTECT(Rf_allocVector(INTSXP, static_cast<R_xlen_t>(a.desc.shape.size())));
      for (size_t k = 0; k < a.desc.shape.size(); ++k) INTEGER(dim)[k] = static_cast<int>(a.desc.shape[k]);
      Rf_setAttrib(ans, R_DimSymbol, dim);
      UNPROTECT(1);
    }
    if (kind == RKind::kInteger64) Rf_setAttrib(ans, R_ClassSymbol, Rf_mkString("integer64"));
  });
  UNPROTECT(1);
  return ans;
}

#if R_VERSION >= R_Version(4, 3, 0)
// On R >= 4.3 a list page is an ALTLIST: its elements are the views, made
// once when the list is made (data2 holds them), so [[i]] costs nothing.
R_altrep_class_t g_list_class;

R_xlen_t ListLength(SEXP x) { return XLENGTH(R_altrep_data2(x)); }
SEXP ListElt(SEXP x, R_xlen_t i) { return VECTOR_ELT(R_altrep_data2(x), i); }
// Replacing an element changes this list only (the views are this
// session's objects; the page is never written).
void ListSetElt(SEXP x, R_xlen_t i, SEXP v) { SET_VECTOR_ELT(R_altrep_data2(x), i, v); }
SEXP ListDuplicate(SEXP x, Rboolean deep) {
  return deep ? Rf_duplicate(R_altrep_data2(x)) : Rf_shallow_duplicate(R_altrep_data2(x));
}
void* ListDataptr(SEXP x, Rboolean) { return DATAPTR(R_altrep_data2(x)); }
Rboolean ListInspect(SEXP x, int, int, int, void (*)(SEXP, int, int, int)) {
  Rprintf(" pyrmap list view of %lld elements\n", static_cast<long long>(XLENGTH(R_altrep_data2(x))));
  return TRUE;
}
#endif

SEXP ListToR(const OpenedPage& p) {
  const R_xlen_t n = static_cast<R_xlen_t>(p.info.arrays.size());
  SEXP lst = R_NilValue;
  RCall([&] { lst = Rf_allocVector(VECSXP, n); });
  PROTECT(lst);
  bool named = false;
  for (R_xlen_t i = 0; i < n; ++i) {
    SET_VECTOR_ELT(lst, i, ArrayToR(p, static_cast<size_t>(i)));
    named = named || !p.info.arrays[i].name.empty();
  }
  const bool frame = IsFramePage(p.info);
  const uint64_t rows = frame ? p.info.arrays[0].desc.count : 0;
  for (const PageArray& a : p.info.arrays)
    if (frame && (a.desc.count != rows || a.desc.shape.size() != 1 || rows > static_cast<uint64_t>(INT_MAX)))
      throw Error(ErrorKind::kProtocol,
                  fmt::format("variable '{}' of namespace '{}' is a data.frame page whose columns are "
                              "not all one vector of the same length (at most {})",
                              p.info.var, p.info.ns, INT_MAX));
  SEXP ans = R_NilValue;
  RCall([&] {
    SEXP names = R_NilValue;
    if (named) {
      names = PROTECT(Rf_allocVector(STRSXP, n));
      for (R_xlen_t i = 0; i < n; ++i)
        SET_STRING_ELT(names, i, Rf_mkCharCE(p.info.arrays[i].name.c_str(), CE_UTF8));
    }
#if R_VERSION >= R_Version(4, 3, 0)
    ans = R_new_altrep(g_list_class, R_NilValue, lst);
#else
    ans = lst;
#endif
    PROTECT(ans);
    if (named) Rf_setAttrib(ans, R_NamesSymbol, names);
    if (frame) {
      // Automatic row names in R's compact form: c(NA, -rows).
      SEXP rn = PROTECT(Rf_allocVector(INTSXP, 2));
      INTEGER(rn)[0] = NA_INTEGER;
      INTEGER(rn)[1] = -static_cast<int>(rows);
      Rf_setAttrib(ans, R_RowNamesSymbol, rn);
      Rf_setAttrib(ans, R_ClassSymbol, Rf_mkString("data.frame"));
      UNPROTECT(1);
    }
    UNPROTECT(named ? 2 : 1);
  });
  UNPROTECT(1);
  return ans;
}

// Registered R objects by the address of their data, so that run_python()
// can hand the page to Python instead of copying the object. An address can
// be reused by another object once R collects the first, so a match is
// trusted only after comparing the contents with the page (a read, no copy).
struct PageRef {
  std::string ns, var, dir, segment;
  uint64_t generation;
  uint64_t offset;
  uint64_t nbytes;
};
std::unordered_map<const void*, PageRef>& Registered() {
  static std::unordered_map<const void*, PageRef> m;
  return m;
}

void ForgetPage(const std::string& dir, const std::string& ns, const std::string& var) {
  auto& m = Registered();
  for (auto it = m.begin(); it != m.end();)
    it = (it->second.dir == dir && it->second.ns == ns && it->second.var == var) ? m.erase(it)
                                                                              : std::next(it);
}

// The segment directory argument: "" for the default (PYRMAP_SEGMENT_DIR,
// else /dev/shm), "RAM", "DISK" or a path (segment_dir.h).
SegmentDir DirArg(SEXP x) { return SegmentDir::Choose(StringArg(x, "segment directory")); }

// list(ok = FALSE, kind, message), raised as a classed condition in R.
// (Called from Entry's catch block: `e` is alive, but an R error here is an
// allocation failure with nothing of ours to leak except `e` itself.)
SEXP Fail(const Error& e) {
  SEXP out = PROTECT(NamedList({"ok", "kind", "message"}));
  SetField(out, "ok", Rf_ScalarLogical(FALSE));
  SetField(out, "kind", Str(ErrorKindName(e.kind())));
  SetField(out, "message", Str(e.what()));
  UNPROTECT(1);
  return out;
}

}  // namespace

namespace pyrmap::r {

// For run_python(): the page that holds registered object `x` unchanged, if
// any (its directory, segment name and payload offset), else false.
bool RegisteredPayload(SEXP x, std::string* dir, std::string* segment, uint64_t* offset) {
  const void* data = RData(x);
  auto it = Registered().find(data);
  if (it == Registered().end()) return false;
  const PageRef& ref = it->second;
  if (static_cast<uint64_t>(XLENGTH(x)) * RItemSize(ClassifyInput(x)) != ref.nbytes) return false;
  try {
    Segment seg = Segment::Open(SegmentDir::Open(ref.dir), ref.segment, false);
    PageInfo now = ReadPageInfo(seg);
    if (now.generation != ref.generation) return false;
    if (ref.nbytes > 0) {
      Mapping m = seg.Map(MapMode::kReadOnly, ref.offset, ref.nbytes);
      if (std::memcmp(m.data(), data, ref.nbytes) != 0) return false;
    }
  } catch (const std::exception&) {
    return false;
  }
  *dir = ref.dir;
  *segment = ref.segment;
  *offset = ref.offset;
  return true;
}

}  // namespace pyrmap::r

// [[Rcpp::init]]
void pyrmap_init_lists(DllInfo* dll) {
#if R_VERSION >= R_Version(4, 3, 0)
  g_list_class = R_make_altlist_class("pyrmap_list_view", "pyrmap", dll);
  R_set_altrep_Length_method(g_list_class, ListLength);
  R_set_altrep_Duplicate_method(g_list_class, ListDuplicate);
  R_set_altrep_Inspect_method(g_list_class, ListInspect);
  R_set_altlist_Elt_method(g_list_class, ListElt);
  R_set_altlist_Set_elt_method(g_list_class, ListSetElt);
  R_set_altvec_Dataptr_method(g_list_class, ListDataptr);
#else
  (void)dll;
#endif
}

// ---- entry points (.Call, registered in RcppExports.cpp; plain R API) -----
//
// Every one catches what the core throws and returns list(ok = FALSE, kind,
// message) for the R side to raise as a classed condition; nothing longjmps
// over C++ objects that own resources. Arguments are checked here as well
// as in R.

namespace {

std::string GenerationText(uint64_t g) { return fmt::format("{:016x}", g); }

// `body` under Entry (rlist.h): core errors come back as Fail() lists, R
// errors raised under RCall continue once the C++ frames are gone.
template <typename F>
SEXP Guarded(F&& body) {
  return Entry(body, [](const Error& e) { return Fail(e); });
}

// `f()` under RCall, for building a return value while C++ objects are alive.
template <typename F>
SEXP Build(F&& f) {
  SEXP out = R_NilValue;
  RCall([&] { out = f(); });
  return out;
}

}  // namespace

// Copies `x` (a supported vector/matrix/array, a list of them, or a
// data.frame of such vector columns with automatic row names) into the page (ns, var) in segment directory `dir`. Returns
// list(ok, segment, generation, dir) (dir: the directory's path).
extern "C" SEXP pyrmap_register(SEXP ns_, SEXP var_, SEXP x, SEXP dir_) {
  return Guarded([&] {
    const std::string ns = StringArg(ns_, "namespace"), var = StringArg(var_, "variable name");
    const SegmentDir dir = DirArg(dir_);
    const bool is_frame = Rf_isFrame(x);
    const bool is_list = TYPEOF(x) == VECSXP;
    std::vector<PageArray> arrays;
    std::vector<SEXP> parts;
    if (is_frame) {
      // Its columns as one page; the R side checked the row names.
      SEXP names = Rf_getAttrib(x, R_NamesSymbol);
      if (XLENGTH(x) == 0)
        throw Error(ErrorKind::kUsage,
                    fmt::format("variable '{}': a data.frame without columns cannot be registered "
                                "(a page keeps its rows in its columns)", var));
      for (R_xlen_t i = 0; i < XLENGTH(x); ++i) {
        SEXP el = VECTOR_ELT(x, i);
        const std::string col =
            names != R_NilValue ? Utf8(STRING_ELT(names, i), fmt::format("the name of column {} of '{}'", i + 1, var))
                                : std::to_string(i + 1);
        const std::string what = fmt::format("column '{}' of data.frame '{}'", col, var);
        if (Rf_getAttrib(el, R_DimSymbol) != R_NilValue)
          throw Error(ErrorKind::kUsage, fmt::format("{}: a matrix column cannot be registered", what));
        arrays.push_back(Describe(el, what));
        arrays.back().tag |= kTagFrameColumn;
        arrays.back().name = col;
        parts.push_back(el);
      }
    } else if (is_list) {
      SEXP names = Rf_getAttrib(x, R_NamesSymbol);
      for (R_xlen_t i = 0; i < XLENGTH(x); ++i) {
        SEXP el = VECTOR_ELT(x, i);
        arrays.push_back(Describe(el, fmt::format("element {} of '{}'", i + 1, var)));
        if (names != R_NilValue)
          arrays.back().name = Utf8(STRING_ELT(names, i), fmt::format("the name of element {} of '{}'", i + 1, var));
        parts.push_back(el);
      }
    } else {
      arrays.push_back(Describe(x, fmt::format("variable '{}'", var)));
      parts.push_back(x);
    }
    std::vector<const void*> ptrs;
    for (SEXP p : parts) ptrs.push_back(RData(p));  // may materialise ALTREP: before the core runs
    PageInfo info = CreatePage(dir, ns, var, is_list, arrays, [&](size_t i, Segment& seg, uint64_t off) {
      seg.Write(off, ptrs[i], arrays[i].desc.nbytes);
    });
    // Remember the object, so that run_python(x) needs no copy.
    if (!is_list && info.arrays[0].desc.nbytes > 0)
      Registered()[ptrs[0]] = PageRef{ns, var, info.dir, info.segment, info.generation,
                                      info.arrays[0].desc.offset, info.arrays[0].desc.nbytes};
    const std::string generation = GenerationText(info.generation);
    return Build([&] {
      SEXP out = PROTECT(NamedList({"ok", "segment", "generation", "dir"}));
      SetField(out, "ok", Rf_ScalarLogical(TRUE));
      SetField(out, "segment", Str(info.segment));
      SetField(out, "generation", Str(generation));
      SetField(out, "dir", Str(info.dir));
      UNPROTECT(1);
      return out;
    });
  });
}

// Maps (ns, var) of segment directory `dir` and returns list(ok, value =
// view or list of views, generation).
extern "C" SEXP pyrmap_open(SEXP ns_, SEXP var_, SEXP dir_) {
  return Guarded([&] {
    const std::string ns = StringArg(ns_, "namespace"), var = StringArg(var_, "variable name");
    OpenedPage p = OpenPage(DirArg(dir_), ns, var, MapMode::kPrivate);
    CheckArrays(p);
    const std::string generation = GenerationText(p.info.generation);
    SEXP value = PROTECT(p.info.is_list ? ListToR(p) : ArrayToR(p, 0));
    SEXP out = Build([&] {
      SEXP out = PROTECT(NamedList({"ok", "value", "generation"}));
      SetField(out, "ok", Rf_ScalarLogical(TRUE));
      SetField(out, "value", value);
      SetField(out, "generation", Str(generation));
      UNPROTECT(1);
      return out;
    });
    UNPROTECT(1);
    return out;
  });
}

// The current generation of (ns, var) in segment directory `dir`, or NA if
// it is not registered (or cannot be read: pyrmap_open then says why).
extern "C" SEXP pyrmap_generation(SEXP ns_, SEXP var_, SEXP dir_) {
  return Guarded([&] {
    const std::string ns = StringArg(ns_, "namespace"), var = StringArg(var_, "variable name");
    const SegmentDir dir = DirArg(dir_);
    std::string generation;
    try {
      PageInfo info = ReadPageInfo(dir, PageName(ns, var));
      if (info.ns == ns && info.var == var) generation = GenerationText(info.generation);
    } catch (const Error&) {
    }
    return Build([&] { return generation.empty() ? Rf_ScalarString(NA_STRING) : Str(generation); });
  });
}

// Metadata of (ns, var) in segment directory `dir` without mapping it:
// list(ok, is_list, owner_pid, arrays = list of list(type, dim, has_dim,
// length, name)).
extern "C" SEXP pyrmap_page_info(SEXP ns_, SEXP var_, SEXP dir_) {
  return Guarded([&] {
    const std::string ns = StringArg(ns_, "namespace"), var = StringArg(var_, "variable name");
    PageInfo info = FindPage(DirArg(dir_), ns, var).info;
    static const char* kTypes[] = {"double", "integer", "logical", "raw", "integer64"};
    std::vector<const char*> types;
    for (const PageArray& a : info.arrays) types.push_back(kTypes[static_cast<int>(TagKind(a.tag))]);
    return Build([&] {
      SEXP out = PROTECT(NamedList({"ok", "is_list", "is_frame", "owner_pid", "arrays"}));
      SetField(out, "ok", Rf_ScalarLogical(TRUE));
      SetField(out, "is_list", Rf_ScalarLogical(info.is_list));
      SetField(out, "is_frame", Rf_ScalarLogical(IsFramePage(info)));
      SetField(out, "owner_pid", Rf_ScalarReal(static_cast<double>(info.owner_pid)));
      SEXP arrays = Rf_allocVector(VECSXP, static_cast<R_xlen_t>(info.arrays.size()));
      SetField(out, "arrays", arrays);
      for (size_t i = 0; i < info.arrays.size(); ++i) {
        const PageArray& a = info.arrays[i];
        SEXP el = NamedList({"type", "dim", "has_dim", "length", "name"});
        SET_VECTOR_ELT(arrays, static_cast<R_xlen_t>(i), el);
        SetField(el, "type", Rf_mkString(types[i]));
        SEXP dim = Rf_allocVector(REALSXP, static_cast<R_xlen_t>(a.desc.shape.size()));
        SetField(el, "dim", dim);
        for (size_t k = 0; k < a.desc.shape.size(); ++k) REAL(dim)[k] = static_cast<double>(a.desc.shape[k]);
        SetField(el, "has_dim", Rf_ScalarLogical((TagHasDim(a.tag)) != 0));
        SetField(el, "length", Rf_ScalarReal(static_cast<double>(a.desc.count)));
        SetField(el, "name", Str(a.name));
      }
      UNPROTECT(1);
      return out;
    });
  });
}

// Removes (ns, var) of segment directory `dir` if this session owns it:
// list(ok, removed).
extern "C" SEXP pyrmap_release(SEXP ns_, SEXP var_, SEXP dir_) {
  return Guarded([&] {
    const std::string ns = StringArg(ns_, "namespace"), var = StringArg(var_, "variable name");
    const SegmentDir dir = DirArg(dir_);
    ForgetPage(dir.path(), ns, var);
    const bool removed = ReleasePage(dir, ns, var);
    return Build([&] {
      SEXP out = PROTECT(NamedList({"ok", "removed"}));
      SetField(out, "ok", Rf_ScalarLogical(TRUE));
      SetField(out, "removed", Rf_ScalarLogical(removed));
      UNPROTECT(1);
      return out;
    });
  });
}

namespace {

// Column j of view `m` (margin 2: a zero-copy view) or row j (margin 1:
// gathered into a new vector), 1-based; nullptr and `why` set when the
// arguments are wrong.
SEXP Slice(SEXP m, int margin, int j, const char** why) {
  const ViewSource* src = ViewOf(m);
  SEXP dim = Rf_getAttrib(m, R_DimSymbol);
  if (!src || dim == R_NilValue || XLENGTH(dim) != 2) {
    *why = "not a matrix view";
    return nullptr;
  }
  const R_xlen_t nrow = INTEGER(dim)[0], ncol = INTEGER(dim)[1];
  if (margin != 1 && margin != 2) {
    *why = "MARGIN must be 1 or 2";
    return nullptr;
  }
  if (j < 1 || j > (margin == 2 ? ncol : nrow)) {
    *why = margin == 2 ? "column out of range" : "row out of range";
    return nullptr;
  }
  const SEXPTYPE type = TYPEOF(m);
  const size_t item = type == REALSXP ? 8 : type == RAWSXP ? 1 : 4;
  if (margin == 2) {
    ViewSource col = *src;
    col.data = src->data + static_cast<size_t>(j - 1) * static_cast<size_t>(nrow) * item;
    col.offset = src->offset + static_cast<uint64_t>(j - 1) * static_cast<uint64_t>(nrow) * item;
    col.length = nrow;
    return MakeView(type, std::move(col));
  }
  SEXP ans = R_NilValue;
  RCall([&] { ans = Rf_allocVector(type, ncol); });
  uint8_t* out = static_cast<uint8_t*>(const_cast<void*>(RData(ans)));
  const uint8_t* in = src->data + static_cast<size_t>(j - 1) * item;
  for (R_xlen_t c = 0; c < ncol; ++c) std::memcpy(out + c * item, in + static_cast<size_t>(c * nrow) * item, item);
  return ans;
}

}  // namespace

// Column j (MARGIN 2, a zero-copy view of the matrix view `m`) or row j
// (MARGIN 1, gathered into a new vector), 1-based. `m` must be a view.
extern "C" SEXP pyrmap_slice(SEXP m, SEXP margin, SEXP j) {
  char why[512] = "";
  SEXP ans = Entry(
      [&]() -> SEXP {
        const char* w = nullptr;
        SEXP a = Slice(m, Rf_asInteger(margin), Rf_asInteger(j), &w);
        if (!a) {
          std::snprintf(why, sizeof why, "%s", w);
          return R_NilValue;
        }
        PROTECT(a);
        if (Rf_inherits(m, "integer64")) RCall([&] { Rf_setAttrib(a, R_ClassSymbol, Rf_mkString("integer64")); });
        UNPROTECT(1);
        return a;
      },
      [&](const Error& e) {
        std::snprintf(why, sizeof why, "%s", e.what());
        return R_NilValue;
      });
  if (why[0]) Rf_error("pyrmap: %s", why);  // no C++ object is alive here
  return ans;
}

// If `x` is a view of a whole registered variable (a page of one array,
// still registered with the same generation): list(ns, var, generation,
// dir). Else NULL.
extern "C" SEXP pyrmap_view_page(SEXP x) {
  const ViewSource* v = ViewOf(x);
  if (!v || v->generation == 0) return R_NilValue;
  return Entry(
      [&]() -> SEXP {
        PageInfo info;
        try {
          info = ReadPageInfo(SegmentDir::Open(v->dir), v->segment);
        } catch (const Error&) {
          return R_NilValue;
        }
        if (info.generation != v->generation || info.is_list || info.arrays.size() != 1 ||
            info.arrays[0].desc.offset != v->offset ||
            info.arrays[0].desc.count != static_cast<uint64_t>(v->length))
          return R_NilValue;
        const std::string generation = GenerationText(info.generation);
        return Build([&] {
          SEXP out = PROTECT(NamedList({"ns", "var", "generation", "dir"}));
          SetField(out, "ns", Str(info.ns));
          SetField(out, "var", Str(info.var));
          SetField(out, "generation", Str(generation));
          SetField(out, "dir", Str(info.dir));
          UNPROTECT(1);
          return out;
        });
      },
      [](const Error&) { return R_NilValue; });
}

// Whether `x` is a view, and of which segment (for tests and diagnostics):
// list(segment, offset, length, address, dir), or NULL.
extern "C" SEXP pyrmap_view_info(SEXP x) {
  const ViewSource* v = ViewOf(x);
  if (!v) return R_NilValue;
  return Guarded([&] {
    const std::string address = fmt::format("{}", static_cast<const void*>(v->data));
    return Build([&] {
      SEXP out = PROTECT(NamedList({"segment", "offset", "length", "address", "dir"}));
      SetField(out, "segment", Str(v->segment));
      SetField(out, "dir", Str(v->dir));
      SetField(out, "offset", Rf_ScalarReal(static_cast<double>(v->offset)));
      SetField(out, "length", Rf_ScalarReal(static_cast<double>(v->length)));
      SetField(out, "address", Str(address));
      UNPROTECT(1);
      return out;
    });
  });
}

// Removes the segments of dead owners (any pyrmap segment of this user) in
// the known segment directories and in `dirs` (character: "RAM", "DISK" or
// paths); returns their names.
extern "C" SEXP pyrmap_collect_garbage(SEXP dirs_) {
  return Guarded([&] {
    std::vector<std::string> extra;
    if (TYPEOF(dirs_) == STRSXP)
      for (R_xlen_t i = 0; i < XLENGTH(dirs_); ++i)
        if (STRING_ELT(dirs_, i) != NA_STRING)
          extra.push_back(ResolveSegmentDir(Rf_translateCharUTF8(STRING_ELT(dirs_, i))));
    std::vector<std::string> names;
    try {
      for (const auto& s : CollectGarbage(KnownSegmentDirs(extra))) names.push_back(s.name);
    } catch (const Error&) {
    }
    return Build([&] {
      SEXP out = PROTECT(Rf_allocVector(STRSXP, static_cast<R_xlen_t>(names.size())));
      for (size_t i = 0; i < names.size(); ++i)
        SET_STRING_ELT(out, static_cast<R_xlen_t>(i), Rf_mkCharCE(names[i].c_str(), CE_UTF8));
      UNPROTECT(1);
      return out;
    });
  });
}

// Bytes of the distinct mappings that view `x` (or the views in list `x`)
// holds; 0 for anything else.
extern "C" SEXP pyrmap_mapping_bytes(SEXP x) {
  std::vector<const Mapping*> seen;
  double total = 0;
  auto add = [&](SEXP v) {
    const ViewSource* s = ViewOf(v);
    if (!s || !s->mapping) return;
    for (const Mapping* m : seen)
      if (m == s->mapping.get()) return;
    seen.push_back(s->mapping.get());
    total += static_cast<double>(s->mapping->size());
  };
  if (TYPEOF(x) == VECSXP)
    for (R_xlen_t i = 0; i < XLENGTH(x); ++i) add(VECTOR_ELT(x, i));
  else
    add(x);
  return Rf_ScalarReal(total);
}

// What views map in this process and the bound past which making another
// view collects first (see views.h): c(mapped = , bound = ), in bytes.
extern "C" SEXP pyrmap_view_memory() {
  SEXP out = PROTECT(Rf_allocVector(REALSXP, 2));
  REAL(out)[0] = static_cast<double>(MappedViewBytes());
  REAL(out)[1] = static_cast<double>(CollectBound());
  SEXP nm = PROTECT(Rf_allocVector(STRSXP, 2));
  SET_STRING_ELT(nm, 0, Rf_mkChar("mapped"));
  SET_STRING_ELT(nm, 1, Rf_mkChar("bound"));
  Rf_setAttrib(out, R_NamesSymbol, nm);
  UNPROTECT(2);
  return out;
}

// Moves this process into a process group of its own (a cluster worker:
// Ctrl-C in the master's terminal, sent to the terminal's foreground
// process group, then reaches the master alone). Returns whether the
// process now leads its own group.
extern "C" SEXP pyrmap_leave_process_group() {
  if (getpgrp() != getpid()) setpgid(0, 0);  // fails harmlessly for a session leader
  return Rf_ScalarLogical(getpgrp() == getpid());
}

// The segment directory `choice` ("" / "RAM" / "DISK" / a path) stands for,
// opened and checked ("DISK" made if needed): list(ok, dir) or an error list.
extern "C" SEXP pyrmap_choose_segment_dir(SEXP choice_) {
  return Guarded([&] {
    const std::string dir = DirArg(choice_).path();
    return Build([&] {
      SEXP out = PROTECT(NamedList({"ok", "dir"}));
      SetField(out, "ok", Rf_ScalarLogical(TRUE));
      SetField(out, "dir", Str(dir));
      UNPROTECT(1);
      return out;
    });
  });
}

// Removes this user's segments whose owner is dead (cheap; at load time).
// Returns how many. Never fails.
extern "C" SEXP pyrmap_remove_dead_segments() {
  return Rf_ScalarReal(static_cast<double>(RemoveDeadSegments()));
}

// TRUE if every element of list `x` is held exactly by a call's packed data
// (and by a list page): a double, integer, logical or raw vector whose only
// attribute, if any, is `dim`. A loop in C: memLapply asks it of lists of
// many thousands of elements.
extern "C" SEXP pyrmap_packable(SEXP x) {
  if (TYPEOF(x) != VECSXP) return Rf_ScalarLogical(FALSE);
  const R_xlen_t n = XLENGTH(x);
  for (R_xlen_t i = 0; i < n; ++i) {
    SEXP e = VECTOR_ELT(x, i);
    switch (TYPEOF(e)) {
      case REALSXP: case INTSXP: case LGLSXP: case RAWSXP: break;
      default: return Rf_ScalarLogical(FALSE);
    }
    for (SEXP a = ATTRIB(e); a != R_NilValue; a = CDR(a))
      if (TAG(a) != R_DimSymbol) return Rf_ScalarLogical(FALSE);
  }
  return Rf_ScalarLogical(TRUE);
}
