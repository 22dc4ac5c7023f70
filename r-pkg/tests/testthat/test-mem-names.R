# memApply and memLapply name their results as apply() and lapply() do.

test_that("memLapply keeps the names of a list or vector", {
  l <- list(a = 1:3, b = c(2.5, 1), c = TRUE)
  expect_identical(memLapply(l, sum), lapply(l, sum))
  expect_identical(memLapply(l, length, FUN.VALUE = integer(1)), vapply(l, length, integer(1)))
  v <- c(x = 1, y = 2, z = 3)
  expect_identical(memLapply(v, function(e) e * 2), lapply(v, function(e) e * 2))
  expect_identical(memLapply(v, function(e) c(e, -e), FUN.VALUE = numeric(2)),
                   vapply(v, function(e) c(e, -e), numeric(2)))
  # Unnamed stays unnamed.
  expect_null(names(memLapply(list(1, 2), identity)))
})

test_that("memApply keeps a matrix's dimnames on MARGIN and a data.frame's column names", {
  m <- matrix(as.numeric(1:12), 3, 4, dimnames = list(c("r1", "r2", "r3"), c("A", "B", "C", "D")))
  expect_identical(names(memApply(m, 2, sum)), colnames(m))
  expect_identical(unlist(memApply(m, 2, sum)), apply(m, 2, sum))
  expect_identical(memApply(m, 1, sum, FUN.VALUE = 0), apply(m, 1, sum))
  expect_identical(memApply(m, 2, range, FUN.VALUE = numeric(2)), apply(m, 2, range))
  df <- data.frame(p = 1:3, q = c(0.5, 1.5, 2.5))
  expect_identical(memApply(df, 2, sum, FUN.VALUE = 0), vapply(df, sum, 0))
  expect_identical(names(memApply(df, 2, sum)), c("p", "q"))
  expect_null(names(memApply(matrix(1:4, 2), 2, sum)))
})

test_that("registered variables and a user's cluster keep the names too", {
  ns <- "names_test"
  registerVariables(ns, list(L = list(u = 1, w = 2)))
  on.exit(releaseVariables(ns, "L"), add = TRUE)
  expected <- lapply(list(u = 1, w = 2), function(e) e + 1)
  got <- memLapply("L", function(e) e + 1, NAMESPACE = ns)
  expect_identical(got, expected)
  cl <- parallel::makePSOCKcluster(1)
  on.exit(parallel::stopCluster(cl), add = TRUE)
  expect_identical(memLapply(list(a = 1, b = 2), sqrt, CLUSTER = cl), lapply(list(a = 1, b = 2), sqrt))
})

test_that("memLapply gives FUN every element as it is: names, strings, factors, lists, NULL", {
  l <- list(c(a = 1, b = 2), "text", factor(c("x", "y")), list(k = 1:2), NULL, 1:3,
            matrix(1:4, 2, dimnames = list(c("r", "s"), NULL)))
  expect_identical(memLapply(l, identity), lapply(l, identity))
  expect_identical(memLapply(l, function(e, k) list(e, k), VARS = list(k = 2)),
                   lapply(l, function(e, k) list(e, k), k = 2))
  expect_identical(memLapply(factor(c("u", "v")), as.character), lapply(factor(c("u", "v")), as.character))
  cl <- parallel::makePSOCKcluster(1)
  on.exit(parallel::stopCluster(cl), add = TRUE)
  expect_identical(memLapply(l, identity, CLUSTER = cl), lapply(l, identity))
  err <- expect_error(memLapply(l, function(e) if (is.character(e)) stop("no strings") else e),
                      class = "pyrmap_fun_error")
  expect_match(conditionMessage(err), "element 2: no strings")
})
