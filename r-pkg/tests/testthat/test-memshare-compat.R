# memshare's own examples and tests, written out again, run with pyrmap in
# place of memshare: `library(memshare)` became `library(pyrmap)` and the
# prefix `memshare::` became `pyrmap::`; nothing else in the code they run
# changed, except sizes of the README's examples (made smaller, as in
# test-memshare-vignette.R, which holds the vignette's examples). Checks that
# the examples only state in comments ("# = list()") are made assertions, and
# what the examples leave behind (a cluster) is cleaned up at the end.
#
# Sources: the man/ examples and README of the CRAN package memshare, and
# the testthat tests of its development repository (Mthrun/memshare).
#
# Left out, and why:
# - man/memshare-package.Rd's example: it calls memshare::mutualinfo(), a
#   statistics function of memshare's, not part of the shared-memory API.
# - tests/testthat/test-error-handling.R, "memApply gives warning for
#   non-double matrices and non-matrix inputs": it pins memshare's
#   conversions, whose warnings it expects. pyrmap converts neither (an
#   integer matrix is shared as it is, a data.frame with MARGIN = 2 column by
#   column), so there is nothing to warn about; the data.frame case is
#   tested below on what pyrmap does instead.
# - Three tests that pin memshare's exact error wording: "memLapply detects
#   malformed VARS argument" ("element type"), "registerVariables errors on
#   duplicate registration" ("Variable was already registered!"),
#   "registerVariables errors on unsupported object type" ("Unknown element
#   type"). They are below with the wording check replaced by pyrmap's
#   condition class.
# - test-os-specific.R's macOS and Windows tests are kept; they skip
#   themselves on Linux, as in memshare.

compat_shm_at_start <- shm_snapshot()
compat_clusters <- list()
on_cluster <- function(cl) {
  compat_clusters[[length(compat_clusters) + 1L]] <<- cl
  ms_clusters$pids <- c(ms_clusters$pids, ms_worker_pids(cl))
  cl
}

# ---- man/ examples ----------------------------------------------------------------

test_that("man/memApply.Rd example", {
  library(parallel)
  cl = makeCluster(1)
  on_cluster(cl)
  i = 1
  A1 = matrix(as.double(1:10^(i+1)),10^i, 10^i)

  res = memApply(X = A1, MARGIN = 2, FUN = function(x) {
    return(sd(x))
  }, CLUSTER=cl, NAMESPACE="ns_apply")

  SD_vector=unlist(res)
  expect_equal(SD_vector, apply(A1, 2, sd))
})

# Runs `code` at top level, as example() runs an example (a function defined
# there has the global environment, which does not travel with it), then
# removes the objects it made.
at_top_level <- function(code) {
  before <- ls(globalenv(), all.names = TRUE)
  on.exit(rm(list = setdiff(ls(globalenv(), all.names = TRUE), before), envir = globalenv()))
  eval(substitute(code), globalenv())
}

test_that("man/memLapply.Rd example", {
  at_top_level({
  list_length = 1000
  matrix_dim = 100

  l = lapply(
      1:list_length,
      function(i) matrix(rnorm(matrix_dim * matrix_dim),
      nrow = matrix_dim, ncol = matrix_dim))

  y = rnorm(matrix_dim)

  namespace = "ns_lapply"
  res = pyrmap::memLapply(l, function(el, y) {
    el %*% y
  }, NAMESPACE=namespace, VARS=list(y=y), MAX.CORES = 1)
  testthat::expect_equal(res, lapply(l, function(el) el %*% y))
  })
})

test_that("man/registerVariables.Rd example", {
  library(pyrmap)
  n = 10
  m = 10

  TargetMat= matrix(rnorm(n * m), n, m) # target matrix
  x_vec = rnorm(n) # some other vector

  namespace = "ns_register"
  registerVariables(namespace, list(TargetMat=TargetMat, x_vec=x_vec))
  pyrmap::releaseVariables(namespace, c("TargetMat", "x_vec"))
  expect_false(any(startsWith(as.character(unlist(pageList())), "ns_register.")))
})

