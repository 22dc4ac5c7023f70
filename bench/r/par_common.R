# Shared by bench/r/b5.R and bench/r/b6.R: the protocol between a parallel
# benchmark's R process (the "master") and the harness (bench/bench.py, with
# bench/lib/psswatch.py watching memory). All lines go to stdout, flushed at
# once, since the watcher acts on them while R runs:
#
#   BENCH_PIDS <group> <pid>...   processes of a group: "master" (this R),
#                                 "psock" (the parallel PSOCK cluster),
#                                 "pyrmap" (memApply's own workers, the
#                                 engine, printed after the call that
#                                 started them). PSOCK workers are not
#                                 children of the master, so the watcher
#                                 learns them here; the engine's workers
#                                 are, and are declared so that they count
#                                 for memApply alone.
#   BENCH_START <method> <rep> <group>
#                                 a call follows at once (no pause): the
#                                 watcher starts sampling when the first
#                                 round it measures memory in begins, and
#                                 samples without a break until
#                                 BENCH_ROUNDS_END; which processes count
#                                 for a call is decided afterwards, from
#                                 the call's times (psswatch.py).
#   BENCH_ITER <method> <rep> <t0> <t1> <cpu master> <cpu children> <cpu workers>
#                                 the call ran from unix time t0 to t1; CPU
#                                 seconds of the master itself, of its
#                                 waited-for children (mclapply's forks) and
#                                 of the cluster's workers (proc.time() read
#                                 on each PSOCK worker, /proc/PID/stat of
#                                 each engine worker, just before and after).
#   BENCH_INFO <key> <value>      set-up facts for the table: psock_start
#                                 (seconds makePSOCKcluster(2) took),
#                                 engine_start (the call that started
#                                 pyrmap's workers, its seconds),
#                                 fork_waits / fork_wait_max (see
#                                 wait_forks()).
#   BENCH_NOTE <text>             printed into the table's notes.
#   BENCH_ROUNDS_END              the last call has ended.
#   BENCH_OK                      the end: every check passed.

say <- function(...) {
  cat(paste0(...), "\n", sep = "")
  flush(stdout())
}

wall <- function() as.numeric(Sys.time())

master_cpu <- function() {
  pt <- proc.time()
  c(pt[[1]] + pt[[2]], sum(pt[4:5], na.rm = TRUE))
}

# CPU seconds (user + system) of processes `pids` (a cluster's workers),
# read from /proc/PID/stat: nothing is sent to the workers, so nothing
# wakes them before a call.
worker_cpu <- function(pids) {
  tck <- 100  # USER_HZ, as /proc/PID/stat counts
  sum(vapply(pids, function(pid) {
    f <- strsplit(sub(".*\\) ", "", readLines(sprintf("/proc/%d/stat", pid))), " ")[[1]]
    (as.numeric(f[12]) + as.numeric(f[13])) / tck
  }, 0))
}

worker_pids <- function(cl) unlist(parallel::clusterCall(cl, Sys.getpid))

# pyrmap's own workers (memApply's engine without CLUSTER), started by a
# first call; their pids.
engine_pids <- function() {
  pids <- pyrmap:::.engine_info()$pids
  stopifnot(length(pids) == 2L, all(pids > 0))
  pids
}

# The engine's workers' pids, or none before the call that starts them.
engine_workers <- function() {
  if (is.null(pyrmap:::.engine_info())) integer(0) else engine_pids()
}

# The start both scripts share: the packages, the master's pid for the
# watcher, and the matrix X = matrix(rnorm(n * p), n, p) (seed 1).
start_bench <- function(n, p) {
  suppressPackageStartupMessages({
    library(pyrmap)
    library(parallel)
  })
  say("BENCH_PIDS master ", Sys.getpid())
  set.seed(1)
  matrix(rnorm(n * p), n, p)
}

# The competitors' PSOCK cluster of 2, made as a user makes it before the
# calls (set-up, not timed with them: its time is printed apart), its pids
# told to the watcher.
psock_cluster <- function() {
  t0 <- wall()
  cl <- parallel::makePSOCKcluster(2)
  say(sprintf("BENCH_INFO psock_start %.6f", wall() - t0))
  say("BENCH_PIDS psock ", paste(worker_pids(cl), collapse = " "))
  cl
}

