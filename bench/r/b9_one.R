# B9, one repetition of one method, in a fresh R process:
#
#   Rscript b9_one.R METHOD NROW PYTHON BENCH_DIR [CALLS]
#
# METHOD: pyrmap | pyrmap_pool | pyrmap_numpy | reticulate. Makes a data.frame of NROW
# rows: ten double columns and one factor column (26 levels), before anything
# is timed; then times "data.frame -> pandas.DataFrame -> data.frame" through
# an identity, as a user writes it:
#   pyrmap:       run_python(df, "identity_frame.py", fun = "identity")
#   pyrmap_pool:  the same on a warm worker: pool <- python_pool() at set-up,
#                 run_python(..., pool = pool); the worker imports pandas in
#                 its first call, which is timed like the others
#   pyrmap_numpy: the same as pyrmap with pandas = FALSE (a dict of numpy arrays)
#   reticulate: py_to_r(r_to_py(df))
# and prints BENCH_MARK lines (unix times) for the driver (bench/bench.py):
#   init_start/init_end   loading the package (reticulate: also starting
#                         Python and importing pandas): not timed
#   start<K>/end<K>       call K of CALLS (default 3), back to back
# BENCH_CPU <K> <seconds>: CPU time of R and its waited-for children in call
# K. Every result is checked against the input (pyrmap: identical();
# reticulate: the columns' values and levels) after the timed window, then
# dropped (rm); no gc(): R collects when it would for a user.

args <- commandArgs(trailingOnly = TRUE)
method <- args[[1]]
nrow <- as.numeric(args[[2]])
python <- args[[3]]
bench_dir <- args[[4]]
calls <- if (length(args) >= 5) as.integer(args[[5]]) else 3L

mark <- function(name) cat(sprintf("BENCH_MARK %s %.6f\n", name, as.numeric(Sys.time())))

set.seed(42)
df <- as.data.frame(replicate(10, runif(nrow), simplify = FALSE), col.names = sprintf("x%d", 1:10))
df$f <- factor(sample(letters, nrow, TRUE), levels = letters)

mark("init_start")
if (method %in% c("pyrmap", "pyrmap_pool", "pyrmap_numpy")) {
  suppressPackageStartupMessages(library(pyrmap))
  options(pyrmap.python = python)
  script <- file.path(bench_dir, "scripts", "identity_frame.py")
  run <- switch(method,
    pyrmap = function(df) run_python(df, script, fun = "identity"),
    pyrmap_numpy = function(df) run_python(df, script, fun = "identity", pandas = FALSE),
    pyrmap_pool = {
      pool <- python_pool()
      function(df) run_python(df, script, fun = "identity", pool = pool)
    })
} else if (method == "reticulate") {
  suppressPackageStartupMessages(library(reticulate))
  use_python(python, required = TRUE)
  invisible(import("pandas", convert = FALSE))
  run <- function(df) py_to_r(r_to_py(df))
} else {
  stop("unknown method ", method)
}
mark("init_end")

cpu <- function() sum(proc.time()[c(1, 2, 4, 5)], na.rm = TRUE)
# reticulate gives pandas' RangeIndex back as row names and attaches the
# pandas index to the factor; the columns' values and levels are compared.
strip <- function(d) lapply(d, function(c) { attributes(c) <- attributes(c)[intersect(names(attributes(c)), c("levels", "class"))]; c })
for (k in seq_len(calls)) {
  c0 <- cpu()
  mark(sprintf("start%d", k))
  y <- run(df)
  mark(sprintf("end%d", k))
  cat(sprintf("BENCH_CPU %d %.6f\n", k, cpu() - c0))
  same <- if (method != "reticulate") identical(y, df) else identical(strip(y), strip(df))
  if (!isTRUE(same)) stop(sprintf("%s: call %d did not give the frame back", method, k))
  rm(y)
}
cat("BENCH_OK\n")