test_that("man/retrieveViews.Rd example", {
  n = 1000
  m = 100

  mat = matrix(rnorm(n * m), n, m) # target matrix
  y = rnorm(n) # some other constant vector in which the function should not run

  namespace = "ns_retrview"
  pyrmap::registerVariables(namespace, list(mat=mat, y=y))
  res = pyrmap::retrieveViews(namespace, c("mat", "y"))
  expect_identical(names(res), c("mat", "y"))
  expect_true(is.matrix(res$mat) && is.numeric(res$mat))
  expect_identical(res$mat[, ], mat)
  expect_identical(res$y[], y)
  pyrmap::releaseViews(namespace, c("mat", "y"))
  pyrmap::releaseVariables(namespace, c("mat", "y"))
})

test_that("man/retrieveMetadata.Rd example", {
  n = 1000
  m = 100

  mat = matrix(rnorm(n * m), n, m) # target matrix

  namespace = "ns_meta"
  pyrmap::registerVariables(namespace, list(mat=mat))
  res = pyrmap::retrieveMetadata(namespace, "mat")
  expect_identical(res$type, "matrix")
  expect_equal(res$nrow, 1000)
  expect_equal(res$ncol, 100)
  releaseViews(namespace, c("mat"))
  pyrmap::releaseVariables(namespace, c("mat"))
})

test_that("man/releaseViews.Rd example", {
  n = 1000
  m = 100

  mat = matrix(rnorm(n * m), n, m) # target matrix
  y = rnorm(n) # some other constant vector in which the function should not run

  namespace = "ns_relview"
  pyrmap::registerVariables(namespace, list(mat=mat, y=y))
  res = retrieveViews(namespace, c("mat", "y"))
  releaseViews(namespace, c("mat", "y"))
  pyrmap::releaseVariables(namespace, c("mat", "y"))
  expect_false(any(startsWith(as.character(unlist(c(pageList(), viewList()))), "ns_relview.")))
})

test_that("man/releaseVariables.Rd example", {
  n = 1000
  m = 100

  NumMatrix = matrix(rnorm(n * m), n, m) # target matrix
  yvec = rnorm(n)
  namespace = "ns_release"
  pyrmap::registerVariables(namespace, list(NumMatrix=NumMatrix, yvec=yvec))
  pyrmap::releaseVariables(namespace, c("NumMatrix", "yvec"))
  expect_false(any(startsWith(as.character(unlist(pageList())), "ns_release.")))
})

test_that("man/viewList.Rd example", {
  mat = matrix(0,5,5)
  registerVariables("ns_viewL", list(mat=mat))

  expect_false("ns_viewL.mat" %in% unlist(viewList())) # an empty list to begin with (no views retrieved)

  matref = retrieveViews("ns_viewL", c("mat"))
  expect_true("ns_viewL.mat" %in% unlist(viewList()))   # now equals c("ns_viewL.mat")

  releaseViews("ns_viewL", c("mat"))
  expect_false("ns_viewL.mat" %in% unlist(viewList()))  # an empty list again
  releaseVariables("ns_viewL", c("mat"))
})

test_that("man/pageList.Rd example", {
  pageList()
  mat = matrix(0,5,5)
  registerVariables("ns_pageL", list(mat=mat))
  expect_true("ns_pageL.mat" %in% unlist(pageList()))
  releaseVariables("ns_pageL", c("mat"))
  expect_false("ns_pageL.mat" %in% unlist(pageList()))
})

test_that("man/memshare_gc.Rd example", {
  cluster = parallel::makeCluster(1)
  on_cluster(cluster)

  mat = matrix(0,5,5)
  registerVariables("ns", list(mat=mat))

  parallel::clusterEvalQ(cluster, {
    view = pyrmap::retrieveViews("ns", c("mat"))
  })
  expect_identical(parallel::clusterEvalQ(cluster, unlist(pyrmap::viewList())), list("ns.mat"))
  memshare_gc("ns", cluster)
  # Every worker's view and this session's page are gone.
  expect_identical(parallel::clusterEvalQ(cluster, unlist(pyrmap::viewList())), list(NULL))
  expect_false("ns.mat" %in% unlist(pageList()))
  parallel::stopCluster(cluster)
})

# ---- README examples (smaller sizes) ------------------------------------------------

