// run_r.cpp — run_python() and family: R data in, core run, views out.
//
// The one place where core errors meet R for the run functions: every
// pyrmap::Error is caught here and returned as a plain list describing it;
// the R wrapper turns that into a classed condition. No R error is raised
// while core objects are alive (a longjmp would skip their cleanup).
#include <Rcpp.h>

#include <cmath>
#include <cstring>
#include <functional>

#include <fmt/format.h>

#include "error.h"
#include "pool.h"
#include "pool_r.h"
#include "rconvert.h"
#include "registry.h"
#include "registry_r.h"
#include "rlist.h"
#include "rtable.h"
#include "run.h"
#include "views.h"

using namespace pyrmap;
using namespace pyrmap::r;

namespace {

constexpr double kTwo53 = 9007199254740992.0;

void CheckInterruptFn(void*) { R_CheckUserInterrupt(); }

// R's interrupt check without R's longjmp: R_ToplevelExec catches it.
void CheckInterrupt() {
  if (!R_ToplevelExec(CheckInterruptFn, nullptr))
    throw Error(ErrorKind::kInterrupt,
                "interrupted: the Python process was stopped and its shared memory removed");
}

// Whether the page a view came from is still the one under that name (it
// may have been released, and the name registered again with other data).
bool PageStillHolds(const ViewSource& v) {
  try {
    return ReadPageInfo(SegmentDir::Open(v.dir), v.segment).generation == v.generation;
  } catch (const Error&) {
    return false;
  }
}

// The run's input. Handed over without a copy when `x` is a view of a named
// segment, or a registered variable, whose bytes are already the dtype's;
// its elements are then scanned for NA the dtype cannot hold (as the
// conversion would refuse it). Else the core writes it once, converting
// from R's storage (input.h).
Input MakeInput(SEXP x, RKind kind, Dtype to) {
  InputSource src = RSource(x, kind);
  const ArrayDesc desc = ArrayDesc::Make(to, ShapeOf(x), Order::kF);
  if (src.dtype == to) {
    std::string dir, segment;
    uint64_t offset = 0;
    if (const ViewSource* v = ViewOf(x)) {
      if (!v->segment.empty() && v->offset % kPayloadAlignment == 0 && PageStillHolds(*v)) {
        dir = v->dir;
        segment = v->segment;
        offset = v->offset;
      }
    } else {
      RegisteredPayload(x, &dir, &segment, &offset);  // leaves `segment` empty when not registered
    }
    if (!segment.empty()) {
      RefuseMissing(src.dtype, src.data, desc.count, 0, to, src.rules);
      Input in;
      in.desc = desc;
      in.desc.offset = offset;
      in.segment = segment;
      in.segment_dir = dir;
      return in;
    }
  }
  return SourceInput(std::move(src), desc);
}

// ---- the sentinels of NA on the way back --------------------------------
//
// R's NA goes to Python as INT32_MIN (int32) and INT64_MIN (int64), and the
// same values in a result read back as NA when the call's input held NA:
// that is how NA travelled. In a call whose input held none they are
// values, -2^31 and -2^63, which R's integer and integer64 cannot hold: an
// int32 result is then returned as double (exact), an int64 result as
// double when every value fits one exactly, and otherwise refused with an
// error naming the position and the value. Never a silent NA.

// Whether the R input `x` holds an NA (of any type that has one).
bool InputHoldsNA(SEXP x) {
  const R_xlen_t n = XLENGTH(x);
  switch (TYPEOF(x)) {
    case INTSXP:
    case LGLSXP: {
      const int* p = static_cast<const int*>(RData(x));
      for (R_xlen_t i = 0; i < n; ++i)
        if (p[i] == NA_INTEGER) return true;
      return false;
    }
    case REALSXP: {
      const double* p = static_cast<const double*>(RData(x));
      if (Rf_inherits(x, "integer64")) {
        for (R_xlen_t i = 0; i < n; ++i) {
          int64_t v;
          std::memcpy(&v, p + i, 8);
          if (v == INT64_MIN) return true;
        }
        return false;
      }
      for (R_xlen_t i = 0; i < n; ++i)
        if (R_IsNA(p[i])) return true;
      return false;
    }
    default: return false;
  }
}

// The first position of `value` among the n elements of type T at p, or n.
template <typename T>
uint64_t Find(const uint8_t* p, uint64_t n, T value) {
  for (uint64_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, p + i * sizeof(T), sizeof(T));
    if (v == value) return i;
  }
  return n;
}

