# memApply and memLapply on a cluster whose workers are on other (simulated)
# hosts: each host's shared memory gets one copy of the data, however many
# workers read it there; the results are those of a local run; nothing is
# left on any host.

# Bytes the processes `pids` have received over TCP so far (from the
# kernel's counters of their sockets: `ss -tinp`).
read_bytes <- function(pids) {
  out <- system2("ss", "-tinpH", stdout = TRUE)
  heads <- grep("^\\S", out)
  vapply(pids, function(p) {
    own <- heads[grepl(sprintf("pid=%d,", p), out[heads], fixed = TRUE)]
    info <- out[own + 1L]
    sum(as.numeric(sub(".*bytes_received:([0-9]+).*", "\\1",
                       info[grepl("bytes_received:", info, fixed = TRUE)])))
  }, 0)
}

# The pyrmap pages in a simulated host's /dev/shm (token pages included).
host_pages <- function(base, host) grep("^pyrmap", host_shm(base, host), value = TRUE)

# TRUE while process `pid` runs (a zombie waiting to be reaped does not).
running <- function(pid) {
  stat <- tryCatch(suppressWarnings(readLines(sprintf("/proc/%d/stat", pid), warn = FALSE)),
                   error = function(e) "")
  nzchar(stat) && !grepl("^[0-9]+ \\(.*\\) Z", stat)
}

hosts_cluster <- function(base, env = parent.frame()) {
  cl <- parallel::makePSOCKcluster(c("h1", "h1", "h2", "h2"), rshcmd = enter_host(),
                                   master = "127.0.0.1", homogeneous = TRUE)
  withr::defer(try(parallel::stopCluster(cl), silent = TRUE), envir = env)
  cl
}

skip_without_ss <- function() if (!nzchar(Sys.which("ss"))) testthat::skip("counting bytes needs ss (iproute2)")

test_that("memApply over two hosts: the results of a local run, one copy of the data per host", {
  skip_without_hosts()
  skip_without_ss()
  base <- local_hosts(c("h1", "h2"))
  cl <- hosts_cluster(base)
  set.seed(1)
  X <- matrix(rnorm(4000 * 100), 4000, 100)   # 3.2 MB
  y <- rnorm(4000)
  # (FUN made in the global environment: one made here would carry the
  # test's data along in its environment.)
  f <- local(function(v, y) sum(v * y), envir = globalenv())
  local <- memApply(X, 2, f, VARS = list(y = y))
  pids <- unlist(parallel::clusterCall(cl, Sys.getpid))
  size <- 8 * (length(X) + length(y))

  before <- read_bytes(pids)
  remote <- memApply(X, 2, f, CLUSTER = cl, VARS = list(y = y))
  got <- read_bytes(pids) - before
  expect_identical(remote, local)
  per_host <- c(sum(got[1:2]), sum(got[3:4]))
  # One copy per host: at least the data, far less than a copy per worker.
  expect_true(all(per_host >= size), info = paste(per_host, collapse = " "))
  expect_true(all(per_host < 1.5 * size), info = paste(per_host, collapse = " "))

  # The measure sees a copy per worker when there is one.
  before <- read_bytes(pids)
  parallel::clusterExport(cl, "X", envir = environment())
  got <- read_bytes(pids) - before
  expect_true(all(c(sum(got[1:2]), sum(got[3:4])) >= 2 * 8 * length(X)))

  # The call's temporary copies are gone from the hosts; what is left is
  # each host's token page (its leader's), which goes with the leader.
  expect_length(host_pages(base, "h1"), 1L)
  expect_length(host_pages(base, "h2"), 1L)

  ans <- memLapply(lapply(1:30, function(i) X[, i]), f, CLUSTER = cl, VARS = list(y = y))
  expect_identical(ans, memLapply(lapply(1:30, function(i) X[, i]), f, VARS = list(y = y)))

  parallel::stopCluster(cl)
  expect_identical(host_pages(base, "h1"), character(0))
  expect_identical(host_pages(base, "h2"), character(0))
})

