# What R data may enter: NA in an integer, logical or integer64 vector of
# the default dtype becomes a masked value (test-frames.R); asked as a dtype
# that cannot hold a missing value, NA is refused (a usage error naming the
# element and the dtype), also when the data reach Python without a copy;
# float dtypes keep NA as NaN. Classed vectors other than matrix, array,
# integer64, factor, Date and POSIXct are refused, naming the class, instead
# of arriving as bare numbers.

na_shm_at_start <- shm_snapshot()

identity_py <- function() py("identity.py")

test_that("NA in integer data is masked by default, and refused when int32 or int64 is asked", {
  expect_identical(run_python(c(1L, NA), identity_py()), c(1L, NA))
  err <- expect_pyrmap_error(run_python(c(1L, NA), identity_py(), "int32"), "pyrmap_usage_error",
                             "data\\[2\\] is NA")
  expect_match(conditionMessage(err), "dtype 'int32' cannot represent", fixed = TRUE)
  expect_pyrmap_error(run_python(c(1L, 2L, NA), identity_py(), "int64"), "pyrmap_usage_error",
                      "data\\[3\\] is NA.*'int64'")
  # In a matrix (positions count in R's order), and in every mode.
  m <- matrix(c(1L, 2L, NA, 4L), 2)
  two <- c(identity_py(), identity_py())
  expect_identical(run_python(m, identity_py()), m)
  expect_identical(run_python_shared_data(m, two)[[2]], m)
  expect_identical(run_python_pipeline(m, two), m)
  expect_pyrmap_error(run_python(m, identity_py(), "int32"), "pyrmap_usage_error", "data\\[3\\] is NA")
  expect_pyrmap_error(run_python_shared_data(m, two, "int32"), "pyrmap_usage_error", "data\\[3\\] is NA")
  expect_pyrmap_error(run_python_pipeline(m, two, "int32"), "pyrmap_usage_error", "data\\[3\\] is NA")
  # Far into a long vector (beyond the first chunk of the conversion).
  long <- seq_len(3e6)
  long[2500001] <- NA
  expect_pyrmap_error(run_python(long, identity_py(), "int64"), "pyrmap_usage_error",
                      "data\\[2500001\\] is NA")
  expect_identical(run_python(long, identity_py()), long)
})

test_that("NA in logical data is masked by default, and refused as bool, int32 and int64", {
  x <- c(TRUE, NA, FALSE)
  expect_identical(run_python(x, identity_py()), x)
  for (dtype in list("bool", "int32", "int64", "uint8")) {
    err <- expect_pyrmap_error(run_python(x, identity_py(), dtype), "pyrmap_usage_error",
                               "data\\[2\\] is NA")
    expect_match(conditionMessage(err), sprintf("'%s'", dtype))
  }
})

test_that("NA_real_ asked as an integer dtype is refused; NaN is refused as a value", {
  for (dtype in c("int32", "int64", "uint8", "bool")) {
    expect_pyrmap_error(run_python(c(1, NA), identity_py(), dtype), "pyrmap_usage_error",
                        sprintf("data\\[2\\] is NA.*'%s'", dtype))
  }
  expect_pyrmap_error(run_python(c(1, NaN), identity_py(), "int32"), "pyrmap_usage_error",
                      "data\\[2\\] = NaN")
})

test_that("float dtypes keep NA: it arrives as NaN and comes back as NA", {
  expect_identical(run_python(c(1L, NA), identity_py(), "float64"), c(1, NA))
  expect_identical(run_python(c(TRUE, NA), identity_py(), "float64"), c(1, NA))
  expect_identical(run_python(c(1L, NA), identity_py(), "float32"), c(1, NA))
  expect_identical(py_eval(c(1L, NA), "np.isnan(data)", "float64"), c(FALSE, TRUE))
  # Double data as float64 is passed bit for bit, NA and NaN apart.
  x <- c(NA, NaN, 1)
  res <- run_python(x, identity_py(), "float64")
  expect_identical(bits(res), bits(x))
  expect_true(is.na(res[1L]) && !is.nan(res[1L]) && is.nan(res[2L]))
})

