# A view, or a registered variable, given to run_python() reaches Python
# without any copy: Python maps the variable's own page.

ms_shm_at_start <- shm_snapshot()

test_that("a view from retrieveViews() reaches Python as a mapping of its page", {
  ns <- ms_ns("py-view")
  X <- matrix(rnorm(6000), 60)
  registerVariables(ns, list(X = X))
  on.exit(releaseVariables(ns, "X"))
  v <- retrieveViews(ns, "X")$X
  on.exit(releaseViews(ns, "X"), add = TRUE, after = FALSE)
  seg <- view_info(v)$segment
  expect_match(seg, sprintf("^pyrmap-%s-ns-[0-9a-f]{16}$", my_uid()))
  res <- ms_run_zero_copy(retrieveViews(ns, "X")$X)
  expect_identical(res$value, X * 2)
  expect_identical(sub("^/", "", res$info$data), seg)
  expect_identical(res$info$base, "mmap")
  expect_identical(res$info$owndata, "False")
  expect_identical(res$info$mapping, file.path("/dev/shm", seg))
})

test_that("a registered variable given by itself reaches Python without a copy", {
  ns <- ms_ns("py-reg")
  X <- matrix(as.numeric(1:5000), 50)
  registerVariables(ns, list(X = X))
  on.exit(releaseVariables(ns, "X"))
  seg <- ms_segment_of(ns, "X")
  res <- ms_run_zero_copy(X)
  expect_identical(res$value, X * 2)
  expect_identical(sub("^/", "", res$info$data), seg)
  expect_identical(res$info$mapping, file.path("/dev/shm", seg))
  # Integer data too.
  Y <- 1:300
  registerVariables(ns, list(Y = Y))
  on.exit(releaseVariables(ns, "Y"), add = TRUE)
  res <- ms_run_zero_copy(Y)
  expect_identical(res$value, Y * 2L)
  expect_identical(sub("^/", "", res$info$data), ms_segment_of(ns, "Y"))
})

test_that("a registered object changed afterwards is sent as it is now, not as the page", {
  ns <- ms_ns("py-changed")
  X <- as.numeric(1:100)
  registerVariables(ns, list(X = X))
  on.exit(releaseVariables(ns, "X"))
  seg <- ms_segment_of(ns, "X")
  X[1] <- -1   # may change X in place: the page keeps the old values
  res <- ms_run_zero_copy(X)
  expect_identical(res$value, c(-2, as.numeric(2:100) * 2))
  expect_false(identical(sub("^/", "", res$info$data), seg))
  expect_identical(retrieveViews(ns, "X")$X, as.numeric(1:100))
  releaseViews(ns, "X")
})

test_that("a view kept after its variable was released and registered again is sent as it is", {
  ns <- ms_ns("py-stale")
  registerVariables(ns, list(X = c(1, 2, 3)))
  old <- retrieveViews(ns, "X")$X
  releaseVariables(ns, "X")
  registerVariables(ns, list(X = c(10, 20, 30)))
  on.exit(releaseVariables(ns, "X"))
  expect_identical(ms_run_zero_copy(old)$value, c(2, 4, 6))
  new <- retrieveViews(ns, "X")$X
  on.exit(releaseViews(ns, "X"), add = TRUE, after = FALSE)
  expect_identical(ms_run_zero_copy(new)$value, c(20, 40, 60))
})

test_that("the end of the file leaves no segment", {
  ms_expect_clean_end(ms_shm_at_start)
})
