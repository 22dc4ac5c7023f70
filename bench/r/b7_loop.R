# B7, the memory of a long loop: LOOP_CALLS small calls on a warm pool, in a
# fresh R session with only pyrmap loaded (other packages change how much
# garbage R lets pile up between its collections, which is R's matter).
#
#   Rscript b7_loop.R LOOP_CALLS PYTHON BENCH_DIR
#
# Prints BENCH_LOOP <calls> <seconds>, BENCH_MEM before|after <kB> (R plus
# the workers: RssAnon + RssShmem, heaps and mapped shared memory; not PSS or
# USS, which file-backed program text shifts as other processes start and
# stop), BENCH_SHM <what is left in /dev/shm after close(pool)>, BENCH_OK.
# No gc(), no pause: the loop is run as a user writes it.

args <- commandArgs(trailingOnly = TRUE)
loop_calls <- as.integer(args[[1]])
python <- args[[2]]
bench_dir <- args[[3]]

suppressPackageStartupMessages(library(pyrmap))
options(pyrmap.python = python)
script <- file.path(bench_dir, "scripts", "times2.py")
say <- function(...) cat(sprintf(...), "\n", sep = "")

mem_kb <- function(pid) {
  f <- sprintf("/proc/%d/status", pid)
  if (!file.exists(f)) return(0)
  lines <- readLines(f)
  sum(as.numeric(gsub("[^0-9]", "", grep("^Rss(Anon|Shmem):", lines, value = TRUE))))
}
worker_pids <- function(p) {
  out <- utils::capture.output(print(p))
  as.integer(vapply(strsplit(trimws(out[-(1:2)]), "[[:space:]]+"), `[[`, "", 2L))
}

pool <- python_pool(workers = 1)
set.seed(1)
x <- runif(1000)
y <- run_python(x, script, pool = pool)
total_kb <- function() mem_kb(Sys.getpid()) + sum(vapply(worker_pids(pool), mem_kb, numeric(1)))
before <- total_kb()
t0 <- proc.time()[[3L]]
for (i in seq_len(loop_calls)) y <- run_python(x, script, pool = pool)
say("BENCH_LOOP %d %.6f", loop_calls, proc.time()[[3L]] - t0)
stopifnot(isTRUE(all.equal(y, 2 * x)))
after <- total_kb()
say("BENCH_MEM before %.0f", before)
say("BENCH_MEM after %.0f", after)
close(pool)
left <- list.files("/dev/shm", sprintf("^pyrmap-[0-9]+-%d-", Sys.getpid()))
say("BENCH_SHM %s", paste(c(left, "-"), collapse = " "))
cat("BENCH_OK\n")