// Checks an int64 result: true if every value is a double exactly
// (INT64_MIN counts as fitting: it is NA, or -2^63, a power of two); else
// the first that is not.
bool Int64FitsDouble(const Result& r, int64_t* first_bad, uint64_t* where) {
  const uint8_t* p = r.data();
  for (uint64_t i = 0; i < r.desc.count; ++i) {
    int64_t v;
    std::memcpy(&v, p + i * 8, 8);
    if (v == INT64_MIN) continue;
    if (v > (int64_t{1} << 53) || v < -(int64_t{1} << 53)) {
      *first_bad = v;
      *where = i;
      return false;
    }
  }
  return true;
}

// A new vector (unprotected); R's allocation error comes as RUnwind.
SEXP Alloc(SEXPTYPE type, R_xlen_t n) {
  SEXP ans = R_NilValue;
  RCall([&] { ans = Rf_allocVector(type, n); });
  return ans;
}

ViewSource SourceOf(const Result& r) {
  ViewSource s;
  s.mapping = r.mapping;
  s.data = r.data();
  s.length = static_cast<R_xlen_t>(r.desc.count);
  return s;
}

// An R vector of `type` holding a copy of the result's bytes (a pool
// worker's area is reused by its next call: its results are copied).
SEXP CopyOf(SEXPTYPE type, const Result& r) {
  SEXP ans = Alloc(type, static_cast<R_xlen_t>(r.desc.count));
  if (r.desc.nbytes > 0) std::memcpy(DATAPTR(ans), r.data(), r.desc.nbytes);
  return ans;
}

// A zero-copy view of the result, or a copy when it is transient.
SEXP ViewOrCopy(SEXPTYPE type, const Result& r) {
  return r.transient ? CopyOf(type, r) : MakeView(type, SourceOf(r));
}

