// registry_r.cpp — R objects in and out of registry pages (the memshare API's
// C++ half), and the pieces of views that workers hand to FUN.
//
// Every export catches pyrmap::Error and returns list(ok = FALSE, ...) for
// the R side to raise as a classed condition; nothing longjmps over C++
// objects that own resources.
#include <Rcpp.h>

#include <R_ext/Altrep.h>
#include <Rversion.h>

#include <cstring>
#include <unordered_map>

#include <fmt/format.h>

#include "error.h"
#include "inventory.h"
#include "rconvert.h"
#include "registry.h"
#include "registry_r.h"
#include "views.h"

using namespace pyrmap;
using namespace pyrmap::r;

namespace {

// Tags stored with each array of a page: how to rebuild the R object.
constexpr uint32_t kTagKindMask = 0xff;
constexpr uint32_t kTagHasDim = 0x100;  // the object had a dim attribute

uint32_t KindTag(RKind k) { return static_cast<uint32_t>(k) + 1; }

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

// A page array describing R vector `x` (shape from dim, column-major).
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
  a.tag = KindTag(kind) | (Rf_getAttrib(x, R_DimSymbol) != R_NilValue ? kTagHasDim : 0u);
  return a;
}

// An R object (a view, or an ordinary empty vector) for array i of a page.
SEXP ArrayToR(const OpenedPage& p, size_t i) {
  const PageArray& a = p.info.arrays[i];
  RKind kind = TagKind(a.tag);
  ViewSource src;
  src.mapping = p.mapping;
  src.data = p.data(i);
  src.length = static_cast<R_xlen_t>(a.desc.count);
  src.segment = p.info.segment;
  src.offset = a.desc.offset;
  src.generation = p.info.generation;
  SEXP ans = PROTECT(MakeView(SexpType(kind), std::move(src)));
  if (a.tag & kTagHasDim) {
    SEXP dim = PROTECT(Rf_allocVector(INTSXP, static_cast<R_xlen_t>(a.desc.shape.size())));
    for (size_t k = 0; k < a.desc.shape.size(); ++k) INTEGER(dim)[k] = static_cast<int>(a.desc.shape[k]);
    Rf_setAttrib(ans, R_DimSymbol, dim);
    UNPROTECT(1);
  }
  if (kind == RKind::kInteger64) Rf_setAttrib(ans, R_ClassSymbol, Rf_mkString("integer64"));
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
  SEXP lst = PROTECT(Rf_allocVector(VECSXP, n));
  bool named = false;
  for (R_xlen_t i = 0; i < n; ++i) {
    SET_VECTOR_ELT(lst, i, ArrayToR(p, static_cast<size_t>(i)));
    named = named || !p.info.arrays[i].name.empty();
  }
  SEXP names = R_NilValue;
  if (named) {
    names = PROTECT(Rf_allocVector(STRSXP, n));
    for (R_xlen_t i = 0; i < n; ++i)
      SET_STRING_ELT(names, i, Rf_mkCharCE(p.info.arrays[i].name.c_str(), CE_UTF8));
  }
#if R_VERSION >= R_Version(4, 3, 0)
  SEXP ans = R_new_altrep(g_list_class, R_NilValue, lst);
  if (named) Rf_setAttrib(ans, R_NamesSymbol, names);
#else
  SEXP ans = lst;
  if (named) Rf_setAttrib(ans, R_NamesSymbol, names);
#endif
  UNPROTECT(named ? 2 : 1);
  return ans;
}

// Registered R objects by the address of their data, so that run_python()
// can hand the page to Python instead of copying the object. An address can
// be reused by another object once R collects the first, so a match is
// trusted only after comparing the contents with the page (a read, no copy).
struct PageRef {
  std::string ns, var, segment;
  uint64_t generation;
  uint64_t offset;
  uint64_t nbytes;
};
std::unordered_map<const void*, PageRef>& Registered() {
  static std::unordered_map<const void*, PageRef> m;
  return m;
}

void ForgetPage(const std::string& ns, const std::string& var) {
  auto& m = Registered();
  for (auto it = m.begin(); it != m.end();)
    it = (it->second.ns == ns && it->second.var == var) ? m.erase(it) : std::next(it);
}

Rcpp::List Fail(const Error& e) {
  return Rcpp::List::create(Rcpp::Named("ok") = false, Rcpp::Named("kind") = ErrorKindName(e.kind()),
                            Rcpp::Named("message") = std::string(e.what()));
}

Rcpp::List Fail(const std::exception& e) {
  return Fail(Error(ErrorKind::kSystem, fmt::format("internal error: {}", e.what())));
}

}  // namespace

