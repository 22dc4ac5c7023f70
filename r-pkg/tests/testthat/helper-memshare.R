# Helpers for the memshare-compatible half (test-memshare-*.R,
# test-mem-apply*.R). Names start with ms_ so that they never clash with
# helper-pyrmap.R, whose general helpers (shm_snapshot(), my_uid(),
# proc_alive(), wait_until(), view_info()) these use as well.

# ---- namespaces ---------------------------------------------------------------

# A namespace of its own for each test (pid and a counter), so that
# concurrent test runs never share a page.
ms_ns <- local({
  k <- 0L
  function(label = "t") {
    k <<- k + 1L
    sprintf("mstest-%d-%s-%d", Sys.getpid(), label, k)
  }
})

# ---- /dev/shm ---------------------------------------------------------------------

# The owner pid and namespace recorded in a page's header (see
# src/registry.h), or NULL if `name` is not a readable page.
ms_page_header <- function(name) {
  path <- file.path("/dev/shm", name)
  h <- tryCatch(suppressWarnings(readBin(path, "raw", 640L)), error = function(e) raw())
  if (length(h) < 640L || !identical(h[1:8], as.raw(c(0x89, 0x50, 0x59, 0x52, 0x50, 0x41, 0x47, 0x45))))
    return(NULL)
  pid <- sum(as.numeric(h[17:24]) * 256^(0:7))
  str <- function(b) { b <- b[seq_len(match(as.raw(0), b, nomatch = length(b) + 1L) - 1L)]; rawToChar(b) }
  list(owner_pid = pid, ns = str(h[129:384]), var = str(h[385:640]))
}

# Segments that appeared since `snapshot` and are ours: call segments of
# `pids` (this process and our workers), pages owned by `pids`, and pages of
# the test namespaces (whoever owns them, e.g. a crashed child).
ms_leftovers <- function(snapshot, pids = Sys.getpid()) {
  pids <- unique(c(Sys.getpid(), pids))
  new <- setdiff(shm_snapshot(), snapshot)
  uid <- my_uid()
  mine <- vapply(new, function(n) {
    if (any(startsWith(n, sprintf("pyrmap-%s-%d-", uid, as.integer(pids))))) return(TRUE)
    h <- ms_page_header(n)
    !is.null(h) && (h$owner_pid %in% pids || startsWith(h$ns, "mstest-") ||
                      startsWith(h$ns, sprintf(".pyrmap.%d.", Sys.getpid())))
  }, logical(1))
  new[mine]
}

# The page (segment name) of a registered variable, read from a view.
ms_segment_of <- function(ns, var) {
  v <- retrieveViews(ns, var)[[1L]]
  on.exit(releaseViews(ns, var))
  view_info(v)$segment
}

# ---- clusters ----------------------------------------------------------------------

# Every cluster a test file makes, so that the file's last test can stop them
# all and check that their processes are gone.
ms_clusters <- new.env(parent = emptyenv())
ms_clusters$all <- list()
ms_clusters$pids <- integer()

ms_worker_pids <- function(cl) unlist(parallel::clusterCall(cl, Sys.getpid))

ms_cluster <- function(n = 2L) {
  cl <- parallel::makePSOCKcluster(n)
  ms_clusters$all[[length(ms_clusters$all) + 1L]] <- cl
  ms_clusters$pids <- c(ms_clusters$pids, ms_worker_pids(cl))
  cl
}

# Stops the workers of `cl` that are alive and closes the connections of
# the dead ones (stopCluster() stops at the first dead worker).
ms_stop_cluster <- function(cl) {
  for (i in seq_along(cl))
    tryCatch(parallel::stopCluster(cl[i]), error = function(e) try(close(cl[[i]]$con), silent = TRUE))
}

# The pids of the engine's workers (memApply() without CLUSTER), 0 for a
# slot without one; integer(0) without an engine.
ms_engine_pids <- function() {
  info <- pyrmap:::.engine_info()
  if (is.null(info)) integer() else info$pids
}

# Remembers the engine's workers (for the end-of-file check); returns their pids.
ms_note_engine <- function() {
  pids <- ms_engine_pids()
  ms_clusters$pids <- unique(c(ms_clusters$pids, pids[pids > 0]))
  invisible(pids)
}

# Stops the clusters of this file and the engine's workers; returns the pids
# of workers still running after a grace period (should be none).
ms_stop_all_clusters <- function() {
  ms_note_engine()
  for (cl in ms_clusters$all) ms_stop_cluster(cl)
  ms_clusters$all <- list()
  pyrmap:::.engine_close()
  pids <- ms_clusters$pids
  wait_until(function() !any(vapply(pids, proc_alive, logical(1))), timeout = 15)
  pids[vapply(pids, proc_alive, logical(1))]
}

