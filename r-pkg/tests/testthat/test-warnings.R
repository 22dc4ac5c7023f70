# Python warnings reach R as R warnings (class pyrmap_python_warning).

test_that("a script's warning is an R warning naming the script", {
  w <- expect_warning(y <- run_python(c(1, 2), py("warn.py")), class = "pyrmap_python_warning")
  expect_identical(y, c(1, 2))
  expect_match(conditionMessage(w), "script '.*warn.py': UserWarning: careful with 0 \\(warn.py:[0-9]+\\)")
  expect_identical(w$call[[1L]], as.name("run_python"))
  expect_silent(suppressWarnings(run_python(c(1, 2), py("warn.py"))))
})

test_that("every warning is kept, in order; too many are counted, not lost silently", {
  ws <- list()
  withCallingHandlers(run_python(1, py("warn.py"), args = "3"),
                      pyrmap_python_warning = function(w) {
                        ws[[length(ws) + 1L]] <<- conditionMessage(w)
                        invokeRestart("muffleWarning")
                      })
  expect_length(ws, 3L)
  expect_true(all(mapply(grepl, sprintf("careful with %d", 0:2), unlist(ws))))
  many <- character()
  withCallingHandlers(run_python(1, py("warn.py"), args = "5000"),
                      pyrmap_python_warning = function(w) {
                        many <<- c(many, conditionMessage(w))
                        invokeRestart("muffleWarning")
                      })
  expect_gt(length(many), 100L)
  expect_match(many[length(many)], "[0-9]+ more warnings not shown")
})

test_that("warnings before an error come too, and the error stays an error", {
  expect_warning(expect_pyrmap_error(run_python(-1, py("warn.py")), "pyrmap_python_error", "negative"),
                 class = "pyrmap_python_warning")
})

test_that("warnings from a pool's worker are R warnings too", {
  pool <- python_pool()
  on.exit(close(pool), add = TRUE)
  expect_warning(run_python(1, py("warn.py"), pool = pool), "careful with 0",
                 class = "pyrmap_python_warning")
  expect_warning(expect_pyrmap_error(run_python(-1, py("warn.py"), pool = pool),
                                     "pyrmap_python_error", "negative"),
                 class = "pyrmap_python_warning")
  # and a call without warnings gives none (the worker's list starts empty)
  expect_silent(run_python(1, py("identity.py"), pool = pool))
})