test_that("README example 1: parallel correlations with a matrix", {
  library(pyrmap)
  library(parallel)

  set.seed(1)
  n = 1000
  p = 200

  X = matrix(rnorm(n * p), n, p)
  y = rnorm(n)

  res = memApply(
    X = X, MARGIN = 2,
    FUN = function(v, y) cor(v, y),
    VARS = list(y = y)
  )
  utils::capture.output(str(res))
  expect_equal(unlist(res), apply(X, 2, function(v) cor(v, y)))
})

test_that("README example 2: list operations", {
  library(pyrmap)
  library(parallel)

  list_length = 100
  matrix_dim = 100

  ListV = lapply(
       1:list_length,
       function(i) matrix(rnorm(matrix_dim * matrix_dim),
       nrow = matrix_dim, ncol = matrix_dim))

  y = rnorm(matrix_dim)

  namespace = "ID123"
  res = pyrmap::memLapply(ListV, function(el, y) {
     el %*% y
  }, NAMESPACE=namespace, VARS=list(y=y), MAX.CORES = 1)
  expect_equal(res, lapply(ListV, function(el) el %*% y))
})

# ---- memshare's tests (Mthrun/memshare, tests/testthat) ---------------------------------

# test-error-handling.R

test_that("releasing unknown variables produces an informative error", {
  ns <- paste0("release_error_", Sys.getpid(), "_", sample.int(1e6, 1))
  # No variables registered in this namespace

  expect_error(
    pyrmap::releaseVariables(ns, "does_not_exist"),
    regexp = "not previously allocated|not previously.*allocated",
    ignore.case = TRUE
  )
})

test_that("releasing unknown views produces an informative error", {
  ns <- paste0("release_view_error_", Sys.getpid(), "_", sample.int(1e6, 1))
  expect_error(
    pyrmap::releaseViews(ns, "does_not_exist"),
    regexp = "not previously allocated|not previously.*allocated",
    ignore.case = TRUE
  )
})

test_that("memLapply detects malformed VARS argument (wording check replaced by the class)", {
  ns <- paste0("test_ns_memLapply_vars_", Sys.getpid(), "_", sample.int(1e6, 1))

  l <- list(1:3, 4:6)

  # VARS must be either a named list or character vector; here: unnamed list
  bad_vars <- list(1:3, 4:6)

  expect_error(
    pyrmap::memLapply(
      X = l,
      FUN = function(el, z) el + z,
      NAMESPACE = ns,
      VARS = bad_vars,
      MAX.CORES = 1
    ),
    class = "pyrmap_usage_error"
  )
})

test_that("registerVariables errors on duplicate registration (wording check replaced by the class)", {

  ns <- paste0("dup_test_", as.integer(Sys.time()))
  x  <- matrix(as.double(1:4), 2, 2)

  vars <- list(x = x)

  pyrmap::registerVariables(ns, vars)

  expect_error(
    pyrmap::registerVariables(ns, vars),
    "already registered",
    class = "pyrmap_usage_error"
  )

  pyrmap::releaseVariables(ns, "x")
})

test_that("releaseVariables errors on unknown variable", {

  ns <- paste0("unknown_release_", as.integer(Sys.time()))

  expect_error(
    pyrmap::releaseVariables(ns, "does_not_exist"),
    "not previously allocated",
    ignore.case = TRUE
  )
})

test_that("releaseViews errors on unknown variable", {
  skip_on_cran()

  ns <- paste0("unknown_view_", as.integer(Sys.time()))

  expect_error(
    pyrmap::releaseViews(ns, "does_not_exist"),
    "not previously allocated",
    ignore.case = TRUE
  )
})

test_that("registerVariables errors on unsupported object type (wording check replaced by the class)", {

  ns <- paste0("unsupported_type_", as.integer(Sys.time()))
  # A data.frame of numeric columns registers here (memshare refuses it);
  # one with a character column does not.
  bad <- data.frame(a = c("x", "y", "z"))

  expect_error(
    pyrmap::registerVariables(ns, list(bad = bad)),
    class = "pyrmap_usage_error"
  )
})

