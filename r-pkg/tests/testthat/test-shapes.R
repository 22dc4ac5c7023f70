# Vectors, matrices and arrays: dims come back as dims; names and dimnames
# are kept when the result has the input's shape; empty inputs work.

shm_at_start <- shm_snapshot()

test_that("matrices of every type round-trip with dim and dimnames", {
  dn <- list(c("r1", "r2"), c("a", "b", "c"))
  mats <- list(
    matrix(c(1.5, -2, 3, 4, 5, 6), 2, dimnames = dn),
    matrix(c(1L, -2L, 3L, 4L, 5L, 6L), 2, dimnames = dn),
    matrix(c(TRUE, FALSE, TRUE, TRUE, FALSE, FALSE), 2, dimnames = dn),
    matrix(as.raw(1:6), 2, dimnames = dn))
  for (m in mats) expect_identical(run_python(m, py("identity.py")), m)
})

test_that("a matrix reaches Python as a column-major 2-D array with R's indexing", {
  m <- matrix(as.numeric(1:6), 2)
  # data[i, j] in Python is m[i + 1, j + 1] in R.
  expect_identical(py_eval(m, "np.array([data[0, 0], data[1, 0], data[0, 2], data[1, 2]])"),
                   c(m[1, 1], m[2, 1], m[1, 3], m[2, 3]))
  expect_identical(py_eval(m, "np.array(data.shape)"), c(2, 3))
  expect_identical(py_eval(m, "data.sum(axis=0)"), colSums(m))
  expect_identical(py_eval(m, "data.sum(axis=1)"), rowSums(m))
  expect_identical(py_eval(m, "data @ data.T"), m %*% t(m))
})

test_that("3-D (and 4-D) arrays keep their dims, dimnames and element order", {
  a <- array(as.numeric(1:24), c(2, 3, 4), dimnames = list(c("x", "y"), NULL, letters[1:4]))
  expect_identical(run_python(a, py("identity.py")), a)
  expect_identical(run_python(a, py("twice.py")), a * 2)
  expect_identical(py_eval(a, "np.array([data[1, 2, 3], data[0, 1, 2], data[1, 0, 0]])"),
                   c(a[2, 3, 4], a[1, 2, 3], a[2, 1, 1]))
  expect_identical(py_eval(a, "data.sum(axis=2)"), unname(apply(a, c(1, 2), sum)))
  b <- array(1:120, 2:5)
  expect_identical(run_python(b, py("twice.py")), b * 2L)
  expect_identical(run_python(b, py("identity.py"), "float64"), array(as.numeric(1:120), 2:5))
})

test_that("C-ordered and transposed results arrive with R's [i, j] meaning", {
  r <- py_eval(1, "np.arange(6.0).reshape(2, 3)")   # row-major in numpy
  expect_identical(r, matrix(c(0, 3, 1, 4, 2, 5), 2))
  a <- py_eval(1, "np.arange(24.0).reshape(2, 3, 4)")
  expect_identical(dim(a), c(2L, 3L, 4L))
  expect_identical(a[2, 3, 4], 23)
  expect_identical(a[1, 2, 3], 6)
  m <- matrix(as.numeric(1:6), 2, dimnames = list(c("r1", "r2"), c("a", "b", "c")))
  expect_identical(py_eval(m, "data.T"), t(unname(m)))
  expect_identical(py_eval(m, "data[:, ::2]"), unname(m[, c(1, 3)]))
  expect_identical(py_eval(m, "np.ascontiguousarray(data)"), m)
})

test_that("names and dimnames are kept only when the result has the input's shape", {
  v <- c(a = 1, b = 2, c = 3)
  expect_identical(run_python(v, py("twice.py")), v * 2)
  expect_identical(names(py_eval(v, "data.sum()")), NULL)
  expect_identical(names(py_eval(v, "data[:2]")), NULL)
  expect_identical(names(py_eval(v, "data.reshape(1, 3)")), NULL)
  m <- matrix(1:6, 2, dimnames = list(c("r1", "r2"), c("a", "b", "c")))
  expect_identical(dimnames(run_python(m, py("twice.py"))), dimnames(m))
  expect_null(dimnames(py_eval(m, "data.T")))
  expect_null(dimnames(py_eval(m, "data.sum(axis=0)")))
  expect_null(names(py_eval(m, "data.ravel(order='F')")))
  expect_null(dim(py_eval(m, "data.ravel(order='F')")))
  expect_identical(py_eval(m, "data.ravel(order='F')"), as.vector(m))
})

test_that("scalar and one-element results are plain vectors", {
  expect_identical(py_eval(matrix(1:4, 2), "data.sum()"), 10)
  expect_identical(py_eval(1, "data"), 1)
  expect_null(dim(py_eval(array(1, c(1, 1, 1)), "data.sum()")))
  expect_identical(dim(py_eval(array(1, c(1, 1, 1)), "data")), c(1L, 1L, 1L))
})

test_that("empty vectors and matrices of every type work", {
  empties <- list(numeric(0), integer(0), logical(0), raw(0))
  for (e in empties) {
    expect_identical(run_python(e, py("identity.py")), e)
    expect_identical(py_eval(e, "np.array(data.shape)"), 0)
  }
  expect_identical(py_eval(numeric(0), "data.sum()"), 0)
  expect_identical(py_eval(numeric(0), "data + 1"), numeric(0))
  for (m in list(matrix(numeric(0), 0, 3), matrix(integer(0), 3, 0), array(raw(0), c(2, 0, 2)))) {
    expect_identical(run_python(m, py("identity.py")), m)
  }
  expect_identical(py_eval(matrix(numeric(0), 0, 3), "np.array(data.shape)"), c(0, 3))
  expect_identical(py_eval(1, "np.zeros((0, 4))"), matrix(numeric(0), 0, 4))
  expect_identical(run_python_pipeline(numeric(0), rep(py("twice.py"), 2)), numeric(0))
  expect_identical(run_python_shared_data(integer(0), rep(py("twice.py"), 2), jobs = 2),
                   list(twice.py = integer(0), twice.py.1 = integer(0)))
})

test_that("this file leaves no segment in /dev/shm", {
  expect_identical(shm_leftovers(shm_at_start), character(0))
})
