# The seed's (PyRMap's) example R scripts, run as its users run them: only
# the library line and the Python import line changed (tests/testthat/seed).
# What they compute is checked against R itself, or, for the scikit-learn
# model, against the same Python function called directly.

seed_dir <- function() normalizePath(testthat::test_path("seed"))

# Sources a seed script in its own directory (its paths are relative) and
# returns the variables it made; its printing is captured.
run_seed <- function(file) {
  env <- new.env(parent = globalenv())
  utils::capture.output(source(file.path(seed_dir(), file), local = env, chdir = TRUE))
  env
}

has_sklearn <- function() {
  suppressWarnings(system2(real_python(), c("-c", shQuote("import sklearn")),
                           stdout = FALSE, stderr = FALSE)) == 0L
}

test_that("example 1: the sum of four numbers sent as uint8", {
  env <- run_seed("test_sum.R")
  expect_identical(env$result, sum(env$input_data))
  expect_no_segments()
})

test_that("example 2: a number plus one, sent as int64", {
  env <- run_seed("test_num_plus_one.R")
  expect_identical(env$result, env$input_data + 1)
})

test_that("example 3: two scripts over one shared input, the seed's argument names", {
  env <- run_seed("test_multiple_calls_one_data_file.R")
  expect_length(env$results, 2L)
  expect_equal(unname(unlist(env$results)), c(sum(env$input_data), prod(env$input_data)))
})

test_that("example 7: a pipeline with intermediate results, the seed's argument names", {
  env <- run_seed("test_pipeline.R")
  expect_length(env$result, 3L)
  total <- sum(env$input_data)
  expect_equal(unname(unlist(env$result)), c(total, total + 1, total + 2))
})

test_that("the seed's path = \"RAM\" / \"DISK\" argument", {
  env <- run_seed("test_path_disk.R")
  total <- sum(env$input_data)
  expect_identical(env$result, as.numeric(total))
  expect_equal(unname(unlist(env$results)), c(total, 2))
  expect_equal(unname(unlist(env$pipeline)), c(total, total + 1))
  expect_no_segments()
})

test_that("example 5: scikit-learn's StandardScaler", {
  skip_if_not(has_sklearn(), "scikit-learn is not installed for the interpreter (python3-sklearn)")
  env <- run_seed("test_sklearn_script.R")
  x <- env$input_data
  expect_equal(env$result, (x - mean(x)) / sqrt(mean((x - mean(x))^2)))
})

test_that("example 6: a scikit-learn model trained and applied", {
  skip_if_not(has_sklearn(), "scikit-learn is not installed for the interpreter (python3-sklearn)")
  env <- run_seed("test_sklearn_complex.R")
  # The same function, called directly in Python with the same numbers.
  code <- sprintf(paste0("import sys; sys.path.insert(0, %s); import numpy as np; ",
                         "import sklearn_complex as m; ",
                         "print(' '.join(map(str, m.train_model_mmap(np.array([%s])))))"),
                  deparse(seed_dir()), paste(env$input_data, collapse = ", "))
  direct <- system2(real_python(), c("-c", shQuote(code)), stdout = TRUE,
                    env = sprintf("PYTHONPATH=%s", pyrmap:::.python_package_dir()))
  expect_identical(env$result, as.integer(strsplit(direct, " ")[[1L]]))
  expect_true(is.integer(env$result))
})
