#' Warm Python workers
#'
#' A one-shot [run_python()] call starts a Python interpreter and imports
#' numpy: 100 ms or more, whatever the size of the data. A pool keeps
#' `workers` interpreters running, numpy imported and each script loaded,
#' so a small call costs well under a millisecond. Data still crosses as in
#' a one-shot call: the input is a read-only numpy array, the result comes
#' back without a copy (small payloads travel in an area each worker keeps
#' mapped, and are copied; large ones in shared-memory segments, as views).
#' A large input's segment is kept for 2 s after the call when nothing uses
#' it any more (no array the script kept, no view in R), and the next call's
#' input is written into it: a copy into pages already allocated instead of
#' fresh ones.
#' Python runs in its own processes: a crash in a script never takes R
#' down, and scripts run in parallel with R and with each other.
#'
#' Give the pool to [run_python()], [run_python_shared_data()] (its scripts
#' then run at once, one per worker) or [run_python_pipeline()] (its stages
#' run one after the other in one worker, each result handed to the next
#' stage within Python) with `pool = `. With `options(pyrmap.pool = TRUE)`
#' (or a number of workers), a session pool starts on first use and serves
#' every call that gives no `pool`; `pool = FALSE` asks for a one-shot run.
#'
#' @section How scripts run in a worker: A worker loads each script once as
#'   a module — not as `__main__`, so its `if __name__ == "__main__":` block
#'   does not run — and calls its `@process_via_mmap` function (or the
#'   function named with `fun`) for every call. Scripts written for the
#'   one-shot runs work unchanged. A script is loaded again when its file
#'   changes. What a script keeps at module level stays from one call to the
#'   next in that worker (a model loaded once, a cache) — and so do its side
#'   effects: code at the script's top level runs once per worker, not once
#'   per call, and `sys.argv` is set for each call (read it in the function,
#'   not at the top level). Use a one-shot call for a script whose top level
#'   must run every time.
#'
#' @section Faults: An exception in a script is an error of class
#'   `pyrmap_python_error` for that call; the worker keeps serving. A worker
#'   that dies (`os._exit()`, a segfault, a signal) is an error of class
#'   `pyrmap_script_error` for that call, and the worker is replaced; so is a
#'   worker that runs past `timeout` (`pyrmap_timeout_error`) or is
#'   interrupted with Ctrl-C. Workers die with R, even when R is killed, and
#'   a closed or garbage-collected pool leaves no process and no file.
#'
#' @param workers Number of Python processes.
#' @param python The interpreter, as for [run_python()].
#' @param ... Not used; named arguments must be spelled out.
#' @param x,con A pool.
#' @return `python_pool()`: a pool (class `pyrmap_pool`). `print()` shows its
#'   workers: process ids, calls served, scripts loaded, restarts.
#'   `close()`: invisibly `NULL`.
#' @examples
#' if (pyrmap_available()) {
#'   pool <- python_pool(workers = 2)
#'   script <- tempfile(fileext = ".py")
#'   writeLines(c("from pyrmap import process_via_mmap",
#'                "@process_via_mmap",
#'                "def process(data):",
#'                "    return data * 2"), script)
#'   for (i in 1:100) y <- run_python(runif(1000), script, pool = pool)
#'   pool
#'   close(pool)
#'   unlink(script)
#' }
#' @export
python_pool <- function(workers = 1L, python = NULL, ...) {
  .no_dots(...)
  if (!is.numeric(workers) || length(workers) != 1L || is.na(workers) || workers < 1 ||
      workers != trunc(workers))
    .usage_error("workers must be a single whole number >= 1")
  python <- pyrmap_python(python)
  .need_rcpp()
  info <- .pyrmap_pool_new(as.integer(workers), python, .python_package_dir(), .segment_dir())
  if (!isTRUE(info$ok)) .raise(info, sys.call())
  pool <- new.env(parent = emptyenv())
  pool$xp <- info$pool
  pool$python <- python
  pool$workers <- as.integer(workers)
  class(pool) <- "pyrmap_pool"
  pool
}

#' @rdname python_pool
#' @export
print.pyrmap_pool <- function(x, ...) {
  info <- .pyrmap_pool_info(x$xp)
  if (isTRUE(info$closed)) {
    cat("<pyrmap pool: closed>\n")
    return(invisible(x))
  }
  cat(sprintf("<pyrmap pool: %d worker%s, %s>\n", length(info$pid),
              if (length(info$pid) == 1L) "" else "s", info$python))
  df <- data.frame(worker = seq_along(info$pid), pid = info$pid, calls = info$calls,
                   scripts = info$scripts, restarts = info$restarts)
  print(df, row.names = FALSE)
  invisible(x)
}

#' @rdname python_pool
#' @export
close.pyrmap_pool <- function(con, ...) {
  .pyrmap_pool_close(con$xp)
  invisible(NULL)
}

# The pool a run function uses: the one given, the session pool when
# options(pyrmap.pool) asks for one (and the call's interpreter is its
# interpreter), or NULL for a one-shot run.
.pool_for <- function(pool, python) {
  if (isFALSE(pool)) return(NULL)
  if (inherits(pool, "pyrmap_pool")) {
    if (!is.null(python) && !identical(python, pool$python))
      .usage_error(sprintf("python = '%s', but the pool runs '%s'", python, pool$python))
    return(pool)
  }
  if (!is.null(pool) && !isTRUE(pool))
    .usage_error("pool must be a pool made by python_pool(), TRUE, FALSE or NULL")
  want <- if (isTRUE(pool)) TRUE else getOption("pyrmap.pool", FALSE)
  if (isFALSE(want) || is.null(want)) return(NULL)
  workers <- if (isTRUE(want)) 1L else want
  if (!is.numeric(workers) || length(workers) != 1L || is.na(workers) || workers < 1)
    .usage_error("options(pyrmap.pool) must be TRUE, FALSE or a number of workers")
  interpreter <- pyrmap_python(python)
  current <- .state$pool
  if (!is.null(current) && !isTRUE(.pyrmap_pool_info(current$xp)$closed) &&
      identical(current$python, interpreter) && current$workers == as.integer(workers))
    return(current)
  if (!is.null(python) && !is.null(current) && !identical(current$python, interpreter))
    return(NULL)  # another interpreter than the session pool's: a one-shot run
  if (!is.null(current)) close(current)
  .state$pool <- python_pool(as.integer(workers), interpreter)
  .state$pool
}
