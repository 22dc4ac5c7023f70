# Shared by bench/r/b5.R and bench/r/b6.R: the protocol between a parallel
# benchmark's R process (the "master") and the harness (bench/bench.py, with
# bench/lib/psswatch.py watching memory). All lines go to stdout, flushed at
# once, since the watcher acts on them while R runs:
#
#   BENCH_PIDS <group> <pid>...   processes of a group: "master" (this R),
#                                 "psock" (the parallel PSOCK cluster),
#                                 "pyrmap" (memApply's default cluster).
#                                 PSOCK workers are not children of the
#                                 master, so the watcher learns them here.
#   BENCH_START <method> <rep> <group>
#                                 a timed call follows (after a 0.1 s pause
#                                 in which the watcher takes the baseline);
#                                 the watcher samples the master, its
#                                 descendants (mclapply's forks) and <group>
#                                 ("fork" or "none": no cluster).
#   BENCH_ITER <method> <rep> <t0> <t1> <cpu master> <cpu children> <cpu workers>
#                                 the call ran from unix time t0 to t1; CPU
#                                 seconds of the master itself, of its
#                                 waited-for children (mclapply's forks) and
#                                 of the cluster's workers (proc.time() read
#                                 on each worker just before and after).
#   BENCH_NOTE <text>             printed into the table's notes.
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

worker_cpu <- function(cl) {
  if (is.null(cl)) return(0)
  sum(unlist(parallel::clusterCall(cl, function() sum(proc.time()[1:2]))))
}

worker_pids <- function(cl) unlist(parallel::clusterCall(cl, Sys.getpid))

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

# The competitors' PSOCK cluster of 2, its pids told to the watcher.
psock_cluster <- function() {
  cl <- parallel::makePSOCKcluster(2)
  say("BENCH_PIDS psock ", paste(worker_pids(cl), collapse = " "))
  cl
}

# Untimed, after every mclapply call: a pause before anything else runs. In
# this R (4.2.2) a large write to a PSOCK worker that follows an mclapply
# call within a moment now and then fails with "error writing to
# connection", though the worker and its socket are fine. Reproduced without
# any pyrmap call (two plain PSOCK clusters, mclapply, then clusterExport of
# 160 MB) as with memLapply: 8 runs in about 250 failed; without the
# mclapply call (43 runs) or with this pause after it (42 runs), none did.
after_fork <- function() Sys.sleep(1)

# Runs `reps` rounds; in each, every method once, in an order that rotates
# from round to round. methods: named list of functions of no argument (the
# timed call); groups: method -> group name; clusters: method -> cluster (or
# NULL) whose workers' CPU time is read (no gc() anywhere: a user's loop
# calls none, and the memory views hold must go without one);
# check(method, result) is called after each call (not timed); after[[m]](),
# if given, runs after method m's call (not timed).
run_rounds <- function(methods, groups, clusters, reps, check, after = list()) {
  ms <- names(methods)
  for (r in seq_len(reps)) {
    k <- (r - 1L) %% length(ms)
    order <- c(ms[seq_along(ms) > k], ms[seq_len(k)])
    for (m in order) {
      cl <- clusters[[m]]
      say("BENCH_START ", m, " ", r, " ", groups[[m]])
      Sys.sleep(0.1)
      w0 <- worker_cpu(cl)
      c0 <- master_cpu()
      t0 <- wall()
      res <- methods[[m]]()
      t1 <- wall()
      c1 <- master_cpu()
      w1 <- worker_cpu(cl)
      say(sprintf("BENCH_ITER %s %d %.6f %.6f %.3f %.3f %.3f", m, r, t0, t1,
                  c1[[1]] - c0[[1]], c1[[2]] - c0[[2]], w1 - w0))
      check(m, res)
      rm(res)
      if (!is.null(after[[m]])) after[[m]]()
    }
  }
}
