# The input reaches Python with at most one copy, as a read-only view of the
# call's data segment; R's object is never changed.

shm_at_start <- shm_snapshot()

# Records of py/inspect_input.py (one per script run), as a list of lists.
inspect_log <- function(log) lapply(seq_len(nrow(d <- read.dcf(log))), function(i) as.list(d[i, ]))

# (The name may already be removed while Python maps it: "(deleted)".)
data_segment_pattern <- function(role = "data") {
  sprintf("^/dev/shm/pyrmap-%s-%d-[0-9a-f]+-%s( \\(deleted\\))?$", my_uid(), Sys.getpid(), role)
}

test_that("Python gets a read-only, F-ordered view of the data segment for a matrix", {
  log <- tempfile(fileext = ".dcf")
  on.exit(unlink(log), add = TRUE)
  m <- matrix(as.numeric(1:6), 2)
  run_python(m, py("inspect_input.py"), args = log)
  rec <- inspect_log(log)[[1L]]
  expect_identical(rec$writeable, "False")
  expect_identical(rec$f_contiguous, "True")
  expect_identical(rec$c_contiguous, "False")
  expect_identical(rec$owndata, "False")
  expect_identical(rec$dtype, "float64")
  expect_identical(rec$shape, "2,3")
  expect_identical(rec$base, "mmap")
  # The array's memory is the call's data segment, mapped shared and
  # read-only (no private copy in Python).
  expect_match(rec$mapping, data_segment_pattern())
  expect_identical(rec$perms, "r--s")
})

test_that("converted inputs and 3-D arrays are mapped the same way", {
  log <- tempfile(fileext = ".dcf")
  on.exit(unlink(log), add = TRUE)
  run_python(array(1:24, 2:4), py("inspect_input.py"), args = log)
  run_python(c(TRUE, FALSE, TRUE), py("inspect_input.py"), args = log)
  run_python(matrix(c(1.5, 2.5), 1), py("inspect_input.py"), "float32", args = log)
  run_python(as.raw(1:5), py("inspect_input.py"), args = log)
  recs <- inspect_log(log)
  expect_identical(vapply(recs, `[[`, "", "dtype"), c("int32", "bool", "float32", "uint8"))
  expect_identical(vapply(recs, `[[`, "", "shape"), c("2,3,4", "3", "1,2", "5"))
  for (rec in recs) {
    expect_identical(rec$writeable, "False")
    expect_identical(rec$f_contiguous, "True")
    expect_match(rec$mapping, data_segment_pattern())
    expect_identical(rec$perms, "r--s")
  }
  expect_identical(recs[[1L]]$c_contiguous, "False")
  expect_identical(recs[[3L]]$first, "1.5")
})

test_that("all scripts of a shared call read the same data segment", {
  log <- tempfile(fileext = ".dcf")
  on.exit(unlink(log), add = TRUE)
  run_python_shared_data(runif(10), rep(py("inspect_input.py"), 3), args = log, jobs = 2)
  recs <- inspect_log(log)
  expect_length(recs, 3L)
  paths <- vapply(recs, `[[`, "", "mapping")
  expect_match(paths, data_segment_pattern())
  expect_length(unique(paths), 1L)
})

test_that("a pipeline stage reads the previous stage's result segment, no copy", {
  log <- tempfile(fileext = ".dcf")
  on.exit(unlink(log), add = TRUE)
  a <- array(as.numeric(1:24), 2:4)
  res <- run_python_pipeline(a, rep(py("inspect_input.py"), 3), args = log)
  expect_identical(res, a)
  recs <- inspect_log(log)
  expect_match(recs[[1L]]$mapping, data_segment_pattern("data"))
  expect_match(recs[[2L]]$mapping, data_segment_pattern("res-0"))
  expect_match(recs[[3L]]$mapping, data_segment_pattern("res-1"))
  # One call: the same prefix throughout.
  prefixes <- unique(sub("-(data|res-[0-9]+)$", "", vapply(recs, `[[`, "", "mapping")))
  expect_length(prefixes, 1L)
  for (rec in recs) {
    expect_identical(rec$writeable, "False")
    expect_identical(rec$f_contiguous, "True")
    expect_identical(rec$shape, "2,3,4")
  }
})

test_that("the R input object is unchanged by calls, even when Python tries to write", {
  x <- c(3.25, -1, NA, NaN, -0, Inf)
  m <- matrix(1:6, 2, dimnames = list(c("a", "b"), NULL))
  keep_x <- unserialize(serialize(x, NULL))
  keep_m <- unserialize(serialize(m, NULL))
  run_python(x, py("identity.py"))
  run_python(m, py("twice.py"), "float64")
  err <- expect_pyrmap_error(run_python(x, py("write_input.py")), "pyrmap_python_error", "read-only")
  expect_identical(err$python_type, "ValueError")
  # Writing behind numpy's back faults: the mapping itself is read-only.
  err <- expect_pyrmap_error(run_python(m, py("poke_input.py")), "pyrmap_script_error", "signal 11|SIGSEGV")
  expect_identical(err$signal, 11L)
  expect_identical(bits(x), bits(keep_x))
  expect_identical(m, keep_m)
})

test_that("sending a large input does not copy it inside R", {
  # 100 MB, or a quarter of what /dev/shm has free if that is less.
  n <- floor(min(12.5e6, shm_available() / 4 / 8))
  skip_if(n < 2e6, "less than 64 MB free in /dev/shm")
  x <- runif(n)
  expected <- sum(x)
  # As is (one copy, R -> segment) and converted (chunked, outside R's heap).
  for (dtype in c("float64", "float32")) {
    invisible(gc(reset = TRUE))
    used0 <- gc()[2L, 2L]
    s <- py_eval(x, "np.array([data.sum(dtype=np.float64)])", dtype)
    peak <- gc()[2L, 6L]
    expect_lt(peak - used0, 0.1 * 8 * n / 2^20, label = sprintf("R heap growth (MB) during a %s call", dtype))
    expect_equal(s, expected, tolerance = if (dtype == "float32") 1e-6 else 1e-12)
  }
})

test_that("this file leaves no segment in /dev/shm", {
  expect_identical(shm_leftovers(shm_at_start), character(0))
})