// An R object for a result (not yet carrying dims). Zero-copy views for
// float64, int32, uint8 and integer64 (copies of small pool results);
// converted copies otherwise. `input_na()` tells whether the call's input held NA (asked only when a
// result holds a sentinel).
SEXP ResultVector(const Result& r, bool want_integer64, bool bit64_available,
                  const std::function<bool()>& input_na) {
  const R_xlen_t n = static_cast<R_xlen_t>(r.desc.count);
  const uint8_t* p = r.data();
  switch (r.desc.dtype) {
    case Dtype::kFloat64: return ViewOrCopy(REALSXP, r);
    case Dtype::kInt32: {
      if (Find<int32_t>(p, r.desc.count, INT32_MIN) == r.desc.count || input_na())
        return ViewOrCopy(INTSXP, r);
      // -2^31 is a value here, and R's integer cannot hold it: double, exact.
      SEXP ans = Alloc(REALSXP, n);
      double* q = REAL(ans);
      for (R_xlen_t i = 0; i < n; ++i) {
        int32_t v;
        std::memcpy(&v, p + 4 * i, 4);
        q[i] = v;
      }
      return ans;
    }
    case Dtype::kUInt8: return ViewOrCopy(RAWSXP, r);
    case Dtype::kBool: {
      SEXP ans = Alloc(LGLSXP, n);
      int* q = LOGICAL(ans);
      for (R_xlen_t i = 0; i < n; ++i) q[i] = p[i] != 0;
      return ans;
    }
    case Dtype::kFloat32: {
      SEXP ans = Alloc(REALSXP, n);
      double* q = REAL(ans);
      for (R_xlen_t i = 0; i < n; ++i) {
        uint32_t bits;
        std::memcpy(&bits, p + 4 * i, 4);
        float f;
        std::memcpy(&f, &bits, 4);
        q[i] = bits == kFloat32NA ? NA_REAL : static_cast<double>(f);
      }
      return ans;
    }
    case Dtype::kInt64: {
      const uint64_t first_min = Find<int64_t>(p, r.desc.count, INT64_MIN);
      const bool sentinel_is_na = first_min < r.desc.count && input_na();
      int64_t bad = 0;
      uint64_t at = 0;
      bool fits = want_integer64 ? false : Int64FitsDouble(r, &bad, &at);
      if (fits) {
        SEXP ans = Alloc(REALSXP, n);
        double* q = REAL(ans);
        for (R_xlen_t i = 0; i < n; ++i) {
          int64_t v;
          std::memcpy(&v, p + 8 * i, 8);
          q[i] = v == INT64_MIN && sentinel_is_na ? NA_REAL : static_cast<double>(v);
        }
        return ans;
      }
      // integer64 it must be (the input was integer64, or a value is beyond
      // 2^53), and integer64 cannot hold -2^63 as a value.
      if (first_min < r.desc.count && !sentinel_is_na)
        throw Error(ErrorKind::kUsage,
                    fmt::format("result[{}] = {} (dtype int64) cannot be returned exactly: it is "
                                "integer64's NA, and {} needs integer64",
                                first_min + 1, INT64_MIN,
                                want_integer64 ? std::string("an integer64 input")
                                               : fmt::format("result[{}] = {}, beyond 2^53,", at + 1, bad)));
      if (!want_integer64 && !bit64_available)
        throw Error(ErrorKind::kUsage,
                    fmt::format("result[{}] = {} is an int64 beyond 2^53, which a double cannot hold "
                                "exactly; install the bit64 package to receive integer64",
                                at + 1, bad));
      // integer64 stores int64 bits in a double vector: a view needs no copy.
      SEXP ans = PROTECT(ViewOrCopy(REALSXP, r));
      RCall([&] { Rf_setAttrib(ans, R_ClassSymbol, Rf_mkString("integer64")); });
      UNPROTECT(1);
      return ans;
    }
    case Dtype::kNone: break;
  }
  throw Error(ErrorKind::kProtocol, "result has no dtype");
}

SEXP ResultToR(const Result& r, bool want_integer64, bool bit64_available, SEXP like,
               const std::function<bool()>& input_na) {
  const auto& shape = r.desc.shape;
  if (shape.size() >= 2) {
    for (uint64_t d : shape)
      if (d > static_cast<uint64_t>(INT_MAX))
        throw Error(ErrorKind::kUsage,
                    fmt::format("result of shape {} has a dimension beyond R's limit of {}",
                                r.desc.Describe(), INT_MAX));
    if (r.desc.order != Order::kF)
      throw Error(ErrorKind::kProtocol, fmt::format("result {} is not column-major", r.desc.Describe()));
  }
  SEXP ans = PROTECT(ResultVector(r, want_integer64, bit64_available, input_na));
  // Names and dimnames carry over when the result has the input's shape.
  const bool same_shape = like != R_NilValue && ShapeOf(like) == shape;
  RCall([&] {
    if (shape.size() >= 2) {
      SEXP dim = PROTECT(Rf_allocVector(INTSXP, static_cast<R_xlen_t>(shape.size())));
      for (size_t i = 0; i < shape.size(); ++i) INTEGER(dim)[i] = static_cast<int>(shape[i]);
      Rf_setAttrib(ans, R_DimSymbol, dim);
      UNPROTECT(1);
    }
    if (same_shape) {
      SEXP dn = Rf_getAttrib(like, R_DimNamesSymbol);
      SEXP nm = Rf_getAttrib(like, R_NamesSymbol);
      if (shape.size() >= 2 && dn != R_NilValue) Rf_setAttrib(ans, R_DimNamesSymbol, dn);
      if (shape.size() == 1 && nm != R_NilValue) Rf_setAttrib(ans, R_NamesSymbol, nm);
    }
  });
  UNPROTECT(1);
  return ans;
}

