# Where memApply()/memLapply() run: the default cluster (started once per
# session), a user's cluster (used as it is), how work is dealt to the
# workers, and progress reporting.

ms_shm_at_start <- shm_snapshot()

stop_default_cluster <- function() {
  ms_note_default_cluster()
  st <- pyrmap:::.state
  if (!is.null(st$cluster)) ms_stop_cluster(st$cluster)
  st$cluster <- NULL
}

test_that("the default cluster of MAX.CORES workers is started once and reused", {
  stop_default_cluster()
  X <- matrix(as.numeric(1:40), 4)
  who <- function(v) Sys.getpid()
  r1 <- memApply(X, 2, who, MAX.CORES = 2)
  cl1 <- ms_note_default_cluster()
  expect_s3_class(cl1, "cluster")
  expect_length(cl1, 2L)
  pids <- ms_worker_pids(cl1)
  expect_true(all(unlist(r1) %in% pids))
  # Its sockets send without waiting for delayed ACKs (TCP_NODELAY).
  expect_identical(parallel::clusterCall(cl1, getOption, "socketOptions"), list("no-delay", "no-delay"))
  expect_null(getOption("socketOptions"))
  r2 <- memApply(X, 2, who, MAX.CORES = 2)
  r3 <- memLapply(1:10, function(el) Sys.getpid(), MAX.CORES = 2)
  # The same cluster object and the same processes: nothing was started.
  expect_identical(ms_default_cluster(), cl1)
  expect_identical(ms_worker_pids(ms_default_cluster()), pids)
  expect_true(all(unlist(c(r2, r3)) %in% pids))
  # Another MAX.CORES replaces it (the old workers are stopped)...
  r4 <- memLapply(1:3, function(el) Sys.getpid(), MAX.CORES = 1)
  cl2 <- ms_note_default_cluster()
  expect_length(cl2, 1L)
  expect_false(unlist(r4)[1] %in% pids)
  expect_true(wait_until(function() !any(vapply(pids, proc_alive, logical(1))), timeout = 10))
  # ...and by default it has detectCores() - 1 workers (at least 1).
  invisible(memLapply(1:2, function(el) el))
  expect_length(ms_note_default_cluster(), max(1L, parallel::detectCores() - 1L))
  # A dead default cluster is replaced.
  cl3 <- ms_default_cluster()
  parallel::stopCluster(cl3)
  expect_identical(memLapply(1:2, function(el) el * 2L, MAX.CORES = 2), list(2L, 4L))
  expect_length(ms_note_default_cluster(), 2L)
  stop_default_cluster()
})

test_that("the default cluster is stopped, and this session's pages removed, when R exits", {
  ns <- ms_ns("exit")
  out <- ms_rscript(c(
    "library(pyrmap)",
    sprintf("registerVariables(%s, list(X = 1:10))", deparse(ns)),
    "cat('SEGMENT', pyrmap:::.pyrmap_view_info(retrieveViews(", deparse(ns), ", 'X')$X)$segment, '\\n')",
    "stopifnot(identical(memApply(matrix(1:4, 2), 2, sum, MAX.CORES = 2), list(3L, 7L)))",
    "cat('WORKERS', unlist(parallel::clusterCall(pyrmap:::.state$cluster, Sys.getpid)), '\\n')"))
  line <- function(tag) strsplit(trimws(sub(paste0("^", tag, " "), "", grep(paste0("^", tag), out, value = TRUE))), " ")[[1]]
  pids <- as.integer(line("WORKERS"))
  seg <- line("SEGMENT")
  expect_length(pids, 2L)
  expect_match(seg, "^pyrmap-[0-9]+-ns-")
  expect_true(wait_until(function() !any(vapply(pids, proc_alive, logical(1))), timeout = 10))
  expect_false(file.exists(file.path("/dev/shm", seg)))
})

test_that("workers map views without loading Rcpp; run_python() loads it where it is called", {
  out <- ms_rscript(c(
    "library(pyrmap)",
    "X <- matrix(as.numeric(1:6), 2)",
    "r <- memLapply(1:3, function(j, M) sum(M[, j]), VARS = list(M = X), MAX.CORES = 2)",
    "stopifnot(identical(unlist(r), colSums(X)))",
    "cl <- pyrmap:::.state$cluster",
    "cat('WORKERS_RCPP', unlist(parallel::clusterCall(cl, isNamespaceLoaded, 'Rcpp')), '\\n')",
    "cat('MASTER_RCPP', isNamespaceLoaded('Rcpp'), '\\n')",
    sprintf("r <- memLapply(1:2, function(i) pyrmap::run_python(c(i, 2 * i), %s, args = 'data + 1'), MAX.CORES = 2)",
            deparse(py("expr.py"))),
    "stopifnot(identical(r, list(c(2, 3), c(3, 5))))",
    sprintf("stopifnot(identical(run_python(c(1, 2), %s, args = 'data * 3'), c(3, 6)))", deparse(py("expr.py"))),
    "cat('AFTER_RCPP', isNamespaceLoaded('Rcpp'), '\\n')"))
  tag <- function(t) trimws(sub(paste0("^", t), "", grep(paste0("^", t), out, value = TRUE)))
  expect_identical(tag("WORKERS_RCPP"), "FALSE FALSE", info = paste(out, collapse = "\n"))
  expect_identical(tag("MASTER_RCPP"), "FALSE")
  expect_identical(tag("AFTER_RCPP"), "TRUE", info = paste(out, collapse = "\n"))
})

