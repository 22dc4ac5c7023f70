# B5: memApply on the vignette's workload (per column cor(v, y)) against
# parApply on a PSOCK cluster, mclapply, and serial apply, in one R session.
#
#   Rscript b5.R REPS NROW NCOL BENCH_DIR
#
# X = matrix(rnorm(NROW * NCOL)), y = rnorm(NROW), made before anything is
# timed; both clusters (2 workers each) are started and every method is run
# once, untimed, before the timed rounds (memApply's first call starts its
# own workers, MAX.CORES = 2). Then REPS rounds, the methods in rotating
# order; the protocol (BENCH_* lines) is described in par_common.R. Every
# result is compared with serial apply's (all.equal); a mismatch stops R.

args <- commandArgs(trailingOnly = TRUE)
reps <- as.integer(args[[1]])
n <- as.integer(args[[2]])
p <- as.integer(args[[3]])
bench_dir <- args[[4]]
source(file.path(bench_dir, "r", "par_common.R"))

X <- start_bench(n, p)
y <- rnorm(n)

cl <- psock_cluster()

# The timed calls, exactly as a user writes them (each FUN's environment is
# the small frame of its method's function, so nothing big travels with it).
methods <- list(
  memApply = function() memApply(X, 2, function(v, y) cor(v, y), VARS = list(y = y), MAX.CORES = 2),
  parApply = function() parallel::parApply(cl, X, 2, function(v, y) cor(v, y), y = y),
  mclapply = function() parallel::mclapply(seq_len(ncol(X)), function(j) cor(X[, j], y), mc.cores = 2),
  apply = function() apply(X, 2, function(v, y) cor(v, y), y = y)
)

# Warm-up, untimed: one call of each; serial apply's result is the reference.
ref <- as.numeric(methods$apply())
check <- function(m, res) {
  v <- as.numeric(unlist(res))
  if (!isTRUE(all.equal(v, ref)))
    stop(sprintf("B5: %s's result differs from serial apply's: %s", m,
                 paste(all.equal(v, ref), collapse = "; ")))
}
for (m in c("memApply", "parApply", "mclapply")) {
  check(m, methods[[m]]())
  if (m == "mclapply") after_fork()
}
mcl <- engine_pids()
say("BENCH_PIDS pyrmap ", paste(mcl, collapse = " "))
say("BENCH_NOTE results of all methods agree with serial apply's (all.equal), checked on every call")

run_rounds(methods,
           groups = list(memApply = "pyrmap", parApply = "psock", mclapply = "fork", apply = "none"),
           clusters = list(memApply = mcl, parApply = cl),
           reps = reps, check = check, after = list(mclapply = after_fork))

stopCluster(cl)  # memApply's workers end with R
say("BENCH_OK")
