# Every example of the manual runs (with Python: the examples guard their
# Python parts with pyrmap_available(), which must be TRUE here, so none is
# skipped) and leaves no shared memory behind.

test_that("the tests have a Python with numpy, so no example is skipped", {
  expect_true(pyrmap_available())
})

test_that("every example in the manual runs", {
  pages_before <- pageList()
  db <- tools::Rd_db("pyrmap")
  expect_true(length(db) >= 6L)
  ran <- character()
  for (name in sort(names(db))) {
    file <- tempfile(fileext = ".R")
    tools::Rd2ex(db[[name]], file)
    if (!file.exists(file)) next
    code <- readLines(file)
    expect_false(any(grepl("dontrun", code, fixed = TRUE)), info = name)
    env <- new.env(parent = globalenv())
    err <- tryCatch({
      utils::capture.output(source(file, local = env, echo = FALSE))
      NULL
    }, error = function(e) e)
    expect_null(err, info = paste(name, if (!is.null(err)) conditionMessage(err)))
    ran <- c(ran, name)
    unlink(file)
  }
  # The topics with examples: the run functions, the pool, the shared
  # variables, memApply, and the configuration.
  expect_true(all(c("run_python.Rd", "python_pool.Rd", "shared-variables.Rd", "memApply.Rd",
                    "pyrmap_python.Rd") %in% ran), info = paste(ran, collapse = ", "))
  expect_no_segments()
  expect_identical(pageList(), pages_before)
})
