# Doubles round-trip bit for bit, NA, NaN, Inf, -Inf and -0 included; R's
# missing values keep their meaning in every dtype that can hold them (the
# float types), and are refused by the others.

shm_at_start <- shm_snapshot()

specials <- c(NA, NaN, Inf, -Inf, -0, 0, 5e-324, .Machine$double.xmin, .Machine$double.xmax,
              -.Machine$double.xmax, pi, -1e-300, 2^53 + 2)

test_that("float64 round-trips bit-exact, NA and NaN kept apart, -0 kept", {
  res <- run_python(specials, py("identity.py"), "float64")
  expect_identical(bits(res), bits(specials))
  expect_true(is.na(res[1L]) && !is.nan(res[1L]))  # NA stays NA ...
  expect_true(is.nan(res[2L]))                       # ... and NaN stays NaN
  expect_identical(1 / res[5L], -Inf)                # -0 keeps its sign
  expect_identical(1 / res[6L], Inf)
  # The same inside a matrix and through a pipeline of identities.
  m <- matrix(specials[1:12], 3)
  expect_identical(bits(run_python(m, py("identity.py"))), bits(m))
  piped <- run_python_pipeline(specials, rep(py("identity.py"), 3))
  expect_identical(bits(piped), bits(specials))
})

test_that("Python sees NA and NaN as NaN, and infinities as infinities", {
  expect_identical(py_eval(specials[1:6], "np.isnan(data)"), c(TRUE, TRUE, FALSE, FALSE, FALSE, FALSE))
  expect_identical(py_eval(specials[1:6], "np.isposinf(data) | np.isneginf(data)"),
                   c(FALSE, FALSE, TRUE, TRUE, FALSE, FALSE))
  expect_identical(py_eval(c(-0, 0), "np.signbit(data)"), c(TRUE, FALSE))
})

test_that("float32 keeps NA, NaN, the infinities and -0", {
  x <- c(NA, NaN, Inf, -Inf, -0, 0.5, 2^-149, 3.4028234663852886e38)
  res <- run_python(x, py("identity.py"), "float32")
  expect_identical(bits(res), bits(x))
  expect_true(is.na(res[1L]) && !is.nan(res[1L]))
  expect_true(is.nan(res[2L]))
  expect_identical(py_eval(x, "np.isnan(data)", "float32"), c(TRUE, TRUE, rep(FALSE, 6)))
})

test_that("NA_integer_ is refused as int32 and int64 (no sentinel reaches Python); float64 keeps it", {
  x <- c(NA, 0L, -.Machine$integer.max, .Machine$integer.max)
  expect_pyrmap_error(run_python(x, py("identity.py"), "int32"), "pyrmap_usage_error", "data\\[1\\] is NA")
  expect_pyrmap_error(run_python(x, py("identity.py"), "int64"), "pyrmap_usage_error", "data\\[1\\] is NA")
  expect_identical(run_python(x, py("identity.py"), "float64"), as.double(x))
  expect_identical(py_eval(x, "np.isnan(data)", "float64"), c(TRUE, FALSE, FALSE, FALSE))
  # The extremes that are values pass as int32 and int64.
  expect_identical(run_python(x[-1L], py("identity.py"), "int32"), x[-1L])
  expect_identical(run_python(x[-1L], py("identity.py"), "int64"), as.double(x[-1L]))
  # A double NA and a logical NA are refused as int32 too.
  expect_pyrmap_error(run_python(c(NA, 2), py("identity.py"), "int32"), "pyrmap_usage_error", "data\\[1\\] is NA")
  expect_pyrmap_error(run_python(c(NA, TRUE), py("identity.py"), "int32"), "pyrmap_usage_error", "data\\[1\\] is NA")
})

test_that("-2^31 and -2^63 in a result come back exactly, unless they carry the input's NA", {
  # In a call whose input held no NA they are values: R's integer cannot
  # hold -2^31, so that result is double (exact); -2^63 is a double too.
  expect_identical(py_eval(1, "np.array([np.iinfo(np.int32).min, 1], dtype=np.int32)"), c(-2^31, 1))
  expect_identical(py_eval(c(4L, 7L), "np.where(data == 4, np.int32(np.iinfo(np.int32).min), data)"),
                   c(-2^31, 7))
  expect_identical(py_eval(1, "np.array([np.iinfo(np.int64).min, 1], dtype=np.int64)"), c(-2^63, 1))
  # When the input held NA (it reaches Python as NaN: only float dtypes
  # take it), the sentinels in a result read back as NA.
  expect_identical(py_eval(c(NA, 1L), "np.array([np.iinfo(np.int32).min, 1], dtype=np.int32)", "float64"),
                   c(NA, 1L))
  expect_identical(py_eval(c(1, NA), "np.array([np.iinfo(np.int32).min, 1], dtype=np.int32)"), c(NA, 1L))
  expect_identical(py_eval(c(TRUE, NA), "np.array([np.iinfo(np.int64).min, 1], dtype=np.int64)", "float32"),
                   c(NA, 1))
  # -2^63 beside a value beyond 2^53: neither a double nor integer64 can
  # hold both exactly: an error naming both.
  err <- expect_pyrmap_error(py_eval(1, "np.array([1, 2**53 + 1, -2**63], dtype=np.int64)"),
                             "pyrmap_usage_error", "result\\[3\\] = -9223372036854775808")
  expect_match(conditionMessage(err), "int64")
  expect_match(conditionMessage(err), "result[2] = 9007199254740993", fixed = TRUE)
  skip_if_not_installed("bit64")
  # An integer64 input without NA: integer64 out, which cannot hold -2^63.
  err <- expect_pyrmap_error(py_eval(bit64::as.integer64(1:2), "np.array([-2**63, 1], dtype=np.int64)"),
                             "pyrmap_usage_error", "result\\[1\\] = -9223372036854775808")
  expect_match(conditionMessage(err), "integer64 input")
  with_na <- py_eval(bit64::as.integer64(c(1, NA)), "np.array([-2**63, 1], dtype=np.int64)", "float64")
  expect_identical(as.character(with_na), c(NA, "1"))
})

test_that("NaN and the infinities in a float result are themselves", {
  expect_identical(py_eval(1, "np.array([np.nan, np.inf, -np.inf, -0.0])"), c(NaN, Inf, -Inf, -0))
  expect_identical(bits(py_eval(1, "np.array([-0.0])")), bits(-0))
})

test_that("this file leaves no segment in /dev/shm", {
  expect_identical(shm_leftovers(shm_at_start), character(0))
})