// The error as list(ok = FALSE, kind, message, ...). Text fields are made
// valid UTF-8 and marked so (a Python message or traceback may hold any
// bytes).
SEXP ErrorInfo(const Error& e) {
  SEXP out = PROTECT(NamedList({"ok", "kind", "message", "script", "python_type", "traceback",
                                "exit_status", "signal", "warnings"}));
  SetField(out, "ok", Rf_ScalarLogical(FALSE));
  SetField(out, "kind", Str(ErrorKindName(e.kind())));
  SetField(out, "message", Str(e.what()));
  SetField(out, "script", Str(e.script()));
  SetField(out, "python_type", Str(e.python_type()));
  SetField(out, "traceback", Str(e.python_traceback()));
  SetField(out, "exit_status", Rf_ScalarInteger(e.exit_status()));
  SetField(out, "signal", Rf_ScalarInteger(e.signal()));
  std::vector<std::string> warnings;
  for (const std::string& w : e.warnings())
    warnings.push_back(fmt::format("script '{}': {}", e.script(), w));
  SetField(out, "warnings", StrVec(warnings));
  UNPROTECT(1);
  return out;
}

}  // namespace

// [[Rcpp::init]]
void pyrmap_init_views(DllInfo* dll) { InitViewClasses(dll); }

// Inputs from this size on may first collect dead views (pyrmap_run).
constexpr uint64_t kCollectAtInputBytes = uint64_t{1} << 20;

