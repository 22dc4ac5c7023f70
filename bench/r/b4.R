# B4: the fixed cost of one run_python() call on a small input, against
# starting `python -c "import numpy"` with system2, inside one R session.
#
#   Rscript b4.R REPS WARMUP PYTHON BENCH_DIR
#
# The two are interleaved (A B B A A B ...), so that the machine's load,
# which changes from second to second, weighs on both alike. Each call is
# timed with bench::hires_time() and printed as
#   BENCH_ITER <method> <unix start> <unix end> <seconds> <CPU seconds>
# (the unix times let the driver take the peak memory of each call's window).
# Afterwards bench::mark() measures the same two expressions again (not
# interleaved), as a cross-check; its medians are printed as
#   BENCH_MARKRESULT <method> <median seconds> <iterations>

args <- commandArgs(trailingOnly = TRUE)
reps <- as.integer(args[[1]])
warmup <- as.integer(args[[2]])
python <- args[[3]]
bench_dir <- args[[4]]

suppressPackageStartupMessages({
  library(pyrmap)
  library(bench)
})
options(pyrmap.python = python)
script <- file.path(bench_dir, "scripts", "times2.py")
set.seed(1)
x <- runif(1000)

calls <- list(
  pyrmap = function() run_python(x, script),
  python_import_numpy = function() {
    status <- system2(python, c("-c", shQuote("import numpy")))
    if (status != 0) stop("python -c 'import numpy' failed")
  }
)

y <- calls$pyrmap()
stopifnot(length(y) == 1000, all(y == 2 * x))

for (i in seq_len(warmup)) for (f in calls) f()

# CPU time of R and of the children it waited for (getrusage, microseconds).
cpu <- function() sum(proc.time()[c(1, 2, 4, 5)], na.rm = TRUE)

for (i in seq_len(reps)) {
  order <- if (i %% 2 == 1) names(calls) else rev(names(calls))
  for (m in order) {
    c0 <- cpu()
    u0 <- as.numeric(Sys.time())
    t0 <- bench::hires_time()
    calls[[m]]()
    t1 <- bench::hires_time()
    u1 <- as.numeric(Sys.time())
    c1 <- cpu()
    cat(sprintf("BENCH_ITER %s %.6f %.6f %.9f %.6f\n", m, u0, u1, t1 - t0, c1 - c0))
  }
}

bm <- bench::mark(
  pyrmap = calls$pyrmap(),
  python_import_numpy = calls$python_import_numpy(),
  iterations = reps, check = FALSE, memory = FALSE, filter_gc = FALSE
)
for (i in seq_len(nrow(bm)))
  cat(sprintf("BENCH_MARKRESULT %s %.9f %d\n", names(calls)[[i]],
              as.numeric(bm$median[[i]]), as.integer(bm$n_itr[[i]])))
cat("BENCH_OK\n")