test_that("CLUSTER: a user's cluster is used as it is, the package neither detached nor reloaded", {
  cl <- ms_cluster(2)
  parallel::clusterCall(cl, function() {
    assign("ms_marker", 42, globalenv())
    suppressPackageStartupMessages(library(tools))
    TRUE
  })
  search_before <- parallel::clusterCall(cl, search)
  X <- matrix(as.numeric(1:20), 4)
  f <- ms_fn(function(v) get("ms_marker", globalenv()) + sum(v))
  expect_identical(unlist(memApply(X, 2, f, CLUSTER = cl)), 42 + colSums(X))
  state <- function() list(ns = sort(loadedNamespaces()), search = search(),
                           pyrmap = format(asNamespace("pyrmap")),
                           marker = get0("ms_marker", globalenv()))
  s1 <- parallel::clusterCall(cl, state)
  # The package is loaded for the call, not attached.
  expect_identical(lapply(s1, `[[`, "search"), search_before)
  # State of the worker's own pyrmap session: survives later calls.
  parallel::clusterCall(cl[1], function() pyrmap::registerVariables("mstest-worker-own", list(a = 1)))
  for (k in 1:2) {
    expect_identical(unlist(memApply(X, 1, f, CLUSTER = cl)), 42 + rowSums(X))
    expect_identical(memLapply(list(1, 2), function(el, y) el + y, VARS = list(y = 1), CLUSTER = cl),
                     list(2, 3))
  }
  s2 <- parallel::clusterCall(cl, state)
  expect_identical(s2, s1)
  expect_identical(unlist(parallel::clusterCall(cl[1], pyrmap::pageList)), "mstest-worker-own.a")
  parallel::clusterCall(cl[1], function() pyrmap::releaseVariables("mstest-worker-own", "a"))
  # The call did not touch the default cluster, nor stop the user's.
  expect_null(ms_default_cluster())
  expect_identical(parallel::clusterCall(cl, function() 1), list(1, 1))
  parallel::stopCluster(cl)
})

test_that("uneven tasks are balanced: of 4 slow tasks, each of 2 workers runs 2", {
  # Balance is read from who ran what, not from the clock (a loaded machine
  # stretches any time): a static 2-way split, or a first chunk holding all
  # 4 slow tasks, gives them all to one worker. It would take a worker
  # stalled for a whole slow task (0.5 s) to unbalance a dynamic schedule.
  cl <- ms_cluster(2)
  X <- matrix(as.numeric(1:20), 1)
  invisible(memApply(X, 2, function(v) v, CLUSTER = cl))  # the workers load pyrmap
  f <- ms_fn(function(v) {
    if (v <= 4) Sys.sleep(0.5)
    Sys.getpid()
  })
  t <- system.time(r <- memApply(X, 2, f, CLUSTER = cl))[["elapsed"]]
  expect_gte(t, 0.95)  # 2 slow tasks in a row somewhere: never faster
  expect_setequal(unique(unlist(r)), ms_worker_pids(cl))
  expect_identical(sort(as.vector(table(unlist(r[1:4])))), c(2L, 2L))
  # Slow tasks at the end.
  g <- ms_fn(function(v) {
    if (v >= 17) Sys.sleep(0.5)
    c(v, Sys.getpid())
  })
  r <- memApply(X, 2, g, CLUSTER = cl)
  expect_identical(vapply(r, `[[`, 0, 1), as.numeric(1:20))
  expect_identical(sort(as.vector(table(vapply(r[17:20], `[[`, 0, 2)))), c(2L, 2L))
  # Many cheap tasks still travel in large chunks (not one round trip each).
  t <- system.time(r <- memLapply(1:20000, function(el) el, CLUSTER = cl))[["elapsed"]]
  expect_identical(r, as.list(1:20000))
  expect_lt(t, 5)
  parallel::stopCluster(cl)
})

test_that("progress is signalled through progressr up to the total; without a handler it is silent", {
  skip_if_not_installed("progressr")
  cl <- ms_cluster(2)
  rec <- new.env()
  recorder <- function(...) {
    progressr::make_progression_handler("ms_recorder", reporter = list(
      initiate = function(config, state, progression, ...) rec$max <- config$max_steps,
      update = function(config, state, progression, ...) rec$steps <- c(rec$steps, state$step),
      finish = function(config, state, progression, ...) rec$final <- state$step
    ), enable = TRUE, ...)
  }
  reset <- function() { rec$steps <- numeric(); rec$max <- NA; rec$final <- NA }
  X <- matrix(as.numeric(1:60), 3)
  reset()
  progressr::with_progress(res <- memApply(X, 2, sum, CLUSTER = cl), handlers = recorder, enable = TRUE)
  expect_identical(unlist(res), colSums(X))
  expect_equal(rec$max, 20)
  expect_equal(rec$final, 20)
  expect_equal(max(rec$steps), 20)
  expect_false(is.unsorted(rec$steps))
  reset()
  progressr::with_progress(res <- memLapply(1:50, function(el) el, CLUSTER = cl),
                           handlers = recorder, enable = TRUE)
  expect_equal(rec$max, 50)
  expect_equal(rec$final, 50)
  # progressr's own void handler is fine too.
  expect_silent(progressr::with_progress(memApply(X, 1, sum, CLUSTER = cl),
                                         handlers = progressr::handler_void, enable = TRUE))
  # No handler: no output, even with progress enabled.
  expect_silent(res <- memApply(X, 2, sum, CLUSTER = cl))
  old <- options(progressr.enable = TRUE)
  on.exit(options(old))
  expect_silent(res <- memApply(X, 2, sum, CLUSTER = cl))
  expect_silent(res <- memLapply(1:5, function(el) el, CLUSTER = cl))
  parallel::stopCluster(cl)
})

test_that("the end of the file leaves no worker and no segment", {
  ms_expect_clean_end(ms_shm_at_start)
})