// Runs `scripts` over `data` in `mode` ("run", "shared" or "pipeline"), on
// the warm workers of `pool` (a pool handle) unless it is NULL; a one-shot
// run makes its segments in `segment_dir` ("", "RAM", "DISK" or a path).
// Returns list(ok = TRUE, results = <list of R objects>) or an error list.
// [[Rcpp::export(.pyrmap_run)]]
SEXP pyrmap_run(SEXP data, std::vector<std::string> scripts, std::string mode, std::string dtype,
                std::string python, std::string package_dir, double timeout, int jobs,
                bool keep_intermediate, std::vector<std::string> args, bool bit64_available,
                SEXP pool, std::string segment_dir, int tables) {
  // Large mappings the call lets go of at its end (the input's, when R
  // keeps no view of it) are unmapped by a thread beside R after the call
  // returns (0.1 s for 800 MB); the next call waits for that before it
  // takes memory of its own, and so does sizing a segment in a directory
  // short of space meanwhile.
  AwaitUnmaps();
  std::vector<Result> results;
  struct ReleaseLater {
    std::vector<Result>& results;
    ~ReleaseLater() {
      DeferUnmaps defer;
      results.clear();
    }
  } release_later{results};
  bool input_integer64 = false;
  try {
    const bool as_table = NeedsTable(data, !dtype.empty());
    Input input;
    TableOrigins origins;  // of a table input: columns returned unchanged come back as themselves
    if (as_table) {
      if (!dtype.empty())
        throw Error(ErrorKind::kUsage,
                    fmt::format("dtype = '{}' applies to one numeric vector, matrix or array; a {} "
                                "goes with each element's own type (leave dtype out)",
                                dtype, Rf_inherits(data, "data.frame") ? "data.frame"
                                       : TYPEOF(data) == VECSXP      ? "list"
                                                                     : "classed or character vector"));
      input = TableInputOf(data, &origins);
    } else {
      RKind kind = ClassifyInput(data);
      input_integer64 = kind == RKind::kInteger64;
      Dtype to = DefaultDtype(kind);
      if (!dtype.empty()) {
        auto d = ParseDtype(dtype);
        if (!d)
          throw Error(ErrorKind::kUsage,
                      fmt::format("unknown dtype '{}' (choose one of: {})", dtype, DtypeNameList()));
        to = *d;
      }
      input = MakeInput(data, kind, to);
    }
    RunOptions o;
    o.python = python;
    o.package_dir = package_dir;
    o.timeout_seconds = timeout;
    o.script_args = args;
    o.result_order = ResultOrder::kF;
    o.result_map = MapMode::kPrivate;
    o.jobs = jobs;
    o.segment_dir = segment_dir;
    o.tables = static_cast<uint32_t>(tables);
    o.input_refs = as_table;
    o.on_stdout = [](std::string_view s) { Rprintf("%.*s", static_cast<int>(s.size()), s.data()); };
    o.on_stderr = [](std::string_view s) { REprintf("%.*s", static_cast<int>(s.size()), s.data()); };
    o.check_interrupt = CheckInterrupt;
    std::vector<Script> parsed;
    for (const auto& s : scripts) parsed.push_back(ParseScript(s));
    // The input's segment is made below. Unreachable views of earlier
    // results (say, the one a loop's `y <- run_python(...)` just dropped)
    // hold their segments until R collects; when what views took since the
    // last collection and this input together pass the bound (views.h),
    // collect now, so that their memory is free before this input's is
    // taken: the peak is lower, and the new segment gets pages the kernel
    // has just freed instead of untouched ones.
    // (The dead views' large mappings are unmapped beside this call.)
    // (Only for inputs of kCollectAtInputBytes or more: the bound is read
    // from /proc, which a call of a few kB should not pay for.)
    if (input.segment.empty() && input.desc.nbytes >= kCollectAtInputBytes) {
      DeferUnmaps defer;
      CollectIfDue(input.desc.nbytes);
    }
    if (Pool* p = PoolOf(pool)) {
      if (mode == "run") {
        results.push_back(p->Run(parsed.at(0), input, o));
      } else if (mode == "shared") {
        results = p->Shared(parsed, input, o);
      } else {
        results = p->Pipeline(parsed, input, o, keep_intermediate);
      }
    } else if (mode == "run") {
      results.push_back(RunScript(parsed.at(0), input, o));
    } else if (mode == "shared") {
      results = RunShared(parsed, input, o);
    } else {
      results = RunPipeline(parsed, input, o, keep_intermediate);
    }
    // R objects are made after the core is done: nothing below can leave a
    // segment behind, and conversion errors are still reported as lists.
    // R's own errors here (an allocation failing) come as RUnwind: the
    // results' mappings are released before R's error goes on.
    int na = -1;  // whether the input held NA: found out when first needed
    auto input_na = [&] {
      if (na < 0) na = !as_table && InputHoldsNA(data) ? 1 : 0;
      return na == 1;
    };
    // (Rcpp::List protects for its lifetime: a core error thrown by a later
    // conversion leaves the protection stack balanced.)
    SEXP made = R_NilValue;
    RCall([&] { made = Rf_allocVector(VECSXP, static_cast<R_xlen_t>(results.size())); });
    Rcpp::List list(made);
    for (size_t i = 0; i < results.size(); ++i)
      SET_VECTOR_ELT(list, static_cast<R_xlen_t>(i),
                     results[i].kind == kKindTable
                         ? TableToR(results[i], bit64_available, as_table ? &origins : nullptr)
                         : ResultToR(results[i], input_integer64, bit64_available,
                                     as_table ? R_NilValue : data, input_na));
    std::vector<std::string> warnings;
    for (const Result& r : results)
      for (const std::string& w : r.warnings)
        warnings.push_back(fmt::format("script '{}': {}", r.script.Display(), w));
    SEXP out = R_NilValue;
    RCall([&] {
      out = PROTECT(NamedList({"ok", "results", "warnings"}));
      SetField(out, "ok", Rf_ScalarLogical(TRUE));
      SetField(out, "results", list);
      SetField(out, "warnings", StrVec(warnings));
      UNPROTECT(1);
    });
    return out;
  } catch (const RUnwind& u) {
    // Rcpp's wrapper resumes R's error after its own frames are gone (and
    // releases the token once: ours stays preserved for the next time).
    R_PreserveObject(u.token);
    throw Rcpp::LongjumpException(u.token);
  } catch (const Error& e) {
    return ErrorInfo(e);
  } catch (const std::exception& e) {
    return ErrorInfo(Error(ErrorKind::kSystem, fmt::format("internal error: {}", e.what())));
  }
}
