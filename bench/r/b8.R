# B8: the engine's fixed costs. Small calls and fine-grained work, where a
# call's own cost shows: memApply on a 20 x 20 matrix (`sum` per column)
# against parApply on a warm PSOCK cluster, mclapply and serial apply; and
# memLapply over a list of 20 000 numbers (`el + 1`) against parLapply,
# mclapply and serial lapply. 2 workers everywhere, in one R session.
#
#   Rscript b8.R SMALL_REPS FINE_REPS FINE_N BENCH_DIR
#
# The calls are written as a user writes them: the PSOCK cluster is made
# first (makePSOCKcluster(2), its start timed apart), memApply needs nothing
# (its first call starts pyrmap's own workers, MAX.CORES = 2: that call is
# timed like any other, and its time is also printed apart). No warm-up
# calls. Per case, rounds of every method once, in an order that rotates from
# round to round; each call timed with bench::hires_time(); nothing between
# calls that a user would not do (no gc(), no pause). Every result is checked
# against the serial one (identical), untimed, after its call.
#
# mclapply runs in a block of its own after each case's rounds: each of its
# calls forks the master, which leaves the master's memory copy-on-write, so
# the calls after it (of any method) pay a page fault for every page they
# write. Interleaved, that cost of mclapply's would be charged to the others
# (measured: serial apply 4x slower, parApply 2.4x, memApply 3x). The
# small case is also run interleaved with mclapply (case "small_forked"),
# fewer rounds, and printed beside.
#
# Prints, one line each:
#   BENCH_ITER <case> <method> <seconds>     one timed call
#   BENCH_INFO <key> <value>                 what the table notes
#   BENCH_OK
# and, for the harness's checks (worker processes gone, /dev/shm empty):
#   BENCH_PIDS <group> <pid>...

args <- commandArgs(trailingOnly = TRUE)
small_reps <- as.integer(args[[1]])
fine_reps <- as.integer(args[[2]])
fine_n <- as.integer(args[[3]])
bench_dir <- args[[4]]
source(file.path(bench_dir, "r", "par_common.R"))
suppressPackageStartupMessages({
  library(pyrmap)
  library(parallel)
  library(bench)
})
say("BENCH_PIDS master ", Sys.getpid())
now <- function() as.numeric(bench::hires_time())

set.seed(1)
X <- matrix(runif(400), 20)
L <- as.list(runif(fine_n))

t0 <- now()
cl <- makePSOCKcluster(2)
say("BENCH_INFO psock_start ", now() - t0)
say("BENCH_PIDS psock ", paste(worker_pids(cl), collapse = " "))

plus_one <- function(el) el + 1
cases <- list(
  small = list(
    reference = as.list(apply(X, 2, sum)),
    methods = list(
      memApply = function() memApply(X, 2, sum, MAX.CORES = 2),
      memApply_FUN.VALUE = function() memApply(X, 2, sum, MAX.CORES = 2, FUN.VALUE = 0),
      parApply = function() parApply(cl, X, 2, sum),
      mclapply = function() mclapply(seq_len(ncol(X)), function(j) sum(X[, j]), mc.cores = 2),
      apply = function() apply(X, 2, sum)
    )
  ),
  fine = list(
    reference = lapply(L, plus_one),
    methods = list(
      memLapply = function() memLapply(L, plus_one, MAX.CORES = 2),
      memLapply_FUN.VALUE = function() memLapply(L, plus_one, MAX.CORES = 2, FUN.VALUE = 0),
      parLapply = function() parLapply(cl, L, plus_one),
      mclapply = function() mclapply(L, plus_one, mc.cores = 2),
      lapply = function() lapply(L, plus_one)
    )
  )
)

# The results as lists (apply's and parApply's are vectors; FUN.VALUE's too).
as_result <- function(x) if (is.list(x)) x else as.list(x)
check <- function(case, m, res) {
  if (!identical(unname(as_result(res)), unname(cases[[case]]$reference)))
    stop(sprintf("B8 %s: %s's result differs from the serial one", case, m))
}

engine_seen <- FALSE
# Rounds of methods `ms` of case `case`, labelled `label`.
rounds <- function(case, ms, reps, label = case) {
  for (r in seq_len(reps)) {
    k <- (r - 1L) %% length(ms)
    for (m in c(ms[seq_along(ms) > k], ms[seq_len(k)])) {
      f <- cases[[case]]$methods[[m]]
      t0 <- now()
      res <- f()
      t1 <- now()
      say(sprintf("BENCH_ITER %s %s %.9f", label, m, t1 - t0))
      if (!engine_seen && !is.null(pyrmap:::.engine_info())) {
        engine_seen <<- TRUE  # this call started pyrmap's workers
        say("BENCH_INFO engine_start ", t1 - t0)
        say("BENCH_PIDS pyrmap ", paste(engine_pids(), collapse = " "))
      }
      check(case, m, res)
    }
  }
}
for (case in names(cases)) {
  ms <- names(cases[[case]]$methods)
  reps <- if (case == "small") small_reps else fine_reps
  rounds(case, setdiff(ms, "mclapply"), reps)
  rounds(case, "mclapply", reps)
}
rounds("small", names(cases$small$methods), max(5L, small_reps %/% 3L), "small_forked")
say("BENCH_INFO fine_n ", fine_n)
say("BENCH_INFO engine_workers_after ", paste(engine_pids(), collapse = ","))
stopCluster(cl)  # memApply's workers end with R
say("BENCH_OK")
