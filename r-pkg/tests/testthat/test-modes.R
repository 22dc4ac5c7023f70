# run_python_shared_data(): one input, several scripts (at once with jobs =);
# run_python_pipeline(): each stage's result feeds the next.

shm_at_start <- shm_snapshot()

intervals <- function(file) {
  t <- utils::read.table(file, col.names = c("start", "end"))
  t[order(t$start), ]
}

test_that("shared data: one result per script, named after the scripts", {
  x <- c(3, 1, 4, 1, 5, 9, 2, 6)
  res <- run_python_shared_data(x, c(py("functions.py"), py("twice.py"), py("identity.py"), py("twice.py")))
  expect_identical(names(res), c("functions.py", "twice.py", "identity.py", "twice.py.1"))
  expect_identical(unname(res), list(mean(x), x * 2, x, x * 2))
  for (r in res[-1]) expect_false(is.null(view_info(r)))
  # Matrices keep dims and dimnames in every result.
  m <- matrix(1:6, 2, dimnames = list(c("a", "b"), c("x", "y", "z")))
  res <- run_python_shared_data(m, c(py("twice.py"), py("identity.py")))
  expect_identical(res, list(twice.py = m * 2L, identity.py = m))
})

test_that("shared data with jobs = k runs k scripts at once", {
  dir <- tempfile("barrier")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE), add = TRUE)
  # barrier.py returns only once all 3 are running at the same time.
  res <- run_python_shared_data(1:5, rep(py("barrier.py"), 3), jobs = 3, args = c(dir, "3", "30"))
  expect_identical(unname(res), rep(list(1:5 * 2L), 3))
  t <- do.call(rbind, lapply(list.files(dir, "\\.times$", full.names = TRUE), intervals))
  expect_equal(nrow(t), 3)
  expect_lt(max(t$start), min(t$end))  # all three were running together
  # jobs = 2 of 4: never more than two at once, all results in order.
  log <- tempfile()
  on.exit(unlink(log), add = TRUE)
  # Each script sleeps 1.5 s: the two of a pair overlap unless their starts
  # are more than 1.5 s apart (a Python start takes ~0.2 s).
  res <- run_python_shared_data(c(1, 2, 3), rep(py("interval.py"), 4), jobs = 2, args = c(log, "1.5"))
  expect_identical(unname(unlist(res)), rep(6, 4))
  t <- intervals(log)
  overlap <- vapply(seq_len(nrow(t)), function(i) sum(t$start <= t$start[i] & t$end > t$start[i]), 1)
  expect_lte(max(overlap), 2)
  expect_equal(max(overlap), 2)
})

test_that("jobs = Inf runs every script at once", {
  dir <- tempfile("barrier")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE), add = TRUE)
  res <- run_python_shared_data(c(1, 2), rep(py("barrier.py"), 2), jobs = Inf, args = c(dir, "2", "30"))
  expect_identical(unname(res), list(c(2, 4), c(2, 4)))
})

test_that("shared data with jobs = 1 (the default) runs the scripts in turn", {
  log <- tempfile()
  on.exit(unlink(log), add = TRUE)
  res <- run_python_shared_data(1:3, rep(py("interval.py"), 3), args = c(log, "0.2"))
  expect_identical(unname(unlist(res)), rep(6, 3))
  t <- intervals(log)
  expect_true(all(t$start[-1] >= t$end[-nrow(t)]))
})

test_that("pipeline: the last stage's result, or every stage's with keep_intermediate", {
  x <- c(1, 2, 3)
  stages <- c(py("twice.py"), py("expr.py"), py("functions.py"))
  expect_identical(run_python_pipeline(x, c(py("twice.py"), py("twice.py"), py("twice.py"))), x * 8)
  res <- run_python_pipeline(x, stages, keep_intermediate = TRUE, args = "data ** 2")
  expect_identical(names(res), c("twice.py", "expr.py", "functions.py"))
  # functions.py as __main__ returns the mean; it ignores args.
  expect_identical(unname(res), list(x * 2, (x * 2)^2, mean((x * 2)^2)))
  expect_identical(run_python_pipeline(x, stages, args = "data ** 2"), mean((x * 2)^2))
  expect_identical(run_python_pipeline(x, stages, keep_intermediate = FALSE, args = "data ** 2"),
                   mean((x * 2)^2))
  # Every kept stage is a view, and all of them stay valid.
  kept <- run_python_pipeline(as.numeric(1:1000), rep(py("twice.py"), 4), keep_intermediate = TRUE)
  invisible(gc(full = TRUE))
  for (k in 1:4) {
    expect_false(is.null(view_info(kept[[k]])))
    expect_identical(kept[[k]], as.numeric(1:1000) * 2^k)
  }
})

test_that("pipeline stages may change dtype and shape", {
  m <- matrix(as.numeric(1:6), 2, dimnames = list(c("a", "b"), NULL))
  res <- run_python_pipeline(m, c(py("expr.py"), py("expr.py")), keep_intermediate = TRUE,
                             args = "data.astype(np.int32) if data.dtype == np.float64 else data.T.copy()")
  expect_identical(res[[1]], matrix(1:6, 2, dimnames = list(c("a", "b"), NULL)))
  expect_identical(res[[2]], t(matrix(1:6, 2)))
  expect_identical(run_python_pipeline(c(TRUE, FALSE, TRUE), c(py("expr.py"), py("functions.py")),
                                       fun = c(NA, "total"), args = "data.astype(np.uint8)"), 2)
})

test_that("this file leaves no segment in /dev/shm", {
  expect_identical(shm_leftovers(shm_at_start), character(0))
})
