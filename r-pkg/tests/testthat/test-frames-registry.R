# A data.frame registered as one page: its columns are the page's arrays,
# retrieveViews() gives a data.frame of views back, memApply(MARGIN = 2)
# hands each column as it is; what a page cannot keep is refused by name.

frames_reg_shm_at_start <- shm_snapshot()

test_that("a registered data.frame comes back as a data.frame of views, identical", {
  ns <- ms_ns("frame")
  df <- data.frame(x = c(1.5, NA, NaN), n = c(1L, NA, 3L), ok = c(TRUE, NA, FALSE),
                   r = as.raw(c(0, 7, 255)), `ü b` = c(-1, 0, 1), check.names = FALSE)
  if (requireNamespace("bit64", quietly = TRUE)) df$i64 <- bit64::as.integer64(c("1", NA, "-9007199254740993"))
  registerVariables(ns, list(df = df, empty = df[0, ]))
  on.exit(releaseVariables(ns, c("df", "empty")))
  v <- retrieveViews(ns, c("df", "empty"))
  on.exit(releaseViews(ns, c("df", "empty")), add = TRUE, after = FALSE)
  expect_identical(v$df, df)
  expect_identical(v$empty, df[0, ])
  expect_true(all(vapply(v$df, is_view, logical(1))))
  expect_identical(.row_names_info(v$df), -3L)
  meta <- retrieveMetadata(ns, "df")
  expect_identical(meta$type, "data.frame")
  expect_identical(meta$nrow, 3)
  expect_identical(meta$ncol, ncol(df))
  # run_python() takes the frame of views like any frame.
  expect_identical(run_python(v$df[c("x", "n")], py("identity.py")), df[c("x", "n")])
})

test_that("memApply with MARGIN = 2 over a registered data.frame hands each column as it is", {
  ns <- ms_ns("frame-apply")
  df <- data.frame(a = c(1, 2, 4), b = 1:3, c = c(TRUE, FALSE, TRUE))
  registerVariables(ns, list(df = df))
  on.exit(releaseVariables(ns, "df"))
  res <- memApply("df", 2, function(v) list(type = typeof(v), sum = sum(v), attrs = attributes(v)),
                  NAMESPACE = ns, MAX.CORES = 1)
  expect_identical(lapply(res, `[[`, "type"), list(a = "double", b = "integer", c = "logical"))
  expect_equal(vapply(res, `[[`, numeric(1), "sum"), c(a = 7, b = 6, c = 2))
  expect_true(all(vapply(res, function(r) is.null(r$attrs), logical(1))))
  e <- expect_error(memApply("df", 1, sum, NAMESPACE = ns, MAX.CORES = 1), class = "pyrmap_usage_error")
  expect_match(conditionMessage(e), "registered data.frame: MARGIN = 2", fixed = TRUE)
  ms_stop_all_clusters()
})

test_that("what a data.frame page cannot keep is refused naming the variable and the column", {
  ns <- ms_ns("frame-bad")
  before <- shm_snapshot()
  cases <- list(
    list(data.frame(a = 1, f = factor("x")), "column 'f' of data.frame 'v'.*factor"),
    list(data.frame(a = 1, s = "x"), "column 's' of data.frame 'v'"),
    list(data.frame(d = Sys.Date()), "column 'd' of data.frame 'v'.*Date"),
    list(data.frame(a = 1:2, row.names = c("p", "q")), "data.frame 'v' has row names"),
    list(data.frame(a = 1:3)[2:3, , drop = FALSE], "data.frame 'v' has row names"),
    list(data.frame(a = 1:3)[, 0], "without columns"))
  m <- data.frame(a = 1:2)
  m$m <- matrix(1:4, 2)
  cases[[length(cases) + 1L]] <- list(m, "column 'm' of data.frame 'v': a matrix column")
  for (cs in cases) {
    e <- expect_error(registerVariables(ns, list(v = cs[[1]])), class = "pyrmap_usage_error")
    expect_match(conditionMessage(e), cs[[2]])
  }
  expect_identical(shm_leftovers(before), character(0))
})

test_that("this file leaves no segment in /dev/shm", {
  expect_identical(shm_leftovers(frames_reg_shm_at_start), character(0))
})