test_that("across hosts, every form of X, FUN.VALUE and FUN's errors give what a local run gives", {
  skip_without_hosts()
  base <- local_hosts(c("h1", "h2"))
  cl <- hosts_cluster(base)
  set.seed(3)
  m <- matrix(rnorm(60), 6, 10, dimnames = list(letters[1:6], LETTERS[1:10]))
  df <- data.frame(a = 1:5, b = c(0.5, NA, 2, 3, 4), c = c(TRUE, FALSE, NA, TRUE, TRUE))
  nums <- list(1:3, c(0.5, 2), matrix(1:4, 2), TRUE)
  local_and_remote <- function(call) {
    remote <- eval(call, list(CLUSTER = cl), parent.frame())
    local <- eval(call, list(CLUSTER = NULL), parent.frame())
    expect_identical(remote, local)
  }
  local_and_remote(quote(memApply(m, 1, sum, CLUSTER = CLUSTER)))
  local_and_remote(quote(memApply(m, 2, range, CLUSTER = CLUSTER, FUN.VALUE = numeric(2))))
  local_and_remote(quote(memApply(m, 2, function(v) v > 0, CLUSTER = CLUSTER)))
  local_and_remote(quote(memApply(df, 2, function(col) sum(col, na.rm = TRUE), CLUSTER = CLUSTER)))
  local_and_remote(quote(memLapply(nums, length, CLUSTER = CLUSTER, FUN.VALUE = integer(1))))
  local_and_remote(quote(memLapply(nums, function(v) v * 2L, CLUSTER = CLUSTER)))
  local_and_remote(quote(memLapply(as.numeric(1:25), function(x, k) x * k, CLUSTER = CLUSTER,
                                   VARS = list(k = 3))))
  err <- expect_error(memLapply(1:20, function(x) if (x == 13) stop("thirteen") else x, CLUSTER = cl),
                      class = "pyrmap_fun_error")
  expect_match(conditionMessage(err), "FUN failed on element 13: thirteen")
  # The cluster is still usable, and nothing of the calls is left on the hosts.
  local_and_remote(quote(memLapply(1:4, sqrt, CLUSTER = CLUSTER)))
  expect_length(host_pages(base, "h1"), 1L)
  expect_length(host_pages(base, "h2"), 1L)
})

test_that("registered variables go to each host once, are found there by retrieveViews(), and are released everywhere", {
  skip_without_hosts()
  skip_without_ss()
  base <- local_hosts(c("h1", "h2"))
  cl <- hosts_cluster(base)
  ns <- "hosts_test"
  set.seed(2)
  M <- matrix(runif(3000 * 50), 3000, 50)
  w <- runif(3000)
  registerVariables(ns, list(M = M, w = w))
  on.exit(try(releaseVariables(ns, c("M", "w")), silent = TRUE), add = TRUE)
  f <- local(function(v, w) sum(v * w), envir = globalenv())
  pids <- unlist(parallel::clusterCall(cl, Sys.getpid))
  size <- 8 * (length(M) + length(w))

  before <- read_bytes(pids)
  first <- memApply("M", 2, f, NAMESPACE = ns, CLUSTER = cl, VARS = "w")
  shipped <- read_bytes(pids) - before
  expect_identical(first, memApply("M", 2, f, NAMESPACE = ns, VARS = "w"))
  expect_true(all(c(sum(shipped[1:2]), sum(shipped[3:4])) >= size))

  # Unchanged: not sent again.
  before <- read_bytes(pids)
  again <- memApply("M", 2, f, NAMESPACE = ns, CLUSTER = cl, VARS = "w")
  got <- read_bytes(pids) - before
  expect_identical(again, first)
  expect_true(sum(got) < 0.1 * size, info = paste(got, collapse = " "))

  # A worker on another host finds the variable its host received.
  sums <- parallel::clusterCall(cl, function(ns) sum(pyrmap::retrieveViews(ns, "M")$M), ns)
  expect_identical(unlist(sums), rep(sum(M), 4))

  # Registered anew with other values: sent again, and used.
  releaseVariables(ns, "M")
  registerVariables(ns, list(M = 2 * M))
  before <- read_bytes(pids)
  third <- memApply("M", 2, f, NAMESPACE = ns, CLUSTER = cl, VARS = "w")
  got <- read_bytes(pids) - before
  expect_identical(third, memApply(2 * M, 2, f, VARS = list(w = w)))
  expect_true(all(c(sum(got[1:2]), sum(got[3:4])) >= 8 * length(M)))

  # Released in the master: released on the hosts (the token page stays).
  expect_length(host_pages(base, "h1"), 3L)
  releaseVariables(ns, c("M", "w"))
  expect_length(host_pages(base, "h1"), 1L)
  expect_length(host_pages(base, "h2"), 1L)
  expect_error(parallel::clusterCall(cl, function(ns) pyrmap::retrieveViews(ns, "M"), ns),
               "not registered|no variable")
})