namespace pyrmap::r {

// For run_python(): the page that holds registered object `x` unchanged, if
// any (segment name and payload offset), else false.
bool RegisteredPayload(SEXP x, std::string* segment, uint64_t* offset) {
  const void* data = RData(x);
  auto it = Registered().find(data);
  if (it == Registered().end()) return false;
  const PageRef& ref = it->second;
  if (static_cast<uint64_t>(XLENGTH(x)) * RItemSize(ClassifyInput(x)) != ref.nbytes) return false;
  try {
    Segment seg = Segment::Open(ref.segment, false);
    PageInfo now = ReadPageInfo(ref.segment);
    if (now.generation != ref.generation) return false;
    if (ref.nbytes > 0) {
      Mapping m = seg.Map(MapMode::kReadOnly, ref.offset, ref.nbytes);
      if (std::memcmp(m.data(), data, ref.nbytes) != 0) return false;
    }
  } catch (const std::exception&) {
    return false;
  }
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

// Copies `x` (a supported vector/matrix/array, or a list of them when
// `is_list`) into the page (ns, var). Returns list(ok, segment, generation).
// [[Rcpp::export(.pyrmap_register)]]
SEXP pyrmap_register(std::string ns, std::string var, SEXP x) {
  try {
    const bool is_list = TYPEOF(x) == VECSXP && !Rf_isFrame(x);
    std::vector<PageArray> arrays;
    std::vector<SEXP> parts;
    if (is_list) {
      SEXP names = Rf_getAttrib(x, R_NamesSymbol);
      for (R_xlen_t i = 0; i < XLENGTH(x); ++i) {
        SEXP el = VECTOR_ELT(x, i);
        arrays.push_back(Describe(el, fmt::format("element {} of '{}'", i + 1, var)));
        if (names != R_NilValue) arrays.back().name = Rf_translateCharUTF8(STRING_ELT(names, i));
        parts.push_back(el);
      }
    } else {
      arrays.push_back(Describe(x, fmt::format("variable '{}'", var)));
      parts.push_back(x);
    }
    std::vector<const void*> ptrs;
    for (SEXP p : parts) ptrs.push_back(RData(p));  // may materialise ALTREP: before the core runs
    PageInfo info = CreatePage(ns, var, is_list, arrays, [&](size_t i, Segment& seg, uint64_t off) {
      seg.Write(off, ptrs[i], arrays[i].desc.nbytes);
    });
    // Remember the object, so that run_python(x) needs no copy.
    if (!is_list && info.arrays[0].desc.nbytes > 0)
      Registered()[ptrs[0]] = PageRef{ns, var, info.segment, info.generation, info.arrays[0].desc.offset,
                                      info.arrays[0].desc.nbytes};
    return Rcpp::List::create(Rcpp::Named("ok") = true, Rcpp::Named("segment") = info.segment,
                              Rcpp::Named("generation") = fmt::format("{:016x}", info.generation));
  } catch (const Error& e) {
    return Fail(e);
  } catch (const std::exception& e) {
    return Fail(e);
  }
}

// Maps (ns, var) and returns list(ok, value = view or list of views,
// generation).
// [[Rcpp::export(.pyrmap_open)]]
SEXP pyrmap_open(std::string ns, std::string var) {
  try {
    OpenedPage p = OpenPage(ns, var, MapMode::kPrivate);
    SEXP value = PROTECT(p.info.is_list ? ListToR(p) : ArrayToR(p, 0));
    Rcpp::List out = Rcpp::List::create(Rcpp::Named("ok") = true, Rcpp::Named("value") = value,
                                        Rcpp::Named("generation") = fmt::format("{:016x}", p.info.generation));
    UNPROTECT(1);
    return out;
  } catch (const Error& e) {
    return Fail(e);
  } catch (const std::exception& e) {
    return Fail(e);
  }
}

// The current generation of (ns, var), or NA if it is not registered.
// [[Rcpp::export(.pyrmap_generation)]]
SEXP pyrmap_generation(std::string ns, std::string var) {
  try {
    PageInfo info = ReadPageInfo(PageName(ns, var));
    if (info.ns != ns || info.var != var) return Rcpp::CharacterVector::create(NA_STRING);
    return Rcpp::CharacterVector::create(fmt::format("{:016x}", info.generation));
  } catch (const std::exception&) {
    return Rcpp::CharacterVector::create(NA_STRING);
  }
}

// Metadata of (ns, var) without mapping it: list(ok, is_list, owner_pid,
// arrays = list of list(type, dim, length, name)).
// [[Rcpp::export(.pyrmap_page_info)]]
SEXP pyrmap_page_info(std::string ns, std::string var) {
  try {
    PageInfo info;
    try {
      info = ReadPageInfo(PageName(ns, var));
    } catch (const Error& e) {
      if (e.sys_errno() == ENOENT)
        throw Error(ErrorKind::kNotFound,
                    fmt::format("variable '{}' of namespace '{}' is not registered", var, ns));
      throw;
    }
    if (info.ns != ns || info.var != var)
      throw Error(ErrorKind::kNotFound, fmt::format("variable '{}' of namespace '{}' is not registered", var, ns));
    Rcpp::List arrays(info.arrays.size());
    for (size_t i = 0; i < info.arrays.size(); ++i) {
      const PageArray& a = info.arrays[i];
      static const char* kTypes[] = {"double", "integer", "logical", "raw", "integer64"};
      Rcpp::NumericVector dim(a.desc.shape.begin(), a.desc.shape.end());
      arrays[i] = Rcpp::List::create(Rcpp::Named("type") = kTypes[static_cast<int>(TagKind(a.tag))],
                                     Rcpp::Named("dim") = dim,
                                     Rcpp::Named("has_dim") = static_cast<bool>(a.tag & kTagHasDim),
                                     Rcpp::Named("length") = static_cast<double>(a.desc.count),
                                     Rcpp::Named("name") = a.name);
    }
    return Rcpp::List::create(Rcpp::Named("ok") = true, Rcpp::Named("is_list") = info.is_list,
                              Rcpp::Named("owner_pid") = static_cast<double>(info.owner_pid),
                              Rcpp::Named("arrays") = arrays);
  } catch (const Error& e) {
    return Fail(e);
  } catch (const std::exception& e) {
    return Fail(e);
  }
}

// Removes (ns, var) if this session owns it: list(ok, removed).
// [[Rcpp::export(.pyrmap_release)]]
SEXP pyrmap_release(std::string ns, std::string var) {
  try {
    ForgetPage(ns, var);
    bool removed = ReleasePage(ns, var);
    return Rcpp::List::create(Rcpp::Named("ok") = true, Rcpp::Named("removed") = removed);
  } catch (const Error& e) {
    return Fail(e);
  } catch (const std::exception& e) {
    return Fail(e);
  }
}

// Column j (MARGIN 2, a zero-copy view of the matrix view `m`) or row j
// (MARGIN 1, gathered into a new vector), 1-based. `m` must be a view.
// [[Rcpp::export(.pyrmap_slice)]]
SEXP pyrmap_slice(SEXP m, int margin, int j) {
  const ViewSource* src = ViewOf(m);
  SEXP dim = Rf_getAttrib(m, R_DimSymbol);
  if (!src || dim == R_NilValue || XLENGTH(dim) != 2) Rcpp::stop("not a matrix view");
  const R_xlen_t nrow = INTEGER(dim)[0], ncol = INTEGER(dim)[1];
  const SEXPTYPE type = TYPEOF(m);
  const size_t item = type == REALSXP ? 8 : type == RAWSXP ? 1 : 4;
  SEXP ans;
  if (margin == 2) {
    if (j < 1 || j > ncol) Rcpp::stop("column out of range");
    ViewSource col = *src;
    col.data = src->data + static_cast<size_t>(j - 1) * static_cast<size_t>(nrow) * item;
    col.offset = src->offset + static_cast<uint64_t>(j - 1) * static_cast<uint64_t>(nrow) * item;
    col.length = nrow;
    ans = PROTECT(MakeView(type, std::move(col)));
  } else {
    if (j < 1 || j > nrow) Rcpp::stop("row out of range");
    ans = PROTECT(Rf_allocVector(type, ncol));
    uint8_t* out = static_cast<uint8_t*>(const_cast<void*>(RData(ans)));
    const uint8_t* in = src->data + static_cast<size_t>(j - 1) * item;
    for (R_xlen_t c = 0; c < ncol; ++c) std::memcpy(out + c * item, in + static_cast<size_t>(c * nrow) * item, item);
  }
  if (Rf_inherits(m, "integer64")) Rf_setAttrib(ans, R_ClassSymbol, Rf_mkString("integer64"));
  UNPROTECT(1);
  return ans;
}

// If `x` is a view of a whole registered variable (a page of one array,
// still registered with the same generation): list(ns, var, generation).
// Else NULL.
// [[Rcpp::export(.pyrmap_view_page)]]
SEXP pyrmap_view_page(SEXP x) {
  const ViewSource* v = ViewOf(x);
  if (!v || v->generation == 0) return R_NilValue;
  try {
    PageInfo info = ReadPageInfo(v->segment);
    if (info.generation != v->generation || info.is_list || info.arrays.size() != 1 ||
        info.arrays[0].desc.offset != v->offset ||
        info.arrays[0].desc.count != static_cast<uint64_t>(v->length))
      return R_NilValue;
    return Rcpp::List::create(Rcpp::Named("ns") = info.ns, Rcpp::Named("var") = info.var,
                              Rcpp::Named("generation") = fmt::format("{:016x}", info.generation));
  } catch (const std::exception&) {
    return R_NilValue;
  }
}

// Removes the segments of dead owners (any pyrmap segment of this user).
// [[Rcpp::export(.pyrmap_collect_garbage)]]
Rcpp::CharacterVector pyrmap_collect_garbage() {
  std::vector<std::string> names;
  try {
    for (const auto& s : CollectGarbage()) names.push_back(s.name);
  } catch (const std::exception&) {
  }
  return Rcpp::wrap(names);
}
