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

#include <R_ext/Rdynload.h>

#include <csetjmp>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>
#include <type_traits>

#include "error.h"
#include "utf8.h"

namespace pyrmap::r {

// ---- R errors through C++ frames ------------------------------------------
//
// An R error (or interrupt) raised inside an R API call unwinds with a
// longjmp, which would skip the destructors of the C++ objects between that
// call and the .Call entry point (mappings, strings, vectors). RCall(f) runs
// `f` under R_UnwindProtect: an R error in it becomes RUnwind, a C++
// exception that unwinds the C++ frames normally; the entry point catches it
// and, once its own C++ objects are gone, resumes R's unwinding with
// ContinueUnwind (see Entry below). `f` itself must hold no C++ object that
// needs a destructor (it may read and write through references).

struct RUnwind {
  SEXP token;
};

namespace detail {
inline SEXP UnwindToken() {
  static SEXP token = nullptr;
  if (token == nullptr) {
    token = R_MakeUnwindCont();
    R_PreserveObject(token);
  }
  return token;
}
}  // namespace detail

template <typename F>
void RCall(F&& f) {
  using Fn = std::remove_reference_t<F>;
  SEXP token = detail::UnwindToken();
  std::jmp_buf jmpbuf;
  if (setjmp(jmpbuf)) throw RUnwind{token};
  R_UnwindProtect(
      [](void* data) -> SEXP {
        (*static_cast<Fn*>(data))();
        return R_NilValue;
      },
      &f,
      [](void* jb, Rboolean jump) {
        if (jump) std::longjmp(*static_cast<std::jmp_buf*>(jb), 1);
      },
      &jmpbuf, token);
  SETCAR(token, R_NilValue);  // lets the continuation go
}

// The body of a .Call entry point: returns body()'s value, or on(error) for
// a pyrmap::Error (other std::exceptions become internal errors); an R
// error raised under RCall continues as an R error after every C++ frame of
// the body has been unwound.
template <typename F, typename OnError>
SEXP Entry(F&& body, OnError&& on_error) {
  SEXP token = nullptr;
  try {
    return body();
  } catch (const RUnwind& u) {
    token = u.token;
  } catch (const Error& e) {
    return on_error(e);
  } catch (const std::exception& e) {
    return on_error(Error(ErrorKind::kSystem, std::string("internal error: ") + e.what()));
  }
  R_ContinueUnwind(token);  // outside the catch block: the exception is gone
  return R_NilValue;        // not reached
}

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

// `s` as valid UTF-8 that R accepts: the core's repair (utf8.h: each byte
// that is not part of a well-formed sequence becomes U+FFFD), and NUL,
// which an R string cannot hold, becomes U+FFFD too.
inline std::string ValidUtf8(const std::string& s) {
  std::string out = pyrmap::ToValidUtf8(s);
  if (out.find('\0') == std::string::npos) return out;
  std::string no_nul;
  for (char c : out) {
    if (c == '\0') no_nul += "\xEF\xBF\xBD";
    else no_nul += c;
  }
  return no_nul;
}

// A character(1) in UTF-8 (made valid first).
inline SEXP Str(const std::string& s) {
  const std::string v = ValidUtf8(s);
  SEXP out = PROTECT(Rf_allocVector(STRSXP, 1));
  SET_STRING_ELT(out, 0, Rf_mkCharLenCE(v.data(), static_cast<int>(v.size()), CE_UTF8));
  UNPROTECT(1);
  return out;
}

// A character vector in UTF-8 (each made valid first).
inline SEXP StrVec(const std::vector<std::string>& v) {
  SEXP out = PROTECT(Rf_allocVector(STRSXP, static_cast<R_xlen_t>(v.size())));
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string s = ValidUtf8(v[i]);
    SET_STRING_ELT(out, static_cast<R_xlen_t>(i),
                   Rf_mkCharLenCE(s.data(), static_cast<int>(s.size()), CE_UTF8));
  }
  UNPROTECT(1);
  return out;
}

// CHARSXP `c` in UTF-8. A string of encoding "bytes" (which R refuses to
// translate) is a usage error naming `what`; R's own translation errors go
// through RCall.
inline std::string Utf8(SEXP c, const std::string& what) {
  if (Rf_getCharCE(c) == CE_BYTES)
    throw Error(ErrorKind::kUsage, what + " is a string of encoding \"bytes\", which has no "
                                          "UTF-8 form: give it in UTF-8 (enc2utf8()) or the native encoding");
  const char* s = nullptr;
  RCall([&] { s = Rf_translateCharUTF8(c); });
  return s;
}

// The string argument `x` (a non-NA character(1)); throws a usage error
// naming `what` otherwise.
inline std::string StringArg(SEXP x, const char* what) {
  if (TYPEOF(x) != STRSXP || XLENGTH(x) != 1 || STRING_ELT(x, 0) == NA_STRING)
    throw Error(ErrorKind::kUsage, std::string(what) + " must be a single string");
  return Utf8(STRING_ELT(x, 0), what);
}

}  // namespace pyrmap::r
