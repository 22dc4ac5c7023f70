# Every exchange dtype, R -> Python and Python -> R, and the conversions that
# must fail instead of wrapping or rounding.

shm_at_start <- shm_snapshot()

# What Python received (dtype, shape, ...): py/inspect_input.py appends one
# record per call to `log` and returns its input unchanged.
seen_by_python <- function(data, dtype = NULL, ...) {
  log <- tempfile(fileext = ".dcf")
  on.exit(unlink(log))
  res <- run_python(data, py("inspect_input.py"), dtype, args = log, ...)
  list(result = res, python = as.list(read.dcf(log)[1L, ]))
}

test_that("the default dtype follows the data: double, integer, logical, raw", {
  cases <- list(
    list(data = c(1.5, -2, 3e10), dtype = "float64"),
    list(data = c(1L, -2L, .Machine$integer.max, -.Machine$integer.max), dtype = "int32"),
    list(data = c(TRUE, FALSE, TRUE), dtype = "bool"),
    list(data = as.raw(c(0, 1, 127, 128, 255)), dtype = "uint8"))
  for (case in cases) {
    got <- seen_by_python(case$data)
    expect_identical(got$python$dtype, case$dtype)
    expect_identical(got$result, case$data)
  }
})

test_that("each dtype reaches Python as asked and comes back as documented", {
  # data, dtype, the numpy dtype Python must see, what R must get back.
  cases <- list(
    list(c(1, -2.5, 1e300), "float64", "float64", c(1, -2.5, 1e300)),
    list(1:3, "float64", "float64", c(1, 2, 3)),
    list(c(TRUE, FALSE), "float64", "float64", c(1, 0)),
    list(as.raw(c(0, 255)), "float64", "float64", c(0, 255)),
    list(c(0.5, -1.25, 2^-20, 3), "float32", "float32", c(0.5, -1.25, 2^-20, 3)),
    list(c(1L, -7L), "float32", "float32", c(1, -7)),
    list(c(3, -4, 2147483647), "int32", "int32", c(3L, -4L, 2147483647L)),
    list(c(TRUE, FALSE), "int32", "int32", c(1L, 0L)),
    list(as.raw(c(1, 200)), "int32", "int32", c(1L, 200L)),
    list(c(0, 1, -1, 2^53, -2^53), "int64", "int64", c(0, 1, -1, 2^53, -2^53)),
    list(c(5L, -5L), "int64", "int64", c(5, -5)),
    list(c(0, 17, 255), "uint8", "uint8", as.raw(c(0, 17, 255))),
    list(c(0L, 255L), "uint8", "uint8", as.raw(c(0, 255))),
    list(c(TRUE, FALSE), "uint8", "uint8", as.raw(c(1, 0))),
    list(c(1, 0, 1), "bool", "bool", c(TRUE, FALSE, TRUE)),
    list(c(0L, 1L), "bool", "bool", c(FALSE, TRUE)),
    list(as.raw(c(1, 0)), "bool", "bool", c(TRUE, FALSE)))
  for (case in cases) {
    got <- seen_by_python(case[[1L]], case[[2L]])
    label <- sprintf("%s as %s", deparse(case[[1L]]), case[[2L]])
    expect_identical(got$python$dtype, case[[3L]], label = label)
    expect_identical(got$result, case[[4L]], label = label)
  }
})

test_that("every numpy result dtype arrives with the documented R type", {
  expect_identical(py_eval(1, "np.array([1.5, -2.0])"), c(1.5, -2))
  expect_identical(py_eval(1, "np.array([0.5, -2.0], dtype=np.float32)"), c(0.5, -2))
  expect_identical(py_eval(1, "np.array([7, -8], dtype=np.int32)"), c(7L, -8L))
  expect_identical(py_eval(1, "np.array([7, -8], dtype=np.int64)"), c(7, -8))
  expect_identical(py_eval(1, "np.array([0, 255], dtype=np.uint8)"), as.raw(c(0, 255)))
  expect_identical(py_eval(1, "np.array([True, False])"), c(TRUE, FALSE))
  # Narrower or unsigned types are widened exactly.
  expect_identical(py_eval(1, "np.array([-3, 4], dtype=np.int8)"), c(-3L, 4L))
  expect_identical(py_eval(1, "np.array([-30000, 4], dtype=np.int16)"), c(-30000L, 4L))
  expect_identical(py_eval(1, "np.array([65535], dtype=np.uint16)"), 65535L)
  expect_identical(py_eval(1, "np.array([4294967295], dtype=np.uint32)"), 4294967295)
  expect_identical(py_eval(1, "np.array([2**53], dtype=np.uint64)"), 2^53)
  expect_identical(py_eval(1, "np.array([1.5, -0.25], dtype=np.float16)"), c(1.5, -0.25))
  # Python scalars and lists go through numpy.asarray.
  expect_identical(py_eval(1, "3"), 3)
  expect_identical(py_eval(1, "2.5"), 2.5)
  expect_identical(py_eval(1, "True"), TRUE)
  expect_identical(py_eval(1, "[1.0, 2.0, 3.0]"), c(1, 2, 3))
  expect_no_segments()
})