# The master's children that have not exited yet (zombies are done), those
# in `skip` (the engine's workers) left out.
live_children <- function(skip) {
  me <- Sys.getpid()
  kids <- unlist(lapply(list.files(sprintf("/proc/%d/task", me), full.names = TRUE), function(t) {
    s <- tryCatch(readLines(file.path(t, "children"), warn = FALSE), error = function(e) character(0))
    as.integer(strsplit(trimws(paste(s, collapse = " ")), " +")[[1]])
  }))
  kids <- setdiff(kids[!is.na(kids)], skip)
  kids[vapply(kids, function(pid) {
    st <- tryCatch(readLines(sprintf("/proc/%d/stat", pid), warn = FALSE), error = function(e) "")
    length(st) == 1L && nzchar(st) && substr(sub(".*\\) ", "", st), 1L, 1L) != "Z"
  }, TRUE)]
}

# Untimed, before each PSOCK call: waits until no fork of an earlier
# mclapply call is still exiting (at once when none is). R 4.2's socket
# writes and reads (R_SockWrite/R_SockRead, via R_SocketWait) give up when
# select() returns EINTR, so a SIGCHLD that reaches the master while it
# sends a large object to a PSOCK worker ends the call with "error writing
# to connection", though worker and socket are fine; mclapply returns
# before its forks have all exited, and each exit sends the master a
# SIGCHLD (parallel handles it). A user who runs a PSOCK call right after
# mclapply meets the same failure now and then. The waits are counted and
# the longest is printed (BENCH_INFO fork_waits, fork_wait_max).
fork_wait <- new.env()
fork_wait$n <- 0L
fork_wait$max <- 0
wait_forks <- function() {
  t0 <- wall()
  if (!length(live_children(engine_workers()))) return(invisible(NULL))
  while (length(live_children(engine_workers()))) {
    if (wall() - t0 > 60) stop("mclapply's forks still run 60 s after the call")
    Sys.sleep(0.002)
  }
  fork_wait$n <- fork_wait$n + 1L
  fork_wait$max <- max(fork_wait$max, wall() - t0)
  invisible(NULL)
}

# Runs `reps` rounds; in each, every method once, in an order that rotates
# from round to round, back to back as a user's loop runs them: no pause,
# no gc() (a user's loop calls none, and the memory views hold must go
# without one), no warm-up (the first call of each method is timed like
# the others; for memApply it starts pyrmap's workers, and its time is also
# printed as BENCH_INFO engine_start). methods: named list of functions of
# no argument (the timed call); groups: method -> group name; workers:
# method -> function returning the pids of the workers whose CPU time is
# read; check(method, result) is called after each call (not timed);
# before[[m]]() and after[[m]](), if given, run before and after method m's
# call (not timed).
run_rounds <- function(methods, groups, workers, reps, check, before = list(), after = list()) {
  ms <- names(methods)
  engine_seen <- FALSE
  for (r in seq_len(reps)) {
    k <- (r - 1L) %% length(ms)
    order <- c(ms[seq_along(ms) > k], ms[seq_len(k)])
    for (m in order) {
      if (!is.null(before[[m]])) before[[m]]()
      say("BENCH_START ", m, " ", r, " ", groups[[m]])
      w0 <- worker_cpu(workers[[m]]())
      c0 <- master_cpu()
      t0 <- wall()
      res <- methods[[m]]()
      t1 <- wall()
      c1 <- master_cpu()
      w1 <- worker_cpu(workers[[m]]())
      if (!engine_seen && !is.null(pyrmap:::.engine_info())) {
        engine_seen <- TRUE  # this call started pyrmap's workers
        say("BENCH_PIDS pyrmap ", paste(engine_pids(), collapse = " "))
        say(sprintf("BENCH_INFO engine_start %.6f", t1 - t0))
      }
      say(sprintf("BENCH_ITER %s %d %.6f %.6f %.3f %.3f %.3f", m, r, t0, t1,
                  c1[[1]] - c0[[1]], c1[[2]] - c0[[2]], w1 - w0))
      check(m, res)
      rm(res)
      if (!is.null(after[[m]])) after[[m]]()
    }
  }
  say("BENCH_ROUNDS_END")
  say("BENCH_INFO fork_waits ", fork_wait$n)
  say(sprintf("BENCH_INFO fork_wait_max %.6f", fork_wait$max))
}
