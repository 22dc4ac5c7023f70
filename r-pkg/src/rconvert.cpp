#include "rconvert.h"

#include <fmt/format.h>

#include "error.h"

namespace pyrmap::r {

RKind ClassifyInput(SEXP x) {
  auto refuse = [&](const std::string& what, const std::string& hint) -> RKind {
    throw Error(ErrorKind::kUsage,
                fmt::format("data of {} is not supported: give a numeric, integer, logical, raw or "
                            "character vector, matrix or array, a factor, Date or POSIXct, a "
                            "data.frame or a list of these{}",
                            what, hint));
  };
  const std::string type = Rf_type2char(TYPEOF(x));
  // A class attribute other than matrix, array and integer64 gives the
  // numbers a meaning (dates, times, levels, ...) that Python would not see.
  SEXP cls = Rf_getAttrib(x, R_ClassSymbol);
  for (R_xlen_t i = 0; cls != R_NilValue && i < XLENGTH(cls); ++i) {
    const std::string c = CHAR(STRING_ELT(cls, i));
    if (c != "matrix" && c != "array" && c != "integer64")
      return refuse(fmt::format("class '{}' (type '{}')", c, type),
                    " (unclass() passes the bare numbers)");
  }
  switch (TYPEOF(x)) {
    case REALSXP: return Rf_inherits(x, "integer64") ? RKind::kInteger64 : RKind::kDouble;
    case INTSXP: return RKind::kInteger;
    case LGLSXP: return RKind::kLogical;
    case RAWSXP: return RKind::kRaw;
    default: return refuse(fmt::format("type '{}'", type), "");
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

Dtype SourceDtype(RKind kind) {
  switch (kind) {
    case RKind::kDouble: return Dtype::kFloat64;
    case RKind::kInteger:
    case RKind::kLogical: return Dtype::kInt32;
    case RKind::kRaw: return Dtype::kUInt8;
    case RKind::kInteger64: return Dtype::kInt64;
  }
  return Dtype::kFloat64;
}

InputSource RSource(SEXP x, RKind kind) {
  InputSource src;
  src.dtype = SourceDtype(kind);
  src.rules = ConvertRules{"data", 1, Missing::kSentinels};
  src.data = static_cast<const uint8_t*>(RData(x));
  return src;
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

}  // namespace pyrmap::r
