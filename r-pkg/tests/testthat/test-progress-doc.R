# ?memApply's recipe for a progress bar in a script works: in Rscript
# (not interactive) progressr is off until options(progressr.enable = TRUE),
# and with a global handler the bar is drawn on stderr up to 100%.

test_that("the documented recipe shows memApply's progress in a script", {
  skip_if_not_installed("progressr")
  out <- ms_rscript(c(
    "library(pyrmap)",
    "options(progressr.enable = TRUE)",
    "progressr::handlers(global = TRUE)",
    "progressr::handlers('txtprogressbar')",
    "X <- matrix(as.double(1:400), 20)",
    "res <- memApply(X, 2, function(v) { Sys.sleep(0.01); sum(v) }, MAX.CORES = 1)",
    "cat('sums', identical(unlist(res), colSums(X)), '\\n')"))
  text <- paste(out, collapse = "\n")
  expect_match(text, "sums TRUE", fixed = TRUE)
  expect_match(text, "100%", fixed = TRUE)
  expect_match(text, "|=", fixed = TRUE)
  # Without the option, a script shows nothing (what the section warns of).
  quiet <- ms_rscript(c(
    "library(pyrmap)",
    "progressr::handlers(global = TRUE)",
    "res <- memApply(matrix(as.double(1:400), 20), 2, sum, MAX.CORES = 1)",
    "cat('done\\n')"))
  expect_identical(quiet, "done")
})

test_that("?memApply documents the recipe", {
  rd <- tools::Rd_db("pyrmap")[["memApply.Rd"]]
  text <- paste(capture.output(tools::Rd2txt(rd, options = list(underline_titles = FALSE))),
                collapse = "\n")
  for (needle in c("options(progressr.enable = TRUE)", "progressr::handlers(global = TRUE)",
                   "progressr::handlers(\"txtprogressbar\")", "progressr::with_progress("))
    expect_true(grepl(needle, text, fixed = TRUE), info = needle)
})
