# Results are ALTREP views of the result segment: no copy, valid after the
# call and after gc(), read-only from R's side, unmapped when collected.

shm_at_start <- shm_snapshot()

res_segment_pattern <- function() {
  # A result lives in the call's result segment, or, when the script wrote
  # it over its own input, in the call's data segment; both names are gone.
  sprintf("^/dev/shm/pyrmap-%s-%d-[0-9a-f]+-(res-[0-9]+|data) \\(deleted\\)$", my_uid(), Sys.getpid())
}

test_that("a float64 result is a view whose memory is a /dev/shm mapping", {
  x <- run_python(as.numeric(1:1000), py("twice.py"))
  expect_identical(x, as.numeric(1:1000) * 2)
  info <- view_info(x)
  expect_false(is.null(info))
  expect_identical(info$length, 1000)
  expect_match(inspect_text(x), "pyrmap view of 1000 elements")
  map <- mapping_at(info$address)
  expect_false(is.null(map))
  # The result segment's name is already gone from /dev/shm: the mapping
  # keeps the memory alive.
  expect_match(map$path, res_segment_pattern())
  expect_no_segments()
  # Not a view: ordinary vectors and the converted dtypes.
  expect_null(view_info(as.numeric(1:3)))
  expect_null(view_info(run_python(c(TRUE, FALSE), py("identity.py"))))
  expect_null(view_info(run_python(c(1, 2), py("identity.py"), "float32")))
})

test_that("int32, uint8, integer64 and array results are views as well", {
  i <- run_python(1:10, py("twice.py"))
  r <- run_python(as.raw(1:10), py("twice.py"))
  a <- run_python(array(as.numeric(1:24), 2:4), py("identity.py"))
  for (x in list(i, r, a)) {
    expect_false(is.null(view_info(x)))
    expect_match(mapping_at(view_info(x)$address)$path, res_segment_pattern())
  }
  expect_identical(i, 1:10 * 2L)
  expect_identical(r, as.raw(1:10 * 2))
  expect_identical(a, array(as.numeric(1:24), 2:4))
  skip_if_not_installed("bit64")
  big <- py_eval(1, "np.array([2**60, 3], dtype=np.int64)")
  expect_s3_class(big, "integer64")
  expect_false(is.null(view_info(big)))
})

test_that("a view stays valid after the call, after gc() and after other calls", {
  x <- run_python(matrix(as.numeric(1:20000), 100), py("twice.py"))
  addr <- view_info(x)$address
  for (k in 1:3) {
    invisible(gc(full = TRUE))
    other <- run_python(runif(5000), py("identity.py"))
    rm(other)
  }
  invisible(gc(full = TRUE))
  expect_identical(view_info(x)$address, addr)
  expect_identical(x, matrix(as.numeric(1:20000) * 2, 100))
  expect_identical(sum(x), sum(as.numeric(1:20000)) * 2)
})

test_that("collecting a view unmaps its memory", {
  x <- run_python(as.numeric(1:5000), py("identity.py"))
  addr <- view_info(x)$address
  expect_false(is.null(mapping_at(addr)))
  rm(x)
  invisible(gc(full = TRUE))
  gone <- mapping_at(addr)
  expect_true(is.null(gone) || !grepl(res_segment_pattern(), gone$path))
  # Every result mapping of this process goes once nothing refers to it.
  y <- run_python_shared_data(1:100, rep(py("twice.py"), 3))
  expect_gte(sum(grepl(res_segment_pattern(), self_maps()$path)), 3L)
  rm(y)
  invisible(gc(full = TRUE))
  expect_false(any(grepl(res_segment_pattern(), self_maps()$path)))
})

