#include "rconvert.h"

#include <R.h>
#include <R_ext/Arith.h>

#include <cmath>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "error.h"

namespace pyrmap::r {

namespace {

constexpr double kTwo63 = 9223372036854775808.0;

[[noreturn]] void DoesNotFit(const std::string& value, uint64_t pos, Dtype to) {
  throw Error(ErrorKind::kUsage, fmt::format("data[{}] = {} cannot be converted to dtype '{}' exactly",
                                             pos + 1, value, DtypeName(to)));
}

[[noreturn]] void MissingNotAllowed(uint64_t pos, Dtype to) {
  throw Error(ErrorKind::kUsage,
              fmt::format("data[{}] is NA, which dtype '{}' cannot represent", pos + 1, DtypeName(to)));
}

// One element, read with its R semantics.
struct Elem {
  bool na;
  bool is_double;
  double d;     // when is_double
  int64_t i;    // otherwise
};

Elem Read(RKind k, const uint8_t* p) {
  switch (k) {
    case RKind::kDouble: {
      double v;
      std::memcpy(&v, p, 8);
      return {static_cast<bool>(R_IsNA(v)), true, v, 0};
    }
    case RKind::kInteger:
    case RKind::kLogical: {
      int32_t v;
      std::memcpy(&v, p, 4);
      return {v == NA_INTEGER, false, 0, v};
    }
    case RKind::kRaw: return {false, false, 0, p[0]};
    case RKind::kInteger64: {
      int64_t v;
      std::memcpy(&v, p, 8);
      return {v == INT64_MIN, false, 0, v};
    }
  }
  return {false, false, 0, 0};
}

std::string Show(const Elem& e) {
  if (e.is_double) return std::isnan(e.d) ? "NaN" : fmt::format("{}", e.d);
  return fmt::format("{}", e.i);
}

// The integer value of `e` within [lo, hi], or an error.
int64_t Integral(const Elem& e, int64_t lo, int64_t hi, uint64_t pos, Dtype to) {
  if (!e.is_double) {
    if (e.i < lo || e.i > hi) DoesNotFit(Show(e), pos, to);
    return e.i;
  }
  // The range is checked on the integer: static_cast<double>(INT64_MIN + 1)
  // rounds to -2^63, which would let -2^63 through as INT64_MIN (= NA).
  if (!std::isfinite(e.d) || std::trunc(e.d) != e.d || e.d >= kTwo63 || e.d < -kTwo63)
    DoesNotFit(Show(e), pos, to);
  const int64_t v = static_cast<int64_t>(e.d);
  if (v < lo || v > hi) DoesNotFit(Show(e), pos, to);
  return v;
}

void Write(const Elem& e, Dtype to, uint8_t* q, uint64_t pos) {
  switch (to) {
    case Dtype::kFloat64: {
      double v;
      if (e.na) {
        v = NA_REAL;
      } else if (e.is_double) {
        v = e.d;
      } else {
        v = static_cast<double>(e.i);
        if (v >= kTwo63 || static_cast<int64_t>(v) != e.i) DoesNotFit(Show(e), pos, to);
      }
      std::memcpy(q, &v, 8);
      return;
    }
    case Dtype::kFloat32: {
      if (e.na) {
        std::memcpy(q, &kFloat32NA, 4);
        return;
      }
      float f;
      if (e.is_double) {
        f = static_cast<float>(e.d);
        if (std::isinf(f) && std::isfinite(e.d)) DoesNotFit(Show(e), pos, to);
      } else {
        f = static_cast<float>(e.i);
        double back = static_cast<double>(f);
        if (back >= kTwo63 || static_cast<int64_t>(back) != e.i) DoesNotFit(Show(e), pos, to);
      }
      std::memcpy(q, &f, 4);
      return;
    }
    case Dtype::kInt32: {
      // INT32_MIN is R's NA_integer_, so it is not a value.
      int32_t v = e.na ? NA_INTEGER
                       : static_cast<int32_t>(Integral(e, -2147483647, 2147483647, pos, to));
      std::memcpy(q, &v, 4);
      return;
    }
    case Dtype::kInt64: {
      int64_t v = e.na ? INT64_MIN : Integral(e, INT64_MIN + 1, INT64_MAX, pos, to);
      std::memcpy(q, &v, 8);
      return;
    }
    case Dtype::kUInt8:
      if (e.na) MissingNotAllowed(pos, to);
      q[0] = static_cast<uint8_t>(Integral(e, 0, 255, pos, to));
      return;
    case Dtype::kBool:
      if (e.na) MissingNotAllowed(pos, to);
      q[0] = static_cast<uint8_t>(Integral(e, 0, 1, pos, to));
      return;
    case Dtype::kNone: break;
  }
}

}  // namespace

RKind ClassifyInput(SEXP x) {
  auto refuse = [&](const std::string& what) -> RKind {
    throw Error(ErrorKind::kUsage,
                fmt::format("data of {} is not supported: give a numeric, integer, logical or raw "
                            "vector, matrix or array",
                            what));
  };
  if (Rf_isFactor(x)) return refuse("class 'factor'");
  if (Rf_isFrame(x)) return refuse("class 'data.frame'");
  switch (TYPEOF(x)) {
    case REALSXP: return Rf_inherits(x, "integer64") ? RKind::kInteger64 : RKind::kDouble;
    case INTSXP: return RKind::kInteger;
    case LGLSXP: return RKind::kLogical;
    case RAWSXP: return RKind::kRaw;
    default: return refuse(fmt::format("type '{}'", Rf_type2char(TYPEOF(x))));
  }
}

Dtype DefaultDtype(RKind kind) {
  switch (kind) {
    case RKind::kDouble: return Dtype::kFloat64;
    case RKind::kInteger: return Dtype::kInt32;
    case RKind::kLogical: return Dtype::kBool;
    case RKind::kRaw: return Dtype::kUInt8;
    case RKind::kInteger64: return Dtype::kInt64;
  }
  return Dtype::kFloat64;
}

bool SameBytes(RKind kind, Dtype dtype) {
  return (kind == RKind::kDouble && dtype == Dtype::kFloat64) ||
         (kind == RKind::kInteger && dtype == Dtype::kInt32) ||
         (kind == RKind::kLogical && dtype == Dtype::kInt32) ||
         (kind == RKind::kRaw && dtype == Dtype::kUInt8) ||
         (kind == RKind::kInteger64 && dtype == Dtype::kInt64);
}

const void* RData(SEXP x) {
  switch (TYPEOF(x)) {
    case REALSXP: return REAL(x);
    case INTSXP: return INTEGER(x);
    case LGLSXP: return LOGICAL(x);
    case RAWSXP: return RAW(x);
    default: return nullptr;
  }
}

std::vector<uint64_t> ShapeOf(SEXP x) {
  SEXP dim = Rf_getAttrib(x, R_DimSymbol);
  std::vector<uint64_t> shape;
  if (dim == R_NilValue) {
    shape.push_back(static_cast<uint64_t>(XLENGTH(x)));
  } else {
    for (R_xlen_t i = 0; i < XLENGTH(dim); ++i) shape.push_back(static_cast<uint64_t>(INTEGER(dim)[i]));
  }
  return shape;
}

size_t RItemSize(RKind kind) {
  switch (kind) {
    case RKind::kDouble:
    case RKind::kInteger64: return 8;
    case RKind::kInteger:
    case RKind::kLogical: return 4;
    case RKind::kRaw: return 1;
  }
  return 0;
}

void ConvertFromR(RKind from, const void* src, Dtype to, void* dst, uint64_t count, uint64_t first) {
  const auto* p = static_cast<const uint8_t*>(src);
  auto* q = static_cast<uint8_t*>(dst);
  const size_t in = RItemSize(from), out = ItemSize(to);
  for (uint64_t i = 0; i < count; ++i) Write(Read(from, p + i * in), to, q + i * out, first + i);
}

}  // namespace pyrmap::r
