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
# K. Every result is checked against the input column by column (pyrmap:
# as identical() would, and identical() itself after the last call;
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
# The check, column by column: identical() of two data.frames expands both
# frames' automatic row names (2 x 40 MB here), garbage that a user's call
# would not leave and that R would collect inside the next timed call.
# strict (pyrmap): the same class, names, row names (as stored) and
# columns, so identical(y, df) holds. Otherwise (reticulate, which gives
# pandas' RangeIndex back as row names and may attach the index to a
# column): the same names, number of rows, and columns' values, levels and
# class.
same_frame <- function(y, df, strict) {
  if (!is.data.frame(y) || !identical(names(y), names(df)) || !identical(class(y), class(df)))
    return(FALSE)
  rows <- if (strict) 0L else 2L
  if (!identical(.row_names_info(y, rows), .row_names_info(df, rows))) return(FALSE)
  for (j in seq_along(df)) {
    a <- y[[j]]
    if (identical(a, df[[j]])) next
    if (strict) return(FALSE)
    attributes(a) <- attributes(a)[intersect(names(attributes(a)), c("levels", "class"))]
    if (!identical(a, df[[j]])) return(FALSE)
  }
  TRUE
}
for (k in seq_len(calls)) {
  c0 <- cpu()
  mark(sprintf("start%d", k))
  y <- run(df)
  mark(sprintf("end%d", k))
  cat(sprintf("BENCH_CPU %d %.6f\n", k, cpu() - c0))
  same <- same_frame(y, df, strict = method != "reticulate")
  # (and identical() itself once, after the last call: no timed call follows)
  if (k == calls && method != "reticulate") same <- same && identical(y, df)
  if (!isTRUE(same)) stop(sprintf("%s: call %d did not give the frame back", method, k))
  rm(y)
}
cat("BENCH_OK\n")
