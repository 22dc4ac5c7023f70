# B7: warm Python workers (python_pool) against reticulate's in-process call
# and a one-shot run_python(), inside one R session.
#
#   Rscript b7.R SMALL_REPS LARGE_N LARGE_REPS SHARED_REPS PYTHON BENCH_DIR
#
# (The memory of a long loop is measured by b7_loop.R, in an R session of
# its own.)
#
# Prints, one line each:
#   BENCH_START <method> <seconds>            the pool's start and first call; numpy import
#   BENCH_ITER <case> <method> <seconds>      one timed call
#   BENCH_SHM <names left in /dev/shm>        after close(pool)
#   BENCH_OK
# Within a case the methods are interleaved (A B C C B A ...), so that the
# machine's load, which changes from second to second, weighs on all alike.
# Nothing is done between calls that a user would not do: no gc(), no pause.

args <- commandArgs(trailingOnly = TRUE)
small_reps <- as.integer(args[[1]])
large_n <- as.numeric(args[[2]])
large_reps <- as.integer(args[[3]])
shared_reps <- as.integer(args[[4]])
python <- args[[5]]
bench_dir <- args[[6]]

suppressPackageStartupMessages({
  library(pyrmap)
  library(reticulate)
  library(bench)
})
options(pyrmap.python = python)
Sys.setenv(RETICULATE_PYTHON = python)
script <- file.path(bench_dir, "scripts", "times2.py")
sleeper <- file.path(bench_dir, "scripts", "sleep1.py")


now <- function() as.numeric(bench::hires_time())
say <- function(...) cat(sprintf(...), "\n", sep = "")

# Start-up costs, paid once (reported, not part of the per-call ratios).
t0 <- now()
pool <- python_pool(workers = 1)
y <- run_python(1, script, pool = pool)
say("BENCH_START pool_start_and_first_call %.6f", now() - t0)
t0 <- now()
np <- import("numpy", convert = FALSE)
say("BENCH_START reticulate_import_numpy %.6f", now() - t0)

set.seed(1)
x <- runif(1000)
calls <- list(
  pool = function() run_python(x, script, pool = pool),
  reticulate = function() py_to_r(np$multiply(r_to_py(x), 2)),
  one_shot = function() run_python(x, script)
)
for (f in calls) stopifnot(isTRUE(all.equal(as.vector(f()), 2 * x)))

# 1000 doubles, x * 2, round trip.
for (i in seq_len(small_reps)) {
  order <- if (i %% 2 == 1) names(calls) else rev(names(calls))
  for (m in order) {
    if (m == "one_shot" && i > max(20L, small_reps %/% 10L)) next  # 100 ms each: fewer
    t0 <- now()
    calls[[m]]()
    say("BENCH_ITER small %s %.9f", m, now() - t0)
  }
}

# 1e8 doubles through the pool and one-shot.
big <- runif(large_n)
for (i in seq_len(large_reps)) {
  order <- if (i %% 2 == 1) c("pool", "one_shot") else c("one_shot", "pool")
  for (m in order) {
    t0 <- now()
    y <- if (m == "pool") run_python(big, script, pool = pool) else run_python(big, script)
    say("BENCH_ITER large %s %.9f", m, now() - t0)
  }
}
rm(y, big)
close(pool)

# Two 1-second scripts over one input, on a pool of 2 workers.
pool2 <- python_pool(workers = 2)
run_python(1, script, pool = pool2)
for (i in seq_len(shared_reps)) {
  t0 <- now()
  r <- run_python_shared_data(x, c(sleeper, sleeper), pool = pool2, jobs = 2)
  say("BENCH_ITER shared pool2 %.9f", now() - t0)
}
close(pool2)
left <- list.files("/dev/shm", sprintf("^pyrmap-[0-9]+-%d-", Sys.getpid()))
say("BENCH_SHM %s", paste(c(left, "-"), collapse = " "))
cat("BENCH_OK\n")
