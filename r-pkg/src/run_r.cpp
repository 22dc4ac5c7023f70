// run_r.cpp — run_python() and family: R data in, core run, views out.
//
// The one place where core errors meet R for the run functions: every
// pyrmap::Error is caught here and returned as a plain list describing it;
// the R wrapper turns that into a classed condition. No R error is raised
// while core objects are alive (a longjmp would skip their cleanup).
#include <Rcpp.h>

#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "error.h"
#include "rconvert.h"
#include "registry.h"
#include "registry_r.h"
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

// The run's input: handed over without a copy when `x` is a view of a named
// segment with the same bytes; else written once (converted if asked).
Input MakeInput(SEXP x, RKind kind, Dtype to) {
  Input in;
  in.desc = ArrayDesc::Make(to, ShapeOf(x), Order::kF);
  const ViewSource* v = ViewOf(x);
  if (v && !v->segment.empty() && SameBytes(kind, to) && v->offset % kPayloadAlignment == 0 &&
      PageStillHolds(*v)) {
    in.segment = v->segment;
    in.segment_dir = v->dir;
    in.desc.offset = v->offset;
    return in;
  }
  if (!v && SameBytes(kind, to)) {
    std::string dir, segment;
    uint64_t offset = 0;
    if (RegisteredPayload(x, &dir, &segment, &offset)) {
      in.segment = segment;
      in.segment_dir = dir;
      in.desc.offset = offset;
      return in;
    }
  }
  const uint8_t* src = static_cast<const uint8_t*>(RData(x));
  const uint64_t count = in.desc.count;
  in.fill = [src, kind, to, count](Segment& seg, void (*check)(void*), void* arg) {
    if (SameBytes(kind, to)) {
      seg.Write(0, src, count * ItemSize(to), check, arg);
      return;
    }
    const uint64_t chunk = uint64_t{1} << 20;
    std::vector<uint8_t> buf(chunk * ItemSize(to));
    for (uint64_t i = 0; i < count; i += chunk) {
      if (check) check(arg);
      uint64_t k = std::min(chunk, count - i);
      ConvertFromR(kind, src + i * RItemSize(kind), to, buf.data(), k, i);
      seg.Write(i * ItemSize(to), buf.data(), k * ItemSize(to));
    }
  };
  return in;
}

// Checks an int64 result: true if every value (NA aside) is within 2^53.
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

ViewSource SourceOf(const Result& r) {
  ViewSource s;
  s.mapping = r.mapping;
  s.data = r.data();
  s.length = static_cast<R_xlen_t>(r.desc.count);
  return s;
}

// An R object for a result (not yet carrying dims). Zero-copy views for
// float64, int32, uint8 and integer64; converted copies otherwise.
SEXP ResultVector(const Result& r, bool want_integer64, bool bit64_available) {
  const R_xlen_t n = static_cast<R_xlen_t>(r.desc.count);
  const uint8_t* p = r.data();
  switch (r.desc.dtype) {
    case Dtype::kFloat64: return MakeView(REALSXP, SourceOf(r));
    case Dtype::kInt32: return MakeView(INTSXP, SourceOf(r));
    case Dtype::kUInt8: return MakeView(RAWSXP, SourceOf(r));
    case Dtype::kBool: {
      SEXP ans = PROTECT(Rf_allocVector(LGLSXP, n));
      int* q = LOGICAL(ans);
      for (R_xlen_t i = 0; i < n; ++i) q[i] = p[i] != 0;
      UNPROTECT(1);
      return ans;
    }
    case Dtype::kFloat32: {
      SEXP ans = PROTECT(Rf_allocVector(REALSXP, n));
      double* q = REAL(ans);
      for (R_xlen_t i = 0; i < n; ++i) {
        uint32_t bits;
        std::memcpy(&bits, p + 4 * i, 4);
        float f;
        std::memcpy(&f, &bits, 4);
        q[i] = bits == kFloat32NA ? NA_REAL : static_cast<double>(f);
      }
      UNPROTECT(1);
      return ans;
    }
    case Dtype::kInt64: {
      int64_t bad = 0;
      uint64_t at = 0;
      bool fits = want_integer64 ? false : Int64FitsDouble(r, &bad, &at);
      if (fits) {
        SEXP ans = PROTECT(Rf_allocVector(REALSXP, n));
        double* q = REAL(ans);
        for (R_xlen_t i = 0; i < n; ++i) {
          int64_t v;
          std::memcpy(&v, p + 8 * i, 8);
          q[i] = v == INT64_MIN ? NA_REAL : static_cast<double>(v);
        }
        UNPROTECT(1);
        return ans;
      }
      if (!want_integer64 && !bit64_available)
        throw Error(ErrorKind::kUsage,
                    fmt::format("result[{}] = {} is an int64 beyond 2^53, which a double cannot hold "
                                "exactly; install the bit64 package to receive integer64",
                                at + 1, bad));
      // integer64 stores int64 bits in a double vector: a view needs no copy.
      SEXP ans = PROTECT(MakeView(REALSXP, SourceOf(r)));
      Rf_setAttrib(ans, R_ClassSymbol, Rf_mkString("integer64"));
      UNPROTECT(1);
      return ans;
    }
    case Dtype::kNone: break;
  }
  throw Error(ErrorKind::kProtocol, "result has no dtype");
}

