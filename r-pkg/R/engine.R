# The parallel engine behind memApply()/memLapply() (src/engine.h,
# src/channel.h, src/engine_r.cpp).
#
# A call's data go into one call segment (X packed so that element i is
# read by index, the side data, the job, a task counter); workers claim
# chunks of tasks from the counter, call FUN on each element from C, and
# append their results to their own result file (or write them straight
# into a shared vector with FUN.VALUE); the master reads those at the end.
#
# Without CLUSTER the workers are pyrmap's own R processes: started once per
# session, waiting on a futex, given each call through shared memory (no
# message). With a CLUSTER, each worker gets one message per call (the job)
# and sends one reply at the end.

# ---- the master's side: pyrmap's own workers ------------------------------------------------

# The session's engine of MAX.CORES workers (default detectCores() - 1, at
# least 1), its control block and result files (unnamed) in segment
# directory `dir`: made on first use, made again when MAX.CORES or the
# directory changes; its
# workers that died or were killed are started again, and all are ready,
# when this returns.
.engine <- function(max_cores, dir) {
  n <- if (is.null(max_cores)) parallel::detectCores() - 1L else max_cores
  if (!is.numeric(n) || length(n) != 1L || is.na(n) || n < 1) n <- 1L
  n <- as.integer(n)
  # An engine inherited through fork() belongs to the parent: left alone.
  if (!identical(.state$engine_pid, Sys.getpid())) .state$engine <- NULL
  e <- .state$engine
  if (!is.null(e) && (!identical(.state$engine_workers, n) || !identical(.state$engine_dir, dir))) {
    .engine_close()
    e <- NULL
  }
  if (is.null(e)) {
    info <- .Call(pyrmap_engine_new, n, .engine_command(), .engine_environment(), dir)
    if (!isTRUE(info$ok)) .raise(info, .user_call())
    e <- info$engine
    .state$engine <- e
    .state$engine_workers <- n
    .state$engine_dir <- dir
    .state$engine_pid <- Sys.getpid()
  }
  st <- .Call(pyrmap_engine_ready, e)
  if (!isTRUE(st$ok)) .raise(st, .user_call())
  e
}

# The worker program: this R's Rscript running the worker loop.
.engine_command <- function() {
  c(file.path(R.home("bin"), "Rscript"), "--no-echo", "--no-restore", "-e", "pyrmap:::.engine_worker_main()")
}

# The workers find this package where this session found it.
.engine_environment <- function() {
  libs <- unique(c(dirname(system.file(package = "pyrmap")), .libPaths()))
  c(R_LIBS = paste(libs, collapse = ":"))
}

# Kills the session's engine workers (the next call starts new ones).
.engine_close <- function() {
  e <- .state$engine
  .state$engine <- NULL
  .state$engine_workers <- NULL
  if (!is.null(e) && identical(.state$engine_pid, Sys.getpid())) .Call(pyrmap_engine_close, e)
  invisible(NULL)
}

# The engine's workers: pids (0 for a slot without one) and restarts; NULL
# without an engine. For tests and benchmarks.
.engine_info <- function() {
  e <- .state$engine
  if (is.null(e) || !identical(.state$engine_pid, Sys.getpid())) return(NULL)
  .Call(pyrmap_engine_info, e)
}

# ---- the workers' side ----------------------------------------------------------------------------

# An engine worker (started by .engine_command()): its loop is in C
# (pyrmap_engine_worker_loop: wait for a job, do the share, wake the master;
# nothing in R between jobs). An error or interrupt in FUN (or in the job's
# set-up) unwinds to here: it is recorded as the failure of the task in
# progress, the worker leaves the call, and the loop goes on. Interrupts
# come from the master, when it gives up a call.
.engine_worker_main <- function() {
  a <- .Call(pyrmap_engine_worker_attach)
  if (!isTRUE(a$ok)) {
    message("pyrmap engine worker: ", a$message)
    quit(save = "no", status = 1)
  }
  w <- a$worker
  repeat {
    r <- tryCatch(.Call(pyrmap_engine_worker_loop, w, .view_of, .forget_page_view),
                  error = function(e) e, interrupt = function(e) e)
    if (is.null(r)) break  # the engine stops its workers
    if (is.list(r) && identical(r$ok, FALSE)) {
      message("pyrmap engine worker: ", r$message)
      quit(save = "no", status = 1)
    }
    tryCatch({
      .worker_abort(r)
      .Call(pyrmap_engine_worker_finish, w)
    }, interrupt = function(e) NULL)
  }
  quit(save = "no")
}

# A user cluster's worker: the one message of a call (see .cluster_runner).
# Leaves the terminal's process group (Ctrl-C then reaches the master
# alone), does its share, and replies.
.cluster_worker <- function(job) {
  .Call(pyrmap_leave_process_group)
  # FUN's own retrieveViews() calls look where the call's pages are.
  old <- options(pyrmap.segment_dir = job$dir)
  on.exit(options(old), add = TRUE)
  r <- tryCatch(.Call(pyrmap_worker_job, job$call, job$slot, job, job$results, .view_of, .forget_page_view),
                error = function(e) .worker_abort(e), interrupt = function(e) .worker_abort(e))
  list(outcome = if (isTRUE(r$ok)) r$outcome else "not_started",
       message = if (!isTRUE(r$ok)) r$message, pid = Sys.getpid())
}

# Records `cond`, an error or interrupt that left a job, as the failure of
# the task in progress (or of the worker's share), and leaves the call.
.worker_abort <- function(cond) {
  interrupted <- inherits(cond, "interrupt")
  message <- if (interrupted) "interrupted"
             else tryCatch(conditionMessage(cond), error = function(e) "(its message cannot be read)")
  .Call(pyrmap_worker_abort, message, class(cond), interrupted, .forget_page_view)
  list(ok = TRUE, outcome = if (interrupted) "interrupted" else "failed")
}

# Lets go of this session's view of a registered variable (the end of a
# call that used it as side data).
.forget_page_view <- function(ns, var) .forget_view(.key(ns, var))
