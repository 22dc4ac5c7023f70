// rlist.h — named lists and argument checks in the plain R API.
//
// The memshare half of the package (registry_r.cpp) is written against the
// R API alone, so that a cluster worker that loads the package does not load
// Rcpp's R side as well (about 13 MB more per worker). Only run_python()'s
// entry point uses Rcpp, and its R caller loads Rcpp first.
#pragma once

#ifndef R_NO_REMAP
#define R_NO_REMAP
#endif
#include <Rinternals.h>

#include <cstring>
#include <initializer_list>
#include <string>

#include "error.h"

namespace pyrmap::r {

// A list with the given names and NULL values (not protected).
inline SEXP NamedList(std::initializer_list<const char*> names) {
  SEXP out = PROTECT(Rf_allocVector(VECSXP, static_cast<R_xlen_t>(names.size())));
  SEXP nm = PROTECT(Rf_allocVector(STRSXP, static_cast<R_xlen_t>(names.size())));
  R_xlen_t i = 0;
  for (const char* n : names) SET_STRING_ELT(nm, i++, Rf_mkChar(n));
  Rf_setAttrib(out, R_NamesSymbol, nm);
  UNPROTECT(2);
  return out;
}

// Sets field `name` of a list made by NamedList. `value` is stored at once,
// so it may be a fresh, unprotected allocation.
inline void SetField(SEXP list, const char* name, SEXP value) {
  SEXP nm = Rf_getAttrib(list, R_NamesSymbol);
  for (R_xlen_t i = 0; i < XLENGTH(nm); ++i) {
    if (std::strcmp(CHAR(STRING_ELT(nm, i)), name) == 0) {
      SET_VECTOR_ELT(list, i, value);
      return;
    }
  }
  Rf_error("pyrmap internal error: no field '%s'", name);
}

// A character(1) in UTF-8.
inline SEXP Str(const std::string& s) {
  SEXP out = PROTECT(Rf_allocVector(STRSXP, 1));
  SET_STRING_ELT(out, 0, Rf_mkCharLenCE(s.data(), static_cast<int>(s.size()), CE_UTF8));
  UNPROTECT(1);
  return out;
}

// The string argument `x` (a non-NA character(1)); throws a usage error
// naming `what` otherwise.
inline std::string StringArg(SEXP x, const char* what) {
  if (TYPEOF(x) != STRSXP || XLENGTH(x) != 1 || STRING_ELT(x, 0) == NA_STRING)
    throw Error(ErrorKind::kUsage, std::string(what) + " must be a single string");
  return Rf_translateCharUTF8(STRING_ELT(x, 0));
}

}  // namespace pyrmap::r