SEXP ResultToR(const Result& r, bool want_integer64, bool bit64_available, SEXP like) {
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
  SEXP ans = PROTECT(ResultVector(r, want_integer64, bit64_available));
  if (shape.size() >= 2) {
    SEXP dim = PROTECT(Rf_allocVector(INTSXP, static_cast<R_xlen_t>(shape.size())));
    for (size_t i = 0; i < shape.size(); ++i) INTEGER(dim)[i] = static_cast<int>(shape[i]);
    Rf_setAttrib(ans, R_DimSymbol, dim);
    UNPROTECT(1);
  }
  // Names and dimnames carry over when the result has the input's shape.
  if (like != R_NilValue) {
    std::vector<uint64_t> in_shape = ShapeOf(like);
    if (in_shape == shape) {
      SEXP dn = Rf_getAttrib(like, R_DimNamesSymbol);
      SEXP nm = Rf_getAttrib(like, R_NamesSymbol);
      if (shape.size() >= 2 && dn != R_NilValue) Rf_setAttrib(ans, R_DimNamesSymbol, dn);
      if (shape.size() == 1 && nm != R_NilValue) Rf_setAttrib(ans, R_NamesSymbol, nm);
    }
  }
  UNPROTECT(1);
  return ans;
}

Rcpp::List ErrorInfo(const Error& e) {
  return Rcpp::List::create(
      Rcpp::Named("ok") = false, Rcpp::Named("kind") = ErrorKindName(e.kind()),
      Rcpp::Named("message") = std::string(e.what()), Rcpp::Named("script") = e.script(),
      Rcpp::Named("python_type") = e.python_type(), Rcpp::Named("traceback") = e.python_traceback(),
      Rcpp::Named("exit_status") = e.exit_status(), Rcpp::Named("signal") = e.signal());
}

}  // namespace

// [[Rcpp::init]]
void pyrmap_init_views(DllInfo* dll) { InitViewClasses(dll); }

// Runs `scripts` over `data` in `mode` ("run", "shared" or "pipeline"), with
// the call's segments in `segment_dir` ("", "RAM", "DISK" or a path).
// Returns list(ok = TRUE, results = <list of R objects>) or an error list.
// [[Rcpp::export(.pyrmap_run)]]
SEXP pyrmap_run(SEXP data, std::vector<std::string> scripts, std::string mode, std::string dtype,
                std::string python, std::string package_dir, double timeout, int jobs,
                bool keep_intermediate, std::vector<std::string> args, bool bit64_available,
                std::string segment_dir) {
  std::vector<Result> results;
  bool input_integer64 = false;
  try {
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
    Input input = MakeInput(data, kind, to);
    RunOptions o;
    o.python = python;
    o.package_dir = package_dir;
    o.timeout_seconds = timeout;
    o.script_args = args;
    o.result_order = ResultOrder::kF;
    o.result_map = MapMode::kPrivate;
    o.jobs = jobs;
    o.segment_dir = segment_dir;
    o.on_stdout = [](std::string_view s) { Rprintf("%.*s", static_cast<int>(s.size()), s.data()); };
    o.on_stderr = [](std::string_view s) { REprintf("%.*s", static_cast<int>(s.size()), s.data()); };
    o.check_interrupt = CheckInterrupt;
    std::vector<Script> parsed;
    for (const auto& s : scripts) parsed.push_back(ParseScript(s));
    if (mode == "run") {
      results.push_back(RunScript(parsed.at(0), input, o));
    } else if (mode == "shared") {
      results = RunShared(parsed, input, o);
    } else {
      results = RunPipeline(parsed, input, o, keep_intermediate);
    }
    // R objects are made after the core is done: nothing below can leave a
    // segment behind, and conversion errors are still reported as lists.
    Rcpp::List out(results.size());
    for (size_t i = 0; i < results.size(); ++i)
      out[i] = ResultToR(results[i], input_integer64, bit64_available, data);
    return Rcpp::List::create(Rcpp::Named("ok") = true, Rcpp::Named("results") = out);
  } catch (const Error& e) {
    return ErrorInfo(e);
  } catch (const std::exception& e) {
    return ErrorInfo(Error(ErrorKind::kSystem, fmt::format("internal error: {}", e.what())));
  }
}
