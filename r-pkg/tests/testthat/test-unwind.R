# R errors must not long-jump over C++ frames that own mappings: the entry
# points run R API calls under R_UnwindProtect, unwind their C++ objects,
# then let R's error go on. What can be provoked from R is tested here: an
# allocation that fails (R's vector heap limit) while a result's mapping is
# held, strings R refuses to translate, and gctorture over the entry points.
# (An allocation failure inside the small lists the entry points return
# cannot be provoked on its own; it takes the same path.)

shm_at_start <- shm_snapshot()

# Bytes of pyrmap segments this process maps (see test-memory.R).
mapped_segments <- function() {
  lines <- readLines("/proc/self/maps")
  lines[grepl("/dev/shm/pyrmap-", lines, fixed = TRUE)]
}

test_that("an R allocation failing while a result is converted releases the result's mapping", {
  skip_if(getRversion() < "4.1.0", "mem.maxVSize() needs R >= 4.1")
  gc()
  before <- mapped_segments()
  on.exit(mem.maxVSize(Inf), add = TRUE)
  # Room for the call's own small objects, not for converting its float32
  # result of 80 MB into a 160 MB double vector.
  g <- gc()
  mem.maxVSize(max(g[2L, 4L], g[2L, 2L] + 20))
  err <- tryCatch(py_eval(1, "np.zeros(20000000, dtype=np.float32)"), error = function(e) e)
  mem.maxVSize(Inf)
  expect_s3_class(err, "error")
  expect_match(conditionMessage(err), "vector memory (limit|exhausted)|cannot allocate")
  # R's own error, not one of ours, and nothing of the call is mapped any more.
  expect_false(inherits(err, "pyrmap_error"))
  gc()
  expect_identical(setdiff(mapped_segments(), before), character(0))
  expect_no_segments()
  # The package still works.
  expect_identical(run_python(c(1, 2), py("identity.py"), "float32"), c(1, 2))
})

test_that("a namespace or name R cannot translate to UTF-8 is a usage error; nothing is registered", {
  bytes <- function(s) {
    Encoding(s) <- "bytes"
    s
  }
  bad_ns <- bytes("mstest-bytes-\xff")
  e <- expect_error(registerVariables(bad_ns, list(a = 1)), class = "pyrmap_usage_error")
  expect_match(conditionMessage(e), "bytes")
  expect_error(retrieveViews(bad_ns, "a"), class = "pyrmap_usage_error")
  ns <- ms_ns("bytes")
  e <- expect_error(registerVariables(ns, structure(list(1), names = bytes("v\xff"))),
                    class = "pyrmap_usage_error")
  expect_match(conditionMessage(e), "variable name")
  e <- expect_error(registerVariables(ns, list(L = structure(list(1, 2), names = c("a", bytes("b\xff"))))),
                    class = "pyrmap_usage_error")
  expect_match(conditionMessage(e), "element 2 of 'L'")
  expect_error(retrieveMetadata(ns, "L"), class = "pyrmap_not_registered")
  expect_identical(grep(ns, unlist(pageList()), fixed = TRUE, value = TRUE), character(0))
})

test_that("the entry points protect what they make (gctorture)", {
  ns <- ms_ns("torture")
  X <- matrix(as.numeric(1:12), 3)
  L <- list(a = 1:3, b = c(TRUE, FALSE), r = as.raw(7))
  gctorture(TRUE)
  registerVariables(ns, list(X = X, L = L))
  v <- retrieveViews(ns, c("X", "L"))
  meta <- retrieveMetadata(ns, "L")
  col <- pyrmap:::.pyrmap_slice(v$X, 2L, 3L)
  row <- pyrmap:::.pyrmap_slice(v$X, 1L, 2L)
  page <- pyrmap:::.pyrmap_view_page(v$X)
  info <- pyrmap:::.pyrmap_view_info(col)
  gone <- pyrmap:::.pyrmap_generation(ns, "nope")
  gctorture(FALSE)
  expect_identical(v$X[, ], X)
  expect_identical(as.list(v$L), L)
  expect_identical(meta$n, 3)
  expect_identical(col, X[, 3])
  expect_identical(row, X[2, ])
  expect_identical(page$var, "X")
  expect_identical(info$length, 3)
  expect_identical(gone, NA_character_)
  releaseViews(ns, c("X", "L"))
  releaseVariables(ns, c("X", "L"))
  # run_python's entry point, results converted (float32) and viewed (float64).
  gctorture(TRUE)
  a <- run_python(c(1.5, 2.5), py("identity.py"), "float32")
  b <- run_python(matrix(c(1, 2, 3, 4), 2, dimnames = list(c("p", "q"), NULL)), py("identity.py"))
  gctorture(FALSE)
  expect_identical(a, c(1.5, 2.5))
  expect_identical(b, matrix(c(1, 2, 3, 4), 2, dimnames = list(c("p", "q"), NULL)))
})

test_that("Python error text that is not valid UTF-8 reaches R as valid, marked UTF-8", {
  script <- tempfile(fileext = ".py")
  on.exit(unlink(script))
  writeLines(c("from pyrmap import process_via_mmap",
               "@process_via_mmap",
               "def process(data):",
               # A lone surrogate: what Python makes of undecodable bytes.
               "    raise ValueError('bad bytes: ' + b'\\xff\\xfe'.decode('utf-8', 'surrogateescape'))",
               "if __name__ == '__main__':",
               "    process()"), script)
  err <- expect_pyrmap_error(quiet_stderr(run_python(1, script)), "pyrmap_python_error", "bad bytes")
  msg <- conditionMessage(err)
  expect_true(validUTF8(msg))
  expect_true(Encoding(msg) %in% c("UTF-8", "unknown"))
  # R's string functions work on it.
  expect_gt(nchar(msg), 10)
  expect_match(gsub("bad", "good", msg), "good bytes")
  expect_true(validUTF8(err$traceback))
})

test_that("this file leaves no segment in /dev/shm", {
  expect_identical(shm_leftovers(shm_at_start), character(0))
})