test_that("int64 results come back exactly: double within 2^53, else integer64", {
  # -2^63 is a value (a double holds it) unless the input held NA, whose
  # sentinel it is (see test-special-values.R).
  within <- py_eval(1, "np.array([2**53, -2**53, 0, -2**63], dtype=np.int64)")
  expect_identical(within, c(2^53, -2^53, 0, -2^63))
  within_na <- py_eval(c(1, NA), "np.array([2**53, -2**53, 0, -2**63], dtype=np.int64)")
  expect_identical(within_na, c(2^53, -2^53, 0, NA))
  skip_if_not_installed("bit64")
  beyond <- py_eval(c(NA, 1), "np.array([2**53 + 1, 2**63 - 1, -2**63 + 1, -2**63], dtype=np.int64)")
  expect_s3_class(beyond, "integer64")
  expect_identical(as.character(beyond),
                   c("9007199254740993", "9223372036854775807", "-9223372036854775807", NA))
  # The int64 extremes a double can hold come back exactly.
  lowest <- run_python(c(-2^63 + 1024, 2^63 - 1024), py("identity.py"), "int64")
  expect_identical(as.character(lowest), c("-9223372036854774784", "9223372036854774784"))
  # integer64 in: integer64 out, even for small values.
  x <- bit64::as.integer64(c("1", "-9007199254740993", "9223372036854775807"))
  got <- seen_by_python(x)
  expect_identical(got$python$dtype, "int64")
  expect_s3_class(got$result, "integer64")
  expect_identical(as.character(got$result), as.character(x))
})

test_that("an int64 beyond 2^53 is an error naming it when bit64 is not available", {
  ns <- asNamespace("pyrmap")
  original <- get(".bit64_available", envir = ns)
  utils::assignInNamespace(".bit64_available", function() FALSE, "pyrmap")
  on.exit(utils::assignInNamespace(".bit64_available", original, "pyrmap"), add = TRUE)
  expect_identical(py_eval(1, "np.array([2**53], dtype=np.int64)"), 2^53)
  err <- expect_pyrmap_error(py_eval(1, "np.array([1, 2**53 + 1], dtype=np.int64)"),
                             "pyrmap_error", "9007199254740993")
  expect_match(conditionMessage(err), "bit64")
  expect_match(conditionMessage(err), "result\\[2\\]")
})

test_that("values that do not fit the dtype are errors, never wrapped or rounded", {
  # data, dtype, the value the message must name.
  cases <- list(
    list(c(1, 300), "uint8", "data\\[2\\] = 300"),
    list(-1, "uint8", "data\\[1\\] = -1"),
    list(256L, "uint8", "data\\[1\\] = 256"),
    list(c(2, 3e9), "int32", "data\\[2\\] = 3000000000"),
    list(2^31, "int32", "2147483648"),
    list(-2^31, "int32", "-2147483648"),
    list(1.5, "int32", "1.5"),
    list(c(1, 1.5), "int64", "data\\[2\\] = 1.5"),
    list(0.5, "uint8", "0.5"),
    list(NaN, "int32", "NaN"),
    list(Inf, "int64", "inf"),
    list(2^63, "int64", "data\\[1\\]"),
    list(c(1, -2^63), "int64", "data\\[2\\]"),  # -2^63 is int64's NA, not a value
    list(c(0, 2), "bool", "data\\[2\\] = 2"),
    list(2L, "bool", "data\\[1\\] = 2"),
    list(1e300, "float32", "data\\[1\\]"),
    list(NA, "uint8", "NA"),
    list(NA_integer_, "uint8", "NA"),
    list(c(TRUE, NA), "bool", "data\\[2\\] is NA"),
    list(NA_real_, "bool", "NA"))
  for (case in cases) {
    err <- expect_pyrmap_error(run_python(case[[1L]], py("identity.py"), case[[2L]]),
                               "pyrmap_usage_error", case[[3L]], ignore.case = TRUE)
    expect_match(conditionMessage(err), case[[2L]], fixed = TRUE)
  }
  skip_if_not_installed("bit64")
  expect_pyrmap_error(run_python(bit64::as.integer64("9007199254740993"), py("identity.py"), "float64"),
                      "pyrmap_usage_error", "9007199254740993")
  expect_pyrmap_error(run_python(bit64::as.integer64("3000000000"), py("identity.py"), "int32"),
                      "pyrmap_usage_error", "3000000000")
})

test_that("float32 rounds to the nearest float32, as asking for float32 means", {
  expect_identical(run_python(1 / 3, py("identity.py"), "float32"), as.double(0.3333333432674408))
  expect_identical(run_python(2^24 + 1, py("identity.py"), "float32"), 2^24)
})

test_that("an unknown dtype is a usage error listing the dtypes", {
  err <- expect_pyrmap_error(run_python(1:3, py("identity.py"), "int16"), "pyrmap_usage_error", "int16")
  expect_match(conditionMessage(err), "int32, int64, float32, float64, uint8, bool", fixed = TRUE)
  expect_pyrmap_error(run_python(1:3, py("identity.py"), c("int32", "int64")), "pyrmap_usage_error", "dtype")
  expect_pyrmap_error(run_python(1:3, py("identity.py"), NA_character_), "pyrmap_usage_error", "dtype")
  expect_pyrmap_error(run_python(1:3, py("identity.py"), 32L), "pyrmap_usage_error", "dtype")
})

test_that("this file leaves no segment in /dev/shm", {
  expect_identical(shm_leftovers(shm_at_start), character(0))
})