test_that("integer64 NA is masked by default, refused as int64 and int32, and is NA as float64", {
  skip_if_not_installed("bit64")
  x <- bit64::as.integer64(c("5", NA, "-7"))
  expect_identical(run_python(x, identity_py()), x)
  expect_pyrmap_error(run_python(x, identity_py(), "int64"), "pyrmap_usage_error", "data\\[2\\] is NA.*'int64'")
  expect_pyrmap_error(run_python(x, identity_py(), "int32"), "pyrmap_usage_error",
                      "data\\[2\\] is NA.*'int32'")
  expect_identical(run_python(x, identity_py(), "float64"), c(5, NA, -7))
})

test_that("a registered variable or a view with NA is scanned, though it goes without a copy", {
  ns <- ms_ns("na-reg")
  X <- c(seq_len(1000), NA, 2L)
  registerVariables(ns, list(X = X))
  on.exit(releaseVariables(ns, "X"))
  expect_pyrmap_error(run_python(X, identity_py(), "int32"), "pyrmap_usage_error", "data\\[1001\\] is NA")
  expect_identical(run_python(X, identity_py()), X)  # masked (copied, as a table)
  v <- retrieveViews(ns, "X")$X
  on.exit(releaseViews(ns, "X"), add = TRUE, after = FALSE)
  expect_pyrmap_error(run_python(v, identity_py(), "int32"), "pyrmap_usage_error", "data\\[1001\\] is NA")
  expect_pyrmap_error(run_python(v, identity_py(), "int64"), "pyrmap_usage_error",
                      "data\\[1001\\] is NA")
  # As float64 the data are converted (so copied) and NA arrives as NaN.
  expect_identical(run_python(v, identity_py(), "float64"), as.double(X))
  # A logical page asked as int32 (its own bytes) is scanned too.
  L <- c(TRUE, FALSE, NA)
  registerVariables(ns, list(L = L))
  on.exit(releaseVariables(ns, "L"), add = TRUE)
  lv <- retrieveViews(ns, "L")$L
  on.exit(releaseViews(ns, "L"), add = TRUE, after = FALSE)
  expect_pyrmap_error(run_python(lv, identity_py(), "int32"), "pyrmap_usage_error", "data\\[3\\] is NA")
  # Without NA the handover is still without a copy.
  Y <- seq_len(300)
  registerVariables(ns, list(Y = Y))
  on.exit(releaseVariables(ns, "Y"), add = TRUE)
  res <- ms_run_zero_copy(Y)
  expect_identical(res$value, Y * 2L)
  expect_identical(sub("^/", "", res$info$data), ms_segment_of(ns, "Y"))
})

test_that("classed vectors are refused naming their class, in every mode", {
  cases <- list(
    difftime = as.difftime(c(1, 2), units = "secs"),
    ts = stats::ts(c(1, 2, 3)),
    table = table(c(1, 1, 2)),
    AsIs = I(c(1, 2)))
  for (cls in names(cases)) {
    err <- expect_pyrmap_error(run_python(cases[[cls]], identity_py()), "pyrmap_usage_error",
                               sprintf("class '%s'", cls))
    expect_match(conditionMessage(err), "not supported", fixed = TRUE)
    expect_match(conditionMessage(err), "unclass()", fixed = TRUE)
  }
  two <- c(identity_py(), identity_py())
  expect_pyrmap_error(run_python_shared_data(cases$difftime, two), "pyrmap_usage_error", "class 'difftime'")
  expect_pyrmap_error(run_python_pipeline(cases$ts, two), "pyrmap_usage_error", "class 'ts'")
  # What unclass() gives goes, as the bare numbers.
  expect_identical(run_python(unclass(cases$AsIs), identity_py()), unclass(cases$AsIs))
  # Factor, Date and POSIXct go as themselves (test-frames.R).
  d <- as.Date("2024-01-01") + 0:2
  expect_identical(run_python(d, identity_py()), d)
})

test_that("matrices, arrays and integer64 are classed vectors that go", {
  m <- matrix(1:6, 2)
  expect_identical(run_python(m, identity_py()), m)
  a <- array(as.numeric(1:8), c(2, 2, 2))
  expect_identical(run_python(a, identity_py()), a)
  explicit <- structure(1:4, dim = c(2L, 2L), class = c("matrix", "array"))
  expect_identical(run_python(explicit, identity_py()), matrix(1:4, 2))
  skip_if_not_installed("bit64")
  res <- run_python(bit64::as.integer64(c("1", "-2")), identity_py())
  expect_s3_class(res, "integer64")
  expect_identical(as.character(res), c("1", "-2"))
})

test_that("this file leaves no segment in /dev/shm", {
  expect_identical(ms_leftovers(na_shm_at_start), character(0))
})
