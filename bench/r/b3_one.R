# B3, one repetition of one method, in a fresh R process:
#
#   Rscript b3_one.R METHOD N NROW PYTHON BENCH_DIR TAG [CALLS]
#
# METHOD: pyrmap | reticulate | file. Creates an N-element double matrix
# (NROW rows) before the timed part, then times "R matrix -> Python computes
# x * 2 -> R matrix" and prints BENCH_MARK lines (unix times) that the driver
# (bench/bench.py, through bench/lib/memwatch.py) uses for the time and for
# the peak memory inside the timed window:
#   init_start/init_end   loading the method's package (and, for reticulate,
#                         starting Python and importing numpy): not timed
#   start<K>/end<K>       the timed part, call K of CALLS (default 3) made in
#                         this process: call 1 is the first ("cold") call, the
#                         later ones show the steady state of a session
#   sum_start/sum_end     a first full pass over call 1's result (sum(y)):
#                         what reading a lazily mapped result costs; not timed
# and BENCH_CPU <K> <seconds>: CPU time (user + system, of R and of the
# children it waited for, from proc.time()) spent in call K.
# The file method writes TAG-in.bin / TAG-out.bin in /dev/shm and removes them.

args <- commandArgs(trailingOnly = TRUE)
method <- args[[1]]
n <- as.numeric(args[[2]])
nrow <- as.integer(args[[3]])
python <- args[[4]]
bench_dir <- args[[5]]
tag <- args[[6]]
calls <- if (length(args) >= 7) as.integer(args[[7]]) else 3L

mark <- function(name) cat(sprintf("BENCH_MARK %s %.6f\n", name, as.numeric(Sys.time())))

# The data, created in this process before anything is timed (runif writes
# every page, so x is resident); dim<- sets the shape without a copy.
set.seed(42)
x <- runif(n)
dim(x) <- c(nrow, n / nrow)

mark("init_start")
if (method == "pyrmap") {
  suppressPackageStartupMessages(library(pyrmap))
  options(pyrmap.python = python)
  script <- file.path(bench_dir, "scripts", "times2.py")
  run <- function(x) run_python(x, script)
} else if (method == "reticulate") {
  suppressPackageStartupMessages(library(reticulate))
  use_python(python, required = TRUE)
  np <- import("numpy", convert = FALSE)
  run <- function(x) {
    px <- r_to_py(x)
    py <- np$multiply(px, 2)
    py_to_r(py)
  }
} else if (method == "file") {
  script <- file.path(bench_dir, "scripts", "file_times2.py")
  f_in <- file.path("/dev/shm", paste0(tag, "-in.bin"))
  f_out <- file.path("/dev/shm", paste0(tag, "-out.bin"))
  run <- function(x) {
    on.exit(unlink(c(f_in, f_out)))
    d <- dim(x)
    dim(x) <- NULL  # writeBin wants a plain vector; this does not copy x
    writeBin(x, f_in)
    status <- system2(python, c(shQuote(script), shQuote(f_in), shQuote(f_out)))
    if (status != 0) stop("python failed with status ", status)
    y <- readBin(f_out, "double", n = length(x))
    dim(y) <- d
    y
  }
} else {
  stop("unknown method ", method)
}
mark("init_end")

cpu <- function() sum(proc.time()[c(1, 2, 4, 5)], na.rm = TRUE)
for (k in seq_len(calls)) {
  c0 <- cpu()
  mark(paste0("start", k))
  y <- run(x)
  mark(paste0("end", k))
  cat(sprintf("BENCH_CPU %d %.3f\n", k, cpu() - c0))
  if (k == 1L) {
    mark("sum_start")
    s <- sum(y)
    mark("sum_end")
    # Checks (not timed): shape and values.
    stopifnot(identical(dim(y), dim(x)), is.double(y))
    idx <- c(1, 2, nrow + 1, n %/% 2, n)
    stopifnot(all(y[idx] == 2 * x[idx]), isTRUE(all.equal(s, 2 * sum(x))))
  }
  # The calls come back to back, as a user writes them: no rm(), no gc();
  # the next call's result replaces this one in y.
}
cat("BENCH_OK\n")