test_that("a host whose shared memory cannot take the data: a clear error, nothing left anywhere", {
  skip_without_hosts()
  base <- local_hosts(c("h1", "h2"), shm_size = "1m")
  cl <- hosts_cluster(base)
  X <- matrix(runif(4000 * 100), 4000, 100)   # 3.2 MB
  before <- list.files("/dev/shm", "^pyrmap")
  err <- expect_error(memApply(X, 2, sum, CLUSTER = cl), class = "pyrmap_system_error")
  expect_match(conditionMessage(err),
               "worker 1 of the cluster \\(another shared-memory domain\\) could not take X: .*No space left on device")
  expect_match(conditionMessage(err), "needs 3.1 MiB .* free")
  expect_identical(setdiff(list.files("/dev/shm", "^pyrmap"), before), character(0))
  expect_length(host_pages(base, "h1"), 1L)   # the leader's token page only
  expect_length(host_pages(base, "h2"), 1L)
  # The cluster still works for what fits.
  small <- matrix(runif(100 * 10), 100, 10)
  expect_identical(memApply(small, 2, sum, CLUSTER = cl), memApply(small, 2, sum))
})

test_that("workers that no longer share what they did are grouped anew", {
  skip_without_hosts()
  base <- local_hosts(c("h1", "h2"))
  cl <- hosts_cluster(base)
  X <- matrix(runif(200 * 20), 200, 20)
  expect_identical(memApply(X, 2, sum, CLUSTER = cl), memApply(X, 2, sum))
  # The leader of h1 drops its token page: the cached grouping no longer
  # holds (as when a worker is replaced), and the next call finds it out.
  parallel::clusterCall(cl[1], function() pyrmap:::.release_domain_token())
  expect_length(host_pages(base, "h1"), 0L)
  expect_identical(memApply(X, 1, sum, CLUSTER = cl), memApply(X, 1, sum))
  expect_length(host_pages(base, "h1"), 1L)
})

test_that("a master that dies leaves nothing on the hosts once pyrmap gc ran there", {
  skip_without_hosts()
  base <- local_hosts(c("h1", "h2"))
  ready <- tempfile("master-ready")
  script <- tempfile("master", fileext = ".R")
  writeLines(c(
    "library(pyrmap)",
    sprintf("cl <- parallel::makePSOCKcluster(c('h1', 'h1', 'h2', 'h2'), rshcmd = '%s', master = '127.0.0.1', homogeneous = TRUE)",
            enter_host()),
    "registerVariables('dying', list(M = matrix(1:20000, 200, 100)))",
    "r <- memApply('M', 2, sum, NAMESPACE = 'dying', CLUSTER = cl)",
    "pids <- unlist(parallel::clusterCall(cl, Sys.getpid))",
    sprintf("writeLines(as.character(c(Sys.getpid(), pids)), '%s')", ready),
    "Sys.sleep(600)"), script)
  lib <- dirname(system.file(package = "pyrmap"))
  withr::with_envvar(c(R_LIBS = paste(c(lib, .libPaths()), collapse = ":")),
                     system2(file.path(R.home("bin"), "Rscript"), shQuote(script), wait = FALSE,
                             stdout = FALSE, stderr = FALSE))
  deadline <- Sys.time() + 120
  while (!file.exists(ready) || length(readLines(ready)) < 5L) {
    if (Sys.time() > deadline) fail("the master did not start its cluster within 120 s")
    Sys.sleep(0.2)
  }
  pids <- as.integer(readLines(ready))
  on.exit(tools::pskill(pids, tools::SIGKILL), add = TRUE)
  # While the master lives, each host holds the registered copy (and a token).
  expect_length(host_pages(base, "h1"), 2L)
  expect_length(host_pages(base, "h2"), 2L)
  tools::pskill(pids[[1L]], tools::SIGKILL)
  deadline <- Sys.time() + 60
  while (any(vapply(pids[-1L], running, logical(1)))) {
    if (Sys.time() > deadline) fail("the workers did not end within 60 s of their master")
    Sys.sleep(0.2)
  }
  for (h in c("h1", "h2")) {
    expect_identical(in_host(base, h, c(pyrmap_command(), "gc"), stdout = FALSE, stderr = FALSE), 0L)
    expect_identical(host_pages(base, h), character(0))
  }
  system2(pyrmap_command(), "gc", stdout = FALSE, stderr = FALSE)
})
