# Every error's call is the function the user typed (as base R's errors
# name apply() or lapply()), never an internal helper of the package, and a
# Python warning's call likewise.

# The condition `expr` signals, and the name of the function in its call.
called <- function(expr, class = "error") {
  cond <- tryCatch(expr, error = function(c) c, pyrmap_python_warning = function(c) c)
  expect_s3_class(cond, class)
  call <- conditionCall(cond)
  expect_false(is.null(call), info = conditionMessage(cond))
  if (is.null(call)) return(NA_character_)
  deparse(call[[1L]])
}

test_that("the run functions' errors name the run function", {
  s <- py("expr.py")
  expect_identical(called(run_python(1, 2)), "run_python")
  expect_identical(called(run_python(letters, s)), "run_python")
  expect_identical(called(run_python(1, s, fun = 1)), "run_python")
  expect_identical(called(run_python(1, "/nonexistent.py")), "run_python")
  expect_identical(called(run_python(1, s, args = "undefined_name")), "run_python")
  expect_identical(called(run_python(1, s, python = "/nonexistent/python")), "run_python")
  expect_identical(called(run_python_shared_data(1, c(s, "/nonexistent.py"))), "run_python_shared_data")
  expect_identical(called(run_python_pipeline(1, c(s, s), args = "no_such")), "run_python_pipeline")
  expect_identical(called(run_python_pipeline(1, s, keep_intermediate = NA)), "run_python_pipeline")
  expect_identical(called(run_python(1, s, segment_dir = "/nonexistent/dir")), "run_python")
  # Called from a function of the user's, the call is still run_python().
  mine <- function(x) run_python(x, "/nonexistent.py")
  expect_identical(called(mine(1)), "run_python")
})

test_that("a Python warning's call is the run function", {
  w <- called(run_python(1, py("warn.py")), "pyrmap_python_warning")
  expect_identical(w, "run_python")
})

test_that("pool, configuration and segment directory errors name their function", {
  expect_identical(called(python_pool(workers = 0)), "python_pool")
  expect_identical(called(python_pool(python = "/nonexistent/python")), "python_pool")
  expect_identical(called(pyrmap_segment_dir("/nonexistent/dir")), "pyrmap_segment_dir")
  expect_identical(called(pyrmap_python(3)), "pyrmap_python")
  expect_identical(called(pyrmap_config(python = NA_character_)), "pyrmap_config")
})

test_that("the shared-variable functions' errors name the function, not a helper", {
  ns <- paste0("calls", Sys.getpid())
  expect_identical(called(registerVariables(ns, list(x = letters))), "registerVariables")
  expect_identical(called(registerVariables(ns, 1)), "registerVariables")
  expect_identical(called(retrieveViews(ns, "nope")), "retrieveViews")
  expect_identical(called(retrieveMetadata(ns, "nope")), "retrieveMetadata")
  expect_identical(called(retrieveMetadata(ns, c("nope", "other"))), "retrieveMetadata")
  expect_identical(called(releaseViews(ns, "nope")), "releaseViews")
  expect_identical(called(releaseVariables(ns, "nope")), "releaseVariables")
  expect_identical(called(memshare_gc(1)), "memshare_gc")
  expect_no_segments()
})

test_that("memApply's and memLapply's data errors name them, not the engine's helpers", {
  expect_identical(called(memLapply(mean, identity, MAX.CORES = 1)), "memLapply")
  expect_identical(called(memApply(matrix(letters, 2), 1, identity, MAX.CORES = 1)), "memApply")
  expect_identical(called(memApply(1:3, 1, identity, MAX.CORES = 1)), "memApply")
  expect_identical(called(memApply(matrix(1, 2, 2), 3, identity, MAX.CORES = 1)), "memApply")
  expect_identical(called(memLapply("nope", identity, NAMESPACE = "calls.none", MAX.CORES = 1)),
                   "memLapply")
  expect_no_segments()
})