test_that("instead of memshare's conversion warnings: integer matrices and data.frames as they are", {
  ns <- paste0("type_", Sys.getpid(), "_", sample.int(1e4, 1))
  X_int <- matrix(1L:9L, 3, 3)
  expect_silent(r <- pyrmap::memApply(X = X_int, MARGIN = 2, FUN = function(v) typeof(v),
                                      NAMESPACE = ns, MAX.CORES = 1))
  expect_identical(unlist(r), rep("integer", 3))
  mode(X_int) = "numeric"
  X_df <- data.frame(X_int)
  expect_silent(r <- pyrmap::memApply(X = X_df, MARGIN = 2, FUN = function(v) mean(v),
                                      NAMESPACE = ns, MAX.CORES = 1))
  expect_identical(unlist(r), colMeans(X_df))   # named by the columns, as apply()'s
})

# test-lifecycle.R

test_that("register -> retrieve -> release lifecycle works for matrix and vector", {
  ns <- paste0("lifecycle_", Sys.getpid(), "_", sample.int(1e6, 1))

  mat <- matrix(as.double(1:6), nrow = 2, ncol = 3)
  vec <- as.double(1:3)

  # Ensure clean state
  on.exit({
    # Try to release; ignore errors in case they were already released
    try(pyrmap::releaseViews(ns, c("mat", "vec")), silent = TRUE)
    try(pyrmap::releaseVariables(ns, c("mat", "vec")), silent = TRUE)
  }, add = TRUE)

  pyrmap::registerVariables(ns, list(mat = mat, vec = vec))

  # pageList() should show both names
  pages <- pyrmap::pageList()
  expect_true(any(grepl(paste0(ns, ".mat"), pages, fixed = TRUE)))
  expect_true(any(grepl(paste0(ns, ".vec"), pages, fixed = TRUE)))

  # Retrieve views and check contents
  views <- pyrmap::retrieveViews(ns, c("mat", "vec"))
  expect_true(is.matrix(views$mat))
  expect_true(is.numeric(views$vec))
  expect_equal(views$mat, mat)
  expect_equal(as.numeric(views$vec), vec)

  # viewList() must reflect that we hold mat and vec
  vlist <- pyrmap::viewList()
  expect_true(any(grepl(paste0(ns, ".mat"), vlist, fixed = TRUE)))
  expect_true(any(grepl(paste0(ns, ".vec"), vlist, fixed = TRUE)))

  # Release views
  pyrmap::releaseViews(ns, c("mat", "vec"))
  vlist_after <- pyrmap::viewList()
  expect_false(any(grepl(paste0(ns, ".mat"), vlist_after, fixed = TRUE)))
  expect_false(any(grepl(paste0(ns, ".vec"), vlist_after, fixed = TRUE)))

  # Release variables
  pyrmap::releaseVariables(ns, c("mat", "vec"))
  pages_after <- pyrmap::pageList()
  expect_false(any(grepl(paste0(ns, ".mat"), pages_after, fixed = TRUE)))
  expect_false(any(grepl(paste0(ns, ".vec"), pages_after, fixed = TRUE)))
})

test_that("retrieveMetadata reports correct dimensions for matrices", {
  ns <- paste0("metadata_", Sys.getpid(), "_", sample.int(1e6, 1))
  mat <- matrix(runif(12), 3, 4)

  on.exit({
    try(pyrmap::releaseViews(ns, "mat"), silent = TRUE)
    try(pyrmap::releaseVariables(ns, "mat"), silent = TRUE)
  }, add = TRUE)

  pyrmap::registerVariables(ns, list(mat = mat))

  meta <- pyrmap::retrieveMetadata(ns, "mat")
  # NOTE: retrieveMetadata may implicitly create a view (as per your docs),
  # so we must release that.
  expect_equal(meta$type, "matrix")
  expect_equal(meta$nrow, nrow(mat))
  expect_equal(meta$ncol, ncol(mat))

  pyrmap::releaseViews(ns, "mat")
  pyrmap::releaseVariables(ns, "mat")
})

