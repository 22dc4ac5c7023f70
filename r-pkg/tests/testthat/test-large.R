# A long vector (more than 2^31 elements) round-trips. Needs about 7 GB of
# memory and 4.3 GB of /dev/shm: run with PYRMAP_TEST_LARGE=1 (make test-large).

test_that("a raw vector of more than 2^31 elements round-trips", {
  skip_if_not(identical(Sys.getenv("PYRMAP_TEST_LARGE"), "1"),
              "set PYRMAP_TEST_LARGE=1 to run the long-vector test")
  n <- 2^31 + 1001
  skip_if(shm_available() < 2.2 * n, "not enough room in /dev/shm for two copies")
  t0 <- Sys.time()
  x <- rep_len(as.raw(0:250), n)  # element i (0-based) is i %% 251
  expect_identical(length(x), n)
  invisible(gc())
  heap0 <- r_heap_mb()
  # py/large_check.py checks the length and elements on both sides of 2^31
  # in Python, then returns the array (copied into the result segment).
  y <- run_python(x, py("large_check.py"), args = format(n, scientific = FALSE))
  expect_lt(r_heap_mb() - heap0, 100)  # the result is a view, not a copy
  expect_false(is.null(view_info(y)))
  expect_identical(typeof(y), "raw")
  expect_identical(length(y), n)
  idx <- c(1, 2^31 - 1, 2^31, 2^31 + 1, 2^31 + 2, n)
  expect_identical(y[idx], as.raw((idx - 1) %% 251))
  expect_true(identical(x, y))
  expect_no_segments()
  rm(y)
  invisible(gc(full = TRUE))
  expect_false(any(grepl(sprintf("/dev/shm/pyrmap-%s-%d-", my_uid(), Sys.getpid()), self_maps()$path, fixed = TRUE)))
  message(sprintf("long vector: %.0f elements round-tripped in %.1f s",
                  n, as.numeric(Sys.time() - t0, units = "secs")))
})
