// pool_r.cpp — python_pool(): warm Python workers held by an R handle.
//
// The handle is an external pointer to a Pool; its finalizer closes the
// pool (the workers are killed with their process groups; their areas are
// unnamed, so nothing is left in any directory). Errors come back as the
// plain lists run_r.cpp makes, raised as classed conditions in R.
#include <Rcpp.h>

#include <fmt/format.h>

#include "error.h"
#include "pool_r.h"

using namespace pyrmap;

namespace {

void Finalize(SEXP ptr) {
  auto* pool = static_cast<Pool*>(R_ExternalPtrAddr(ptr));
  if (!pool) return;
  R_ClearExternalPtr(ptr);
  try {
    delete pool;
  } catch (...) {
  }
}

SEXP Tag() {
  static SEXP tag = Rf_install("pyrmap_pool");
  return tag;
}

Rcpp::List Failure(const Error& e) {
  return Rcpp::List::create(Rcpp::Named("ok") = false, Rcpp::Named("kind") = ErrorKindName(e.kind()),
                            Rcpp::Named("message") = std::string(e.what()));
}

}  // namespace

namespace pyrmap::r {

Pool* PoolOf(SEXP x) {
  if (TYPEOF(x) != EXTPTRSXP || R_ExternalPtrTag(x) != Tag()) return nullptr;
  auto* pool = static_cast<Pool*>(R_ExternalPtrAddr(x));
  if (!pool || pool->closed()) throw Error(ErrorKind::kUsage, "the pool is closed");
  return pool;
}

}  // namespace pyrmap::r

// Starts a pool: list(ok = TRUE, pool = <external pointer>) or an error list.
// [[Rcpp::export(.pyrmap_pool_new)]]
SEXP pyrmap_pool_new(int workers, std::string python, std::string package_dir,
                     std::string segment_dir) {
  Pool* pool = nullptr;
  try {
    PoolOptions o;
    o.workers = workers;
    o.python = python;
    o.package_dir = package_dir;
    // "", "RAM", "DISK" or a path, as for the run functions (segment_dir.h).
    o.segment_dir = SegmentDir::Choose(segment_dir).path();
    pool = new Pool(o);
  } catch (const Error& e) {
    return Failure(e);
  } catch (const std::exception& e) {
    return Failure(Error(ErrorKind::kSystem, fmt::format("internal error: {}", e.what())));
  }
  SEXP ptr = PROTECT(R_MakeExternalPtr(pool, Tag(), R_NilValue));
  R_RegisterCFinalizerEx(ptr, Finalize, TRUE);
  Rcpp::List out = Rcpp::List::create(Rcpp::Named("ok") = true, Rcpp::Named("pool") = ptr);
  UNPROTECT(1);
  return out;
}

// Closes the pool (idempotent).
// [[Rcpp::export(.pyrmap_pool_close)]]
void pyrmap_pool_close(SEXP ptr) {
  if (TYPEOF(ptr) != EXTPTRSXP || R_ExternalPtrTag(ptr) != Tag()) Rcpp::stop("not a pyrmap pool");
  auto* pool = static_cast<Pool*>(R_ExternalPtrAddr(ptr));
  if (pool) pool->Close();
}

// list(closed, python, segment_dir, pid, calls, scripts, restarts) — one
// element per worker in the vectors.
// [[Rcpp::export(.pyrmap_pool_info)]]
Rcpp::List pyrmap_pool_info(SEXP ptr) {
  if (TYPEOF(ptr) != EXTPTRSXP || R_ExternalPtrTag(ptr) != Tag()) Rcpp::stop("not a pyrmap pool");
  auto* pool = static_cast<Pool*>(R_ExternalPtrAddr(ptr));
  if (!pool || pool->closed())
    return Rcpp::List::create(Rcpp::Named("closed") = true);
  std::vector<WorkerInfo> ws = pool->Workers();
  Rcpp::IntegerVector pid(ws.size()), scripts(ws.size());
  Rcpp::NumericVector calls(ws.size()), restarts(ws.size());
  for (size_t i = 0; i < ws.size(); ++i) {
    pid[i] = ws[i].pid;
    calls[i] = static_cast<double>(ws[i].calls);
    scripts[i] = static_cast<int>(ws[i].scripts);
    restarts[i] = static_cast<double>(ws[i].restarts);
  }
  return Rcpp::List::create(Rcpp::Named("closed") = false,
                            Rcpp::Named("python") = pool->options().python,
                            Rcpp::Named("segment_dir") = pool->options().segment_dir,
                            Rcpp::Named("pid") = pid, Rcpp::Named("calls") = calls,
                            Rcpp::Named("scripts") = scripts, Rcpp::Named("restarts") = restarts);
}