# The end of every memshare test file: no worker left, nothing left in
# /dev/shm, nothing left registered or viewed.
ms_expect_clean_end <- function(snapshot) {
  pids <- ms_clusters$pids
  alive <- ms_stop_all_clusters()
  testthat::expect_identical(alive, integer(0))
  left <- character()
  wait_until(function() {
    left <<- ms_leftovers(snapshot, pids)
    length(left) == 0L
  }, timeout = 5)
  testthat::expect(length(left) == 0L,
                   sprintf("segments left in /dev/shm: %s", paste(left, collapse = ", ")))
  mine <- function(l) grep("^mstest-|^\\.pyrmap\\.", unlist(l), value = TRUE)
  testthat::expect_identical(mine(pageList()), character(0))
  testthat::expect_identical(mine(viewList()), character(0))
  ms_clusters$pids <- integer()
}

# ---- functions for workers -----------------------------------------------------------

# `f` with the global environment, so that sending it to a worker does not
# also send the test's local variables (the big matrices among them).
ms_fn <- function(f) {
  environment(f) <- globalenv()
  f
}

# ---- C code writing through a view's data pointer ----------------------------------------

# Compiles (once per session) a tiny C routine ms_poke(x, value) that does
# REAL(x)[0] = value, bypassing R's copy on write; returns the path of the
# shared library (dyn.load it in every process that uses it).
ms_poke_lib <- local({
  lib <- NULL
  function() {
    if (!is.null(lib) && file.exists(lib)) return(lib)
    dir <- tempfile("ms-poke-")
    dir.create(dir)
    src <- file.path(dir, "ms_poke.c")
    writeLines(c(
      "#include <Rinternals.h>",
      "SEXP ms_poke(SEXP x, SEXP value) {",
      "  REAL(x)[0] = Rf_asReal(value);",
      "  return R_NilValue;",
      "}"), src)
    out <- system2(file.path(R.home("bin"), "R"), c("CMD", "SHLIB", shQuote(src)),
                   stdout = TRUE, stderr = TRUE)
    so <- file.path(dir, paste0("ms_poke", .Platform$dynlib.ext))
    if (!file.exists(so)) stop("cannot compile ms_poke.c:\n", paste(out, collapse = "\n"))
    lib <<- so
    lib
  }
})

# ---- Python ------------------------------------------------------------------------

# A script (written to a temporary file) that records, in the file named by
# sys.argv[1], the input segment (PYRMAP_DATA), the type of what finally
# owns the array's memory
# and the /proc/self/maps file that holds its first element, then returns
# the input times two.
ms_zero_copy_script <- local({
  path <- NULL
  function() {
    if (!is.null(path) && file.exists(path)) return(path)
    p <- tempfile("ms-zero-copy-", fileext = ".py")
    writeLines(c(
      "import os, sys",
      "from pyrmap import process_via_mmap",
      "",
      "def mapping_of(addr):",
      "    with open('/proc/self/maps') as f:",
      "        for line in f:",
      "            parts = line.split()",
      "            lo, hi = (int(v, 16) for v in parts[0].split('-'))",
      "            if lo <= addr < hi:",
      "                return parts[5] if len(parts) > 5 else ''",
      "    return ''",
      "",
      "def root(a):",
      "    while getattr(a, 'base', None) is not None:",
      "        a = a.base",
      "    return getattr(a, 'obj', a)",
      "",
      "@process_via_mmap",
      "def process(data):",
      "    with open(sys.argv[1], 'w') as f:",
      "        f.write('data: %s\\n' % os.environ['PYRMAP_DATA'])",
      "        f.write('base: %s\\n' % type(root(data)).__name__)",
      "        f.write('owndata: %s\\n' % data.flags.owndata)",
      "        f.write('mapping: %s\\n' % mapping_of(data.__array_interface__['data'][0]))",
      "    return data * 2",
      "",
      "if __name__ == '__main__':",
      "    process()"), p)
    path <<- p
    p
  }
})

# Runs the zero-copy script on `x`; returns list(value, info) where info is
# what the script recorded.
ms_run_zero_copy <- function(x) {
  rec <- tempfile("ms-rec-", fileext = ".dcf")
  on.exit(unlink(rec))
  value <- run_python(x, ms_zero_copy_script(), args = rec)
  info <- as.list(read.dcf(rec)[1L, ])
  list(value = value, info = info)
}

# ---- child R processes --------------------------------------------------------------

# Runs `code` in a new Rscript with this session's library paths; waits, and
# returns its output lines (stdout and stderr).
ms_rscript <- function(code) {
  file <- tempfile("ms-child-", fileext = ".R")
  on.exit(unlink(file))
  writeLines(code, file)
  env <- c(sprintf("R_LIBS=%s", shQuote(paste(.libPaths(), collapse = ":"))),
           sprintf("PYRMAP_PYTHON=%s", shQuote(pyrmap_python())))
  suppressWarnings(system2(file.path(R.home("bin"), "Rscript"), shQuote(file), env = env,
                           stdout = TRUE, stderr = TRUE))
}
