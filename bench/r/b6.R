# B6: every task needs the whole matrix as side data. memLapply (the matrix
# shared as VARS) against mclapply (forked workers see it copy-on-write) and
# clusterExport + parLapply on a PSOCK cluster, in one R session.
#
#   Rscript b6.R REPS NROW NCOL TASKS BENCH_DIR
#
# X = matrix(rnorm(NROW * NCOL)), made before anything is timed; task j
# computes sum(abs(cor(X[, j], X))) for j in 1:TASKS. The calls are written
# as a user writes them: the PSOCK cluster is made first (makePSOCKcluster(2),
# set-up, its time printed apart); memLapply needs nothing (its first call
# starts pyrmap's own workers, MAX.CORES = 2: that call is timed like any
# other). The PSOCK method's timed part is clusterExport(cl, "X") and
# parLapply: what that approach costs per call. After it, untimed, X is
# removed from the workers (no gc(): nothing here calls one). No warm-up
# calls, no pause: REPS rounds, the methods back to back in rotating order.
# Protocol (BENCH_* lines): par_common.R. Results are compared across methods
# (all.equal) on every call, and two tasks against a serial computation.

args <- commandArgs(trailingOnly = TRUE)
reps <- as.integer(args[[1]])
n <- as.integer(args[[2]])
p <- as.integer(args[[3]])
tasks <- as.integer(args[[4]])
bench_dir <- args[[5]]
source(file.path(bench_dir, "r", "par_common.R"))

X <- start_bench(n, p)

cl <- psock_cluster()
psock <- worker_pids(cl)

idx <- seq_len(tasks)
methods <- list(
  memLapply = function() memLapply(idx, function(j, M) sum(abs(cor(M[, j], M))), VARS = list(M = X),
                                   MAX.CORES = 2),
  mclapply = function() mclapply(idx, function(j) sum(abs(cor(X[, j], X))), mc.cores = 2),
  export_parLapply = function() {
    clusterExport(cl, "X")
    parLapply(cl, idx, function(j) sum(abs(cor(X[, j], X))))
  }
)
unexport <- function() {
  clusterEvalQ(cl, {
    rm(X)
    NULL
  })
  invisible(NULL)
}

# The first result is the reference for the others, and its first and last
# tasks are checked against a serial computation.
ref <- NULL
check <- function(m, res) {
  v <- as.numeric(unlist(res))
  if (is.null(ref)) {
    stopifnot(length(v) == tasks)
    s <- vapply(c(1L, tasks), function(j) sum(abs(cor(X[, j], X))), 0)
    if (!isTRUE(all.equal(v[c(1L, tasks)], s))) stop("B6: ", m, " differs from the serial result")
    ref <<- v
  } else if (!isTRUE(all.equal(v, ref))) {
    stop(sprintf("B6: %s's result differs: %s", m, paste(all.equal(v, ref), collapse = "; ")))
  }
}
say("BENCH_NOTE results of the three methods agree (all.equal), checked on every call; tasks 1 and ",
    tasks, " also against a serial computation")

run_rounds(methods,
           groups = list(memLapply = "pyrmap", mclapply = "fork", export_parLapply = "psock"),
           workers = list(memLapply = engine_workers, mclapply = function() integer(0),
                          export_parLapply = function() psock),
           reps = reps, check = check, before = list(export_parLapply = wait_forks),
           after = list(export_parLapply = unexport))

stopCluster(cl)  # memLapply's workers end with R
say("BENCH_OK")
