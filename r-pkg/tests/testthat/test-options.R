# The seed's call forms, fun = / "script.py::name", args =, python = with
# options(pyrmap.python) and PYRMAP_PYTHON behind it, output forwarding.

shm_at_start <- shm_snapshot()

test_that("the seed's calls work as written: data, script path(s), dtype string", {
  m <- matrix(as.numeric(1:6), 2)
  expect_identical(run_python(m, py("twice.py"), "float64"), m * 2)
  expect_identical(run_python(1:4, py("twice.py"), "int32"), 1:4 * 2L)
  expect_identical(run_python(c(1, 2), py("twice.py"), "int64"), c(2, 4))
  expect_identical(run_python(c(1, 2), py("twice.py"), "float32"), c(2, 4))
  expect_identical(run_python(c(1, 2), py("twice.py"), "uint8"), as.raw(c(2, 4)))
  shared <- run_python_shared_data(m, c(py("twice.py"), py("identity.py")), "float64")
  expect_identical(shared, list(twice.py = m * 2, identity.py = m))
  expect_identical(run_python_pipeline(m, c(py("twice.py"), py("twice.py")), "float64"), m * 4)
  stages <- run_python_pipeline(m, c(py("twice.py"), py("twice.py")), "float64", keep_intermediate = TRUE)
  expect_identical(stages, list(twice.py = m * 2, twice.py.1 = m * 4))
  # The arguments by name, as the seed documents them.
  expect_identical(run_python(data = 1:2, python_script_path = py("twice.py"), dtype = "int32"), c(2L, 4L))
  expect_identical(run_python_shared_data(data = 1:2, script_paths = py("twice.py"), dtype = "int32"),
                   list(twice.py = c(2L, 4L)))
  expect_identical(run_python_pipeline(data = 1:2, script_paths = py("twice.py"), dtype = "int32"), c(2L, 4L))
})

test_that("fun = calls a named function of the script, like 'script.py::name'", {
  x <- c(2, 4, 4, 4, 5, 5, 7, 9)
  s <- py("functions.py")
  expect_identical(run_python(x, s), mean(x))  # as __main__
  expect_identical(run_python(x, s, fun = "total"), sum(x))
  expect_identical(run_python(x, paste0(s, "::total")), sum(x))
  expect_identical(run_python(x, s, fun = "spread"), range(x))
  # A @process_via_mmap function is unwrapped and called with the array.
  expect_identical(run_python(x, s, fun = "negate"), -x)
  # One name per script, NA for "run as __main__".
  res <- run_python_shared_data(x, c(s, s, s), fun = c("total", NA, "spread"))
  expect_identical(unname(res), list(sum(x), mean(x), range(x)))
  expect_identical(run_python_pipeline(x, c(s, s), fun = c("negate", "total")), -sum(x))
  expect_identical(run_python(x, s, fun = NA), mean(x))  # NA: run as __main__
  expect_identical(run_python(x, s, fun = NA_character_), mean(x))
  # A name the script lacks is a usage error naming the script and what it has.
  err <- expect_pyrmap_error(run_python(x, s, fun = "nope"), "pyrmap_usage_error", "no function 'nope'")
  expect_match(conditionMessage(err), s, fixed = TRUE)
  expect_match(conditionMessage(err), "negate, spread, total", fixed = TRUE)
})

test_that("args = reach the scripts as sys.argv[1:]", {
  expect_identical(run_python(1, py("argv.py"), args = c("a", "bb", "", "d d d")), c(1L, 2L, 0L, 5L))
  expect_identical(run_python(c(1, 2), py("expr.py"), args = "data * 10"), c(10, 20))
  expect_identical(run_python_pipeline(1, rep(py("expr.py"), 3), args = "data + 1"), 4)
})

test_that("python = chooses the interpreter; then options(pyrmap.python); then PYRMAP_PYTHON", {
  real <- real_python()
  withr::local_options(pyrmap.python = NULL)
  withr::local_envvar(PYRMAP_PYTHON = "/nonexistent/from-env")
  expect_identical(pyrmap_python(), "/nonexistent/from-env")
  expect_pyrmap_error(run_python(1, py("identity.py")), "pyrmap_interpreter_error", "from-env")
  withr::local_options(pyrmap.python = "/nonexistent/from-option")
  expect_identical(pyrmap_python(), "/nonexistent/from-option")
  expect_pyrmap_error(run_python(1, py("identity.py")), "pyrmap_interpreter_error", "from-option")
  expect_identical(pyrmap_python("/explicit"), "/explicit")
  expect_identical(run_python(1:2, py("twice.py"), python = real), c(2L, 4L))
  withr::local_options(pyrmap.python = real)
  expect_identical(run_python(1:2, py("twice.py")), c(2L, 4L))
  withr::local_options(pyrmap.python = NULL)
  withr::local_envvar(PYRMAP_PYTHON = real)
  expect_identical(run_python(1:2, py("twice.py")), c(2L, 4L))
  # Without a choice: the first candidate that imports numpy (see
  # test-python-config.R for the search itself).
  withr::local_envvar(PYRMAP_PYTHON = NA)
  expect_false(pyrmap_python() %in% c("/nonexistent/from-env", "/nonexistent/from-option"))
  expect_true(pyrmap_available())
  withr::local_options(pyrmap.python = 3)
  expect_pyrmap_error(pyrmap_python(), "pyrmap_usage_error", "pyrmap.python")
})

test_that("the scripts' stdout and stderr are forwarded to R's console", {
  out <- NULL
  err <- utils::capture.output(
    out <- utils::capture.output(res <- run_python(1:4, py("chatty.py"))), type = "message")
  expect_identical(res, 1:4)
  expect_match(paste(out, collapse = "\n"), "hello from python: 4 elements", fixed = TRUE)
  expect_match(paste(err, collapse = "\n"), "a note on stderr from python", fixed = TRUE)
})

test_that("the pyrmap command is installed with the package", {
  cmd <- pyrmap_command()
  expect_true(file.exists(cmd))
  expect_identical(unname(file.access(cmd, 1L)), 0L)
})

test_that("this file leaves no segment in /dev/shm", {
  expect_identical(shm_leftovers(shm_at_start), character(0))
})
