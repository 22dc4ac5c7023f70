# The examples of memshare's vignette (shared/seeds/memshare-vignette.Rmd),
# unchanged but for smaller sizes, run with library(pyrmap) and give what
# base R gives. They run at top level in a fresh session, as a user would
# (pyrmap's own workers included), in a child Rscript.

ms_shm_at_start <- shm_snapshot()

test_that("the vignette's examples run unchanged and agree with base R", {
  out <- ms_rscript(c(
    "library(pyrmap)",
    "",
    "## 1) Column-wise work on a matrix (memApply)",
    "set.seed(1)",
    "n <- 1000; p <- 200",
    "X <- matrix(rnorm(n * p), n, p)   # numeric/double matrix",
    "y <- rnorm(n)",
    "res <- memApply(",
    "  X = X, MARGIN = 2,",
    "  FUN = function(v, y) cor(v, y),",
    "  VARS = list(y = y)           # shared side data",
    ")",
    "str(res)",
    "stopifnot(is.list(res), length(res) == p,",
    "          isTRUE(all.equal(unlist(res), apply(X, 2, function(v) cor(v, y)), tolerance = 0)))",
    "",
    "## 2) List workloads (memLapply)",
    "list_length <- 50",
    "d <- 20",
    "L <- lapply(1:list_length, function(i) matrix(rnorm(d * d), d, d))",
    "w <- rnorm(d)",
    "ans <- memLapply(L, function(el, w) el %*% w, VARS = list(w = w))",
    "length(ans); dim(ans[[1]])",
    "stopifnot(identical(ans, lapply(L, function(el) el %*% w)))",
    "",
    "## 3) Low-level control (register / retrieve / release)",
    "ns <- \"demo\"",
    "X  <- matrix(rnorm(1e6), 1000, 1000)",
    "registerVariables(ns, list(X = X))",
    "vw <- retrieveViews(ns, \"X\")",
    "mean(vw$X[ , 1])",
    "stopifnot(identical(mean(vw$X[ , 1]), mean(X[, 1])))",
    "releaseViews(ns, \"X\")",
    "releaseVariables(ns, \"X\")",
    "stopifnot(length(viewList()) == 0, length(pageList()) == 0)",
    "",
    "## Feature map over columns",
    "n <- 1000; p <- 200",
    "X <- matrix(rnorm(n * p), n, p)",
    "score <- function(v, a, b) sum((v - a)^2) / (1 + b)  # any column-wise work",
    "ns <- \"scores\"",
    "a <- rnorm(n); b <- runif(1)",
    "out <- memApply(X = X, MARGIN = 2, FUN = score, VARS = list(a = a, b = b), NAMESPACE = ns)",
    "stopifnot(identical(unlist(out), apply(X, 2, score, a = a, b = b)))",
    "stopifnot(length(pageList()) == 0)",
    "",
    "## Multiple passes on the same data",
    "ns <- \"reuse\"",
    "registerVariables(ns, list(X = X))",
    "pass1 <- memApply(\"X\", 2, function(v) sd(v), NAMESPACE = ns)",
    "pass2 <- memApply(\"X\", 2, function(v) mean(v), NAMESPACE = ns)",
    "releaseVariables(ns, \"X\")",
    "stopifnot(identical(unlist(pass1), apply(X, 2, sd)), identical(unlist(pass2), apply(X, 2, mean)))",
    "stopifnot(length(viewList()) == 0, length(pageList()) == 0)",
    "# The workers hold no view of the earlier calls' variables.",
    "held <- memLapply(1:4, function(i) { Sys.sleep(0.1); length(pyrmap::viewList()) })",
    "stopifnot(identical(unlist(held), rep(0L, 4)))",
    "cat('WORKERS', pyrmap:::.engine_info()$pids, '\\n')",
    "cat('VIGNETTE OK\\n')"))
  expect_true("VIGNETTE OK" %in% out, label = paste(out, collapse = "\n"))
  expect_true(any(grepl("List of 200", out, fixed = TRUE)))
  pids <- as.integer(strsplit(trimws(sub("^WORKERS ", "", grep("^WORKERS", out, value = TRUE))), " ")[[1]])
  expect_true(length(pids) >= 1L)
  expect_true(wait_until(function() !any(vapply(pids, proc_alive, logical(1))), timeout = 10))
})

test_that("the vignette's examples give the same answers in this session, on 2 workers", {
  cl <- ms_cluster(2)
  set.seed(1)
  n <- 2000; p <- 100
  X <- matrix(rnorm(n * p), n, p)
  y <- rnorm(n)
  res <- memApply(X = X, MARGIN = 2, FUN = function(v, y) cor(v, y), VARS = list(y = y), CLUSTER = cl)
  expect_equal(unlist(res), apply(X, 2, function(v) cor(v, y)), tolerance = 0)
  ns <- ms_ns("reuse")
  registerVariables(ns, list(X = X))
  pass1 <- memApply("X", 2, function(v) sd(v), NAMESPACE = ns, CLUSTER = cl)
  pass2 <- memApply("X", 1, function(v) mean(v), NAMESPACE = ns, CLUSTER = cl)
  releaseVariables(ns, "X")
  expect_identical(unlist(pass1), apply(X, 2, sd))
  expect_identical(unlist(pass2), apply(X, 1, mean))
  expect_identical(parallel::clusterCall(cl, viewList), list(list(), list()))
})

test_that("the end of the file leaves no worker and no segment", {
  ms_expect_clean_end(ms_shm_at_start)
})
