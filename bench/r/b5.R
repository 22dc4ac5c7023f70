# B5: memApply on the vignette's workload (per column cor(v, y)) against
# parApply on a PSOCK cluster, mclapply, and serial apply, in one R session.
#
#   Rscript b5.R REPS NROW NCOL BENCH_DIR
#
# X = matrix(rnorm(NROW * NCOL)), y = rnorm(NROW), made before anything is
# timed. The calls are written as a user writes them: the PSOCK cluster is
# made first (makePSOCKcluster(2), set-up, its time printed apart); memApply
# needs nothing (its first call starts pyrmap's own workers, MAX.CORES = 2:
# that call is timed like any other, and its time is also printed apart). No
# warm-up calls, no pause, no gc(): REPS rounds, the methods back to back in
# an order that rotates from round to round; the protocol (BENCH_* lines) is
# described in par_common.R. The first result is the reference: its first
# and last columns are compared with a serial computation, and every other
# result with it (all.equal), untimed; a mismatch stops R.

args <- commandArgs(trailingOnly = TRUE)
reps <- as.integer(args[[1]])
n <- as.integer(args[[2]])
p <- as.integer(args[[3]])
bench_dir <- args[[4]]
source(file.path(bench_dir, "r", "par_common.R"))

X <- start_bench(n, p)
y <- rnorm(n)

cl <- psock_cluster()
psock <- worker_pids(cl)

# The timed calls, exactly as a user writes them (each FUN's environment is
# the small frame of its method's function, so nothing big travels with it).
methods <- list(
  memApply = function() memApply(X, 2, function(v, y) cor(v, y), VARS = list(y = y), MAX.CORES = 2),
  parApply = function() parallel::parApply(cl, X, 2, function(v, y) cor(v, y), y = y),
  mclapply = function() parallel::mclapply(seq_len(ncol(X)), function(j) cor(X[, j], y), mc.cores = 2),
  apply = function() apply(X, 2, function(v, y) cor(v, y), y = y)
)

ref <- NULL
check <- function(m, res) {
  v <- as.numeric(unlist(res))
  if (is.null(ref)) {
    stopifnot(length(v) == p)
    s <- vapply(c(1L, p), function(j) cor(X[, j], y), 0)
    if (!isTRUE(all.equal(v[c(1L, p)], s))) stop("B5: ", m, " differs from the serial result")
    ref <<- v
  } else if (!isTRUE(all.equal(v, ref))) {
    stop(sprintf("B5: %s's result differs: %s", m, paste(all.equal(v, ref), collapse = "; ")))
  }
}
say("BENCH_NOTE results of all methods agree (all.equal), checked on every call; columns 1 and ", p,
    " also against a serial computation")

run_rounds(methods,
           groups = list(memApply = "pyrmap", parApply = "psock", mclapply = "fork", apply = "none"),
           workers = list(memApply = engine_workers, parApply = function() psock,
                          mclapply = function() integer(0), apply = function() integer(0)),
           reps = reps, check = check, before = list(parApply = wait_forks))

stopCluster(cl)  # memApply's workers end with R
say("BENCH_OK")