test_that("register/retrieve/release lifecycle is consistent", {
  ns <- paste0("test_ns", Sys.getpid(), "_", sample.int(1e6, 1))
  mat <- matrix(as.double(1:6), 2, 3)

  registerVariables(ns, list(MATRIX = mat))
  expect_true(length(pageList()) >= 1L)

  views <- retrieveViews(ns, "MATRIX")
  expect_true("MATRIX" %in% names(views))
  expect_equal(views$MATRIX, mat)

  releaseViews(ns, "MATRIX")
  releaseVariables(ns, "MATRIX")

  expect_false(any(grepl("MATRIX", unlist(pageList()), fixed = TRUE)))
})

# test-memApply.R

test_that("memApply matches base apply for correlation with a vector", {
  skip_if_not_installed("parallel")  # Should be there, but just in case

  set.seed(1)
  n <- 40
  p <- 10
  X <- matrix(rnorm(n * p), nrow = n, ncol = p)
  y <- rnorm(n)

  ns <- paste0("memApply_", Sys.getpid(), "_", sample.int(1e6, 1))

  on.exit({
    # memApply should clean up its own pages when X/VARS are passed as objects,
    # but we call releaseVariables just in case the implementation changes.
    try(pyrmap::releaseVariables(ns, "X"), silent = TRUE)
    try(pyrmap::releaseVariables(ns, "y"), silent = TRUE)
  }, add = TRUE)

  f <- function(v, y) stats::cor(v, y)

  res_mem <- pyrmap::memApply(
    X = X,
    MARGIN = 2,
    FUN = f,
    NAMESPACE = ns,
    VARS = list(y = y),
    MAX.CORES = 1
  )

  # memApply returns a list; base apply returns a numeric vector
  res_mem_vec  <- as.numeric(unlist(res_mem))
  res_base_vec <- as.numeric(apply(X, 2, f, y = y))

  expect_equal(res_mem_vec, res_base_vec, tolerance = 1e-12)
})

test_that("memApply works when X is already registered by name", {
  ns <- paste0("byname_", Sys.getpid(), "_", sample.int(1e6, 1))
  X <- matrix(runif(30), 6, 5)

  on.exit({
    try(pyrmap::releaseViews(ns, "X"), silent = TRUE)
    try(pyrmap::releaseVariables(ns, "X"), silent = TRUE)
  }, add = TRUE)

  pyrmap::registerVariables(ns, list(X = X))

  # Now call memApply with X = "X"
  out <- pyrmap::memApply(
    X = "X",
    MARGIN = 2,
    FUN = function(v) mean(v),
    NAMESPACE = ns,
    MAX.CORES = 1
  )

  out_vec <- as.numeric(unlist(out))
  expect_equal(out_vec, colMeans(X))
})

# test-memLapply.R

test_that("memLapply matches base lapply for list of matrices", {
  skip_if_not_installed("parallel")

  set.seed(123)
  list_length <- 20
  m <- 5

  l <- lapply(seq_len(list_length), function(i) {
    matrix(rnorm(m * m), nrow = m, ncol = m)
  })
  y <- rnorm(m)

  ns <- paste0("memLapply_", Sys.getpid(), "_", sample.int(1e6, 1))

  on.exit({
    try(pyrmap::releaseViews(ns, c("l", "y")), silent = TRUE)
    try(pyrmap::releaseVariables(ns, c("l", "y")), silent = TRUE)
  }, add = TRUE)

  # memLapply with shared y
  res_mem <- pyrmap::memLapply(
    X = l,
    FUN = function(el, y) el %*% y,
    NAMESPACE = ns,
    VARS = list(y = y),
    MAX.CORES = 1
  )

  # baseline lapply
  res_base <- lapply(l, function(el) el %*% y)

  expect_equal(res_mem, res_base)
})

test_that("memLapply works with X passed by shared name", {
  ns <- paste0("byname2_", Sys.getpid(), "_", sample.int(1e6, 1))
  l=list(
    matrix(as.double(1:4), 2, 2),
    matrix(as.double(5:8), 2, 2)
  )
  ListList=list()
  ListList[["L"]] = l
  pyrmap::registerVariables(ns, ListList)

  on.exit({
    try(pyrmap::releaseViews(ns, "L"), silent = TRUE)
    try(pyrmap::releaseVariables(ns, "L"), silent = TRUE)
  }, add = TRUE)

  res <- pyrmap::memLapply(
    X = "L",
    FUN = function(el) sum(el),
    NAMESPACE = ns,
    MAX.CORES = 1
  )

  expect_equal(unlist(res), c(sum(l[[1]]), sum(l[[2]])))
})

