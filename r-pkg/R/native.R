# Entry points of the memshare half (src/registry_r.cpp). They are plain
# .Call routines, not Rcpp functions: a cluster worker that loads the
# package to map views does not load Rcpp's R side (about 13 MB per worker).

# `dir`: the segment directory ("" = PYRMAP_SEGMENT_DIR, else /dev/shm;
# "RAM", "DISK" or a path).
.pyrmap_register <- function(ns, var, x, dir = .segment_dir()) .Call(pyrmap_register, ns, var, x, dir)
.pyrmap_open <- function(ns, var, dir = .segment_dir()) .Call(pyrmap_open, ns, var, dir)
.pyrmap_generation <- function(ns, var, dir = .segment_dir()) {
  g <- .Call(pyrmap_generation, ns, var, dir)
  if (is.list(g)) .raise(g, .user_call())  # a name that cannot be used
  g
}
.pyrmap_page_info <- function(ns, var, dir = .segment_dir()) .Call(pyrmap_page_info, ns, var, dir)
.pyrmap_release <- function(ns, var, dir = .segment_dir()) .Call(pyrmap_release, ns, var, dir)
.pyrmap_slice <- function(m, margin, j) .Call(pyrmap_slice, m, margin, j)
.pyrmap_view_page <- function(x) .Call(pyrmap_view_page, x)
.pyrmap_view_info <- function(x) .Call(pyrmap_view_info, x)
.pyrmap_collect_garbage <- function(dirs = .segment_dir()) .Call(pyrmap_collect_garbage, dirs)
.pyrmap_segment_dir <- function(choice) .Call(pyrmap_choose_segment_dir, choice)
.pyrmap_remove_dead_segments <- function() .Call(pyrmap_remove_dead_segments)
.pyrmap_mapping_bytes <- function(x) .Call(pyrmap_mapping_bytes, x)
.pyrmap_view_memory <- function() .Call(pyrmap_view_memory)

# run_python()'s entry point (.pyrmap_run, src/run_r.cpp) is an Rcpp
# function and needs Rcpp's namespace loaded (Rcpp's C callables). The
# package does not import Rcpp, for the workers' sake, so the caller loads it.
.need_rcpp <- function() {
  # `Rcpp::` loads the namespace (and is the use R CMD check looks for).
  if (!isNamespaceLoaded("Rcpp")) force(Rcpp::evalCpp)
  invisible(NULL)
}