test_that("a 200 MB result costs no R memory and its /dev/shm space is freed on gc()", {
  # 200 MB of doubles, or a quarter of what /dev/shm has free if that is less.
  n <- floor(min(25e6, shm_available() / 4 / 8))
  skip_if(n < 2e6, "less than 64 MB free in /dev/shm")
  invisible(gc(full = TRUE))
  heap0 <- r_heap_mb()
  rss0 <- rss_shmem_kb()
  x <- run_python(1, py("filled.py"), args = format(n, scientific = FALSE))
  # No copy: R's heap did not grow by the result's 200 MB ...
  expect_lt(r_heap_mb() - heap0, 0.1 * 8 * n / 2^20)
  expect_length(x, n)
  expect_identical(sum(x), 1.5 * n)
  # ... and reading it made the pages resident as *shared* memory.
  expect_gt(rss_shmem_kb() - rss0, 0.9 * 8 * n / 1024)
  expect_lt(r_heap_mb() - heap0, 0.1 * 8 * n / 2^20)
  expect_match(mapping_at(view_info(x)$address)$path, res_segment_pattern())
  # Freed when collected. Others may use /dev/shm at the same time, so the
  # drop is measured around gc() alone, up to three times.
  rm(x)
  dropped <- FALSE
  for (attempt in 1:3) {
    if (attempt > 1) {
      x <- run_python(1, py("filled.py"), args = format(n, scientific = FALSE))
      rm(x)
    }
    before <- shm_used()
    invisible(gc(full = TRUE))
    after <- shm_used()
    if (before - after >= 0.9 * 8 * n) {
      dropped <- TRUE
      break
    }
  }
  expect_true(dropped, label = "/dev/shm used space dropped by the result's size after gc()")
  expect_false(any(grepl(res_segment_pattern(), self_maps()$path)))
  expect_lt(rss_shmem_kb() - rss0, 0.1 * 8 * n / 1024)
})

test_that("views are read-only: modifying a copy never changes the view", {
  x <- run_python(as.numeric(1:10), py("twice.py"))
  expected <- as.numeric(1:10) * 2
  y <- x
  y[1] <- 0
  expect_identical(x, expected)
  expect_identical(y, replace(expected, 1, 0))
  expect_false(is.null(view_info(x)))
  expect_null(view_info(y))
  expect_false(grepl("pyrmap view", inspect_text(y)))
  # Modifying in a function works on the function's copy.
  f <- function(v) {
    v[2] <- -1
    v
  }
  z <- f(x)
  expect_identical(x, expected)
  expect_identical(z[2], -1)
  # A matrix view: the copy keeps dim and dimnames.
  m <- run_python(matrix(1:6, 2, dimnames = list(c("a", "b"), NULL)), py("identity.py"))
  m2 <- m
  m2[1, 1] <- 100L
  expect_identical(m[[1, 1]], 1L)
  expect_identical(m2, matrix(c(100L, 2:6), 2, dimnames = list(c("a", "b"), NULL)))
  expect_null(view_info(m2))
  # Assigning into the view's only binding gives an ordinary vector too.
  w <- run_python(1:5, py("identity.py"))
  w[3] <- 0L
  expect_identical(w, c(1L, 2L, 0L, 4L, 5L))
})

test_that("duplicates and serialised copies are ordinary vectors with equal contents", {
  x <- run_python(matrix(c(NA, NaN, -0, Inf, 1.5, 2), 2, dimnames = list(NULL, c("a", "b", "c"))),
                  py("identity.py"))
  expect_false(is.null(view_info(x)))
  plus <- x + 0
  expect_null(view_info(plus))
  expect_identical(plus, x)
  s <- unserialize(serialize(x, NULL))
  expect_null(view_info(s))
  expect_false(grepl("pyrmap view", inspect_text(s)))
  expect_identical(s, x)
  expect_identical(bits(s), bits(x))
  s2 <- unserialize(serialize(x, NULL, version = 2))
  expect_identical(bits(s2), bits(x))
  file <- tempfile(fileext = ".rds")
  on.exit(unlink(file), add = TRUE)
  saveRDS(x, file)
  r <- readRDS(file)
  expect_null(view_info(r))
  expect_identical(r, x)
  expect_identical(attributes(r), attributes(x))
  # Also for the integer and raw views, and for a list of views.
  lst <- run_python_shared_data(1:5, c(py("twice.py"), py("identity.py")))
  back <- unserialize(serialize(lst, NULL))
  expect_identical(back, list(twice.py = 1:5 * 2L, identity.py = 1:5))
  expect_null(view_info(back[[1]]))
  raw_view <- run_python(as.raw(0:255), py("identity.py"))
  expect_identical(unserialize(serialize(raw_view, NULL)), as.raw(0:255))
})

test_that("a view can be fed back to run_python, and its own data stay intact", {
  x <- run_python(as.numeric(1:100), py("twice.py"))
  y <- run_python(x, py("twice.py"))
  expect_identical(y, as.numeric(1:100) * 4)
  expect_identical(x, as.numeric(1:100) * 2)
  expect_no_segments()
})

test_that("this file leaves no segment in /dev/shm", {
  expect_identical(shm_leftovers(shm_at_start), character(0))
})
