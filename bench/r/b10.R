# B10: memLapply across hosts. Two simulated hosts (mount and IPC namespaces
# with their own /dev/shm, as the multi-host tests make them; needs root),
# two PSOCK workers on each, started through an rsh that enters the host;
# the master runs on the first host. The B6 workload: every task needs the
# whole NROW x NCOL matrix as side data; task j computes
# sum(abs(cor(X[, j], X))) for j in 1:TASKS.
#
#   Rscript b10.R REPS NROW NCOL TASKS
#
# Methods, each timed as a user writes it, alternating, REPS rounds:
#   memLapply         memLapply(idx, f, VARS = list(M = X), CLUSTER = cl)
#   memLapply_registered  the matrix registered once (registerVariables,
#                     untimed, before the rounds), memLapply(idx, f,
#                     NAMESPACE =, VARS = "M", CLUSTER = cl)
#   export_parLapply  clusterExport(cl, "X") + parLapply(cl, idx, f)
# Bytes: what the four workers received over TCP during the call (the
# kernel's counters of their sockets, `ss -tinp`). After export_parLapply,
# X is removed from the workers, untimed. Prints a markdown table (medians).

args <- commandArgs(trailingOnly = TRUE)
reps <- as.integer(args[[1]])
n <- as.integer(args[[2]])
p <- as.integer(args[[3]])
tasks <- as.integer(args[[4]])
self <- normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(), value = TRUE)))
enter <- normalizePath(file.path(dirname(self), "..", "..", "r-pkg", "tests", "testthat", "hosts", "enter-host"))

if (!nzchar(Sys.getenv("B10_INSIDE"))) {
  # The hosts, held by sleeping processes; then this script again, in h1.
  if (!identical(as.integer(system2("id", "-u", stdout = TRUE)), 0L)) {
    cat("BENCH_SKIP simulated hosts need root (mount and IPC namespaces)\n")
    quit(status = 0)
  }
  source(file.path(dirname(enter), "hosts.R"))
  hosts <- make_hosts(c("h1", "h2"), "4g")
  on.exit(drop_hosts(hosts))
  status <- in_host(hosts$base, "h1", c("env", paste0("PYRMAP_TEST_HOSTS=", hosts$base), "B10_INSIDE=1",
                                        file.path(R.home("bin"), "Rscript"), shQuote(self), args))
  drop_hosts(hosts)
  quit(status = status)
}

suppressPackageStartupMessages({
  library(parallel)
  library(pyrmap)
})
received <- function(pids) {
  out <- system2("ss", "-tinpH", stdout = TRUE)
  heads <- grep("^\\S", out)
  sum(vapply(pids, function(pid) {
    info <- out[heads[grepl(sprintf("pid=%d,", pid), out[heads], fixed = TRUE)] + 1L]
    sum(as.numeric(sub(".*bytes_received:([0-9]+).*", "\\1", info[grepl("bytes_received:", info)])))
  }, 0))
}

set.seed(1)
X <- matrix(rnorm(n * p), n, p)
cl <- makePSOCKcluster(c("h1", "h1", "h2", "h2"), rshcmd = enter, master = "127.0.0.1", homogeneous = TRUE)
on.exit(stopCluster(cl))
pids <- unlist(clusterCall(cl, Sys.getpid))
f_shared <- function(j, M) sum(abs(cor(M[, j], M)))
f_export <- function(j) sum(abs(cor(X[, j], X)))
registerVariables("b10", list(M = X))
idx <- seq_len(tasks)
methods <- list(
  memLapply = function() memLapply(idx, f_shared, VARS = list(M = X), CLUSTER = cl),
  memLapply_registered = function() memLapply(idx, f_shared, NAMESPACE = "b10", VARS = "M", CLUSTER = cl),
  export_parLapply = function() {
    clusterExport(cl, "X")
    parLapply(cl, idx, f_export)
  })
after <- list(export_parLapply = function() invisible(clusterEvalQ(cl, { rm(X); NULL })))

secs <- bytes <- matrix(NA_real_, reps, length(methods), dimnames = list(NULL, names(methods)))
ref <- NULL
for (r in seq_len(reps)) for (m in names(methods)) {
  b0 <- received(pids)
  t0 <- proc.time()[["elapsed"]]
  res <- methods[[m]]()
  secs[r, m] <- proc.time()[["elapsed"]] - t0
  bytes[r, m] <- received(pids) - b0
  v <- as.numeric(unlist(res))
  if (is.null(ref)) ref <- v
  else if (!isTRUE(all.equal(v, ref))) stop("B10: ", m, "'s result differs from the first method's")
  if (!is.null(after[[m]])) after[[m]]()
}
med_t <- apply(secs, 2, stats::median)
med_b <- apply(bytes, 2, stats::median)
for (m in names(methods))
  cat(sprintf("BENCH_B10 %s %s %s\n", m, paste(sprintf("%.6f", secs[, m]), collapse = ","),
              paste(sprintf("%.0f", bytes[, m]), collapse = ",")))
cat(sprintf("B10 — memLapply across 2 simulated hosts x 2 workers (master on h1), whole %d x %d matrix (%.0f MB) as side data, %d tasks, %d rounds\n\n",
            n, p, 8 * n * p / 1e6, tasks, reps))
cat("| method | median time (s) | time vs export+parLapply | median MB received by the workers | bytes vs export+parLapply |\n")
cat("|---|---|---|---|---|\n")
for (m in names(methods))
  cat(sprintf("| %s | %.2f | %.2f× | %.1f | %.3f× |\n", m, med_t[[m]], med_t[[m]] / med_t[["export_parLapply"]],
              med_b[[m]] / 1e6, med_b[[m]] / med_b[["export_parLapply"]]))
cat(sprintf("\nFirst round of memLapply_registered (the copy to h2 is sent then): %.2f s, %.1f MB. Results agree (all.equal) across methods on every call. No gc() and no warm-up in any method.\n",
            secs[1, "memLapply_registered"], bytes[1, "memLapply_registered"] / 1e6))