# test-altrep-behavior.R

test_that("ALTREP views behave like ordinary matrices/vectors for basic ops", {
  ns <- paste0("altrep_", Sys.getpid(), "_", sample.int(1e6, 1))

  mat <- matrix(rnorm(20), 5, 4)
  vec <- rnorm(5)

  on.exit({
    try(pyrmap::releaseVariables(ns, c("mat", "vec")), silent = TRUE)
  }, add = TRUE)

  pyrmap::registerVariables(ns, list(mat = mat, vec = vec))
  views <- pyrmap::retrieveViews(ns, c("mat", "vec"))

  # Basic properties
  expect_true(is.matrix(views$mat))
  expect_true(is.numeric(views$vec))
  expect_equal(dim(views$mat), dim(mat))
  expect_equal(length(views$vec), length(vec))

  # Basic operations
  expect_equal(colSums(views$mat), colSums(mat))
  expect_equal(rowMeans(views$mat), rowMeans(mat))
  expect_equal(sum(views$vec), sum(vec))

  pyrmap::releaseViews(ns, c("mat", "vec"))
})

# test-os-specific.R

test_that("re-registering the same variable after release works (no stale shm)", {
  ns <- paste0("reregister_", Sys.getpid(), "_", sample.int(1e5, 1))
  mat <- matrix(runif(6), 2, 3)

  # First register / release
  pyrmap::registerVariables(ns, list(mat = mat))
  pyrmap::releaseVariables(ns, "mat")

  # Re-register should succeed without error
  expect_silent(pyrmap::registerVariables(ns, list(mat = mat)))
  pyrmap::releaseVariables(ns, "mat")
})

test_that("macOS namespace length limitations are enforced", {
  # Only relevant on macOS; skip elsewhere
  skip_on_os(c("windows", "linux"))

  ns_long <- paste(rep("very_long_namespace", 10), collapse = "_")
  mat <- matrix(as.double(1:4), 2, 2)

  expect_error(
    pyrmap::registerVariables(ns_long, list(mat = mat)),
    regexp = "length < 32|exceeds",
    ignore.case = TRUE
  )
})

test_that("Windows: namespace is prefixed with Local\\\\", {
  skip_on_os(c("linux", "mac"))  # only relevant for Windows

  ns <- paste0("testns_", as.integer(Sys.time()))
  x  <- matrix(as.double(1:4), 2, 2)

  # clean slate
  pyrmap::registerVariables(ns, list(x = x))
  pages <- pyrmap::pageList()

  expect_true(
    any(grepl("^Local\\\\", unlist(pages), useBytes = TRUE)),
    info = "On Windows, shared page names should begin with Local\\"
  )

  pyrmap::releaseVariables(ns, "x")
})

test_that("Unix: namespace is not prefixed with Local\\\\", {
  skip_on_os("windows")

  ns <- paste0("testns_", as.integer(Sys.time()))
  x  <- matrix(as.double(1:4), 2, 2)

  pyrmap::registerVariables(ns, list(x = x))
  pages <- pyrmap::pageList()
  names_chr <- unlist(pages)

  expect_true(
    any(grepl(paste0("^", ns, "\\.x$"), names_chr)),
    info = "On Unix, shared page names should start with the raw namespace"
  )
  expect_false(
    any(grepl("^Local\\\\", names_chr, useBytes = TRUE)),
    info = "On Unix, no Local\\ prefix should be present"
  )

  pyrmap::releaseVariables(ns, "x")
})

test_that("this file leaves no worker, page or segment behind", {
  for (cl in compat_clusters) ms_stop_cluster(cl)
  # The examples' namespaces are fixed names: nothing of them may remain.
  fixed <- c("ns_apply", "ns_lapply", "ns_register", "ns_retrview", "ns_meta", "ns_relview",
             "ns_release", "ns_viewL", "ns_pageL", "ns", "ID123")
  pages <- unlist(pageList())
  expect_false(any(sub("\\.[^.]*$", "", pages) %in% fixed))
  ms_expect_clean_end(compat_shm_at_start)
})
