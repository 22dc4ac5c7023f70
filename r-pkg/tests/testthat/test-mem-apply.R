# memApply() and memLapply(): semantics as memshare's vignette describes
# them, on a cluster of 2 workers, and the cases where memshare breaks.

ms_shm_at_start <- shm_snapshot()
cl <- ms_cluster(2)

# Checks after a call: no view left in the workers, this session's pages as
# before, and no new segment of ours in /dev/shm.
expect_call_cleaned_up <- function(pages_before, shm_before) {
  expect_identical(parallel::clusterCall(cl, pyrmap::viewList), list(list(), list()))
  expect_identical(pageList(), pages_before)
  expect_identical(ms_leftovers(shm_before, ms_clusters$pids), character(0))
}

test_that("MARGIN = 1 and MARGIN = 2 give what base apply gives, in order", {
  set.seed(2)
  X <- matrix(rnorm(7 * 11), 7, 11)
  expect_identical(unlist(memApply(X, 1, sum, CLUSTER = cl)), apply(X, 1, sum))
  expect_identical(unlist(memApply(X, 2, sum, CLUSTER = cl)), apply(X, 2, sum))
  expect_identical(memApply(X, 1, function(v) v, CLUSTER = cl), lapply(1:7, function(i) X[i, ]))
  expect_identical(memApply(X, 2, function(v) v, CLUSTER = cl), lapply(1:11, function(j) X[, j]))
  f <- function(v) c(min = min(v), max = max(v), n = length(v))
  expect_identical(do.call(cbind, memApply(X, 1, f, CLUSTER = cl)), apply(X, 1, f))
  expect_identical(do.call(cbind, memApply(X, 2, f, CLUSTER = cl)), apply(X, 2, f))
  # Many small tasks (many chunks) still come back in order.
  Y <- matrix(as.numeric(1:(3 * 500)), 3)
  expect_identical(unlist(memApply(Y, 2, function(v) v[1], CLUSTER = cl)), Y[1, ])
  # MARGIN given as a double, and FUN given by name.
  expect_identical(unlist(memApply(X, 2.0, "max", CLUSTER = cl)), apply(X, 2, max))
})

test_that("a data.frame of numeric, integer and logical columns: MARGIN = 2 gives each column as it is", {
  pages <- pageList()
  shm <- shm_snapshot()
  df <- data.frame(x = c(1.5, 2.5, 3.5), n = 1:3, ok = c(TRUE, NA, FALSE))
  # Each column reaches FUN with its own type, without a matrix copy of the
  # frame (which would make them all double). Results are named by the
  # columns, as apply()'s are.
  res <- memApply(df, 2, function(v) list(type = typeof(v), v = v), CLUSTER = cl)
  expect_identical(names(res), names(df))
  expect_identical(lapply(res, `[[`, "type"), list(x = "double", n = "integer", ok = "logical"))
  expect_identical(lapply(res, `[[`, "v"), as.list(df))
  expect_identical(unlist(memApply(df[c("x", "n")], 2, sum, CLUSTER = cl)),
                   apply(df[c("x", "n")], 2, sum))
  # VARS as usual.
  expect_identical(memApply(df, 2, function(v, w) sum(v * w, na.rm = TRUE), VARS = list(w = c(1, 10, 100)),
                            CLUSTER = cl),
                   list(x = 376.5, n = 321, ok = 1))
  expect_identical(memApply(df[0], 2, sum, CLUSTER = cl), list())
  expect_call_cleaned_up(pages, shm)
})

test_that("a data.frame with MARGIN = 1 goes through a matrix, said once in a message", {
  df <- data.frame(x = c(1.5, 2.5), n = 1:2, row.names = c("first", "second"))
  st <- pyrmap:::.state
  st$said_frame_rows <- NULL
  expect_message(res <- memApply(df, 1, function(v) v, CLUSTER = cl), "matrix copy")
  # (FUN gets the rows without names: the shared matrix has no dimnames;
  # the results are named by the row names.)
  expect_identical(res, list(first = c(1.5, 1), second = c(2.5, 2)))
  expect_silent(res2 <- memApply(df, 1, sum, CLUSTER = cl))
  expect_identical(unlist(res2), apply(df, 1, sum))
})

test_that("double, integer, logical and raw matrices reach FUN with their storage type", {
  mats <- list(double = matrix(c(1.5, NA, 3, -Inf, 5, 6), 2),
               integer = matrix(c(1L, NA, 3L, 4L, 5L, 6L), 2),
               logical = matrix(c(TRUE, NA, FALSE, TRUE, FALSE, FALSE), 2),
               raw = matrix(as.raw(c(0, 1, 2, 253, 254, 255)), 2))
  for (type in names(mats)) {
    m <- mats[[type]]
    for (margin in 1:2) {
      got <- memApply(m, margin, function(v) list(type = typeof(v), v = v, dim = dim(v)), CLUSTER = cl)
      expect_identical(vapply(got, `[[`, "", "type"), rep(type, dim(m)[margin]), label = type)
      want <- if (margin == 1) lapply(seq_len(nrow(m)), function(i) m[i, ])
              else lapply(seq_len(ncol(m)), function(j) m[, j])
      expect_identical(lapply(got, `[[`, "v"), want, label = paste(type, margin))
      expect_null(got[[1]]$dim)
    }
  }
})

test_that("memLapply takes lists of vectors, matrices and arrays as they are", {
  L <- list(a = c(0.5, NA), b = 1:3, c = c(TRUE, NA), d = as.raw(1:4), e = matrix(1:6, 2),
            f = array(as.numeric(1:8), c(2, 2, 2)), g = numeric(0))
  got <- memLapply(L, function(el) list(type = typeof(el), dim = dim(el), el = el), CLUSTER = cl)
  expect_identical(vapply(got, `[[`, "", "type"), vapply(L, typeof, ""))
  expect_identical(lapply(got, `[[`, "el"), L)
  expect_identical(got[[5]]$dim, c(2L, 3L))
  expect_identical(got[[6]]$dim, c(2L, 2L, 2L))
  # Results are named as lapply()'s (a list in the order of X).
  expect_identical(names(got), names(L))
  # An atomic vector is taken element by element.
  expect_identical(memLapply(c(3L, 1L, 2L), function(el) el * 2L, CLUSTER = cl), list(6L, 2L, 4L))
  expect_identical(memLapply(c(TRUE, FALSE), function(el) typeof(el), CLUSTER = cl),
                   list("logical", "logical"))
  # Many elements, in order.
  big <- lapply(1:300, function(i) c(i, -i) + 0.5)
  expect_identical(memLapply(big, function(el) el[1], CLUSTER = cl), as.list(1:300 + 0.5))
})

test_that("VARS: a named list is registered for the call; FUN gets them by argument name", {
  pages <- pageList()
  shm <- shm_snapshot()
  X <- matrix(as.numeric(1:20), 4)
  got <- memApply(X, 2, function(v, a, b) sum(v * a) + b, CLUSTER = cl,
                  VARS = list(b = 100L, a = c(1, 0, 0, 1)))
  expect_identical(unlist(got), apply(X, 2, function(v) sum(v * c(1, 0, 0, 1)) + 100))
  # The side data are views in the workers, of their storage type.
  types <- memApply(X, 2, function(v, a, b) c(typeof(a), typeof(b), !is.null(pyrmap:::.pyrmap_view_info(a))),
                    CLUSTER = cl, VARS = list(a = as.raw(1:3), b = 1:2))
  expect_identical(types[[1]], c("raw", "integer", "TRUE"))
  # The first argument may have any name.
  expect_identical(memLapply(list(1, 2), function(anything, k) anything + k, CLUSTER = cl,
                             VARS = list(k = 10)), list(11, 12))
  # A VARS name that is not an argument of FUN is an error (unless FUN has ...).
  expect_error(memApply(X, 2, function(v, a) v, CLUSTER = cl, VARS = list(z = 1)),
               class = "pyrmap_usage_error")
  expect_identical(memApply(X, 2, function(v, ...) list(...)$z, CLUSTER = cl, VARS = list(z = 5)),
                   rep(list(5), 5))
  expect_error(memApply(X, 2, function(v, a) v, CLUSTER = cl, VARS = list(1)),
               class = "pyrmap_usage_error")
  expect_error(memApply(X, 2, function(v, a) v, CLUSTER = cl, VARS = list(a = "text")),
               class = "pyrmap_usage_error")
  expect_error(memApply(X, 2, function(v, a) v, CLUSTER = cl, VARS = 3),
               class = "pyrmap_usage_error")
  expect_call_cleaned_up(pages, shm)
})

test_that("X and VARS may name registered variables: then NAMESPACE is required", {
  ns <- ms_ns("byname")
  X <- matrix(as.numeric(1:12), 3)
  registerVariables(ns, list(X = X, w = c(2, 3, 4), L = list(1:2, 3:5)))
  on.exit(releaseVariables(ns, c("X", "w", "L")))
  pages <- pageList()
  shm <- shm_snapshot()
  e <- expect_error(memApply("X", 2, function(v) sum(v), CLUSTER = cl), class = "pyrmap_usage_error")
  expect_match(conditionMessage(e), "NAMESPACE")
  expect_error(memApply(X, 2, function(v, w) sum(v), VARS = "w", CLUSTER = cl),
               class = "pyrmap_usage_error")
  expect_identical(unlist(memApply("X", 2, function(v, w) sum(v * w), NAMESPACE = ns, VARS = "w",
                                   CLUSTER = cl)),
                   apply(X, 2, function(v) sum(v * c(2, 3, 4))))
  expect_identical(memLapply("L", function(el, w) sum(el) + w[1], NAMESPACE = ns, VARS = c("w"),
                             CLUSTER = cl), list(5, 14))
  # An object X with registered side data.
  expect_identical(unlist(memApply(X * 2, 1, function(v, w) sum(v) + w[3], NAMESPACE = ns, VARS = "w",
                                   CLUSTER = cl)),
                   apply(X * 2, 1, sum) + 4)
  # Names that are not registered.
  expect_error(memApply("nope", 2, sum, NAMESPACE = ns, CLUSTER = cl), class = "pyrmap_not_registered")
  expect_error(memApply("X", 2, function(v, q) v, NAMESPACE = ns, VARS = "q", CLUSTER = cl),
               class = "pyrmap_error")
  # A registered list is not a matrix.
  expect_error(memApply("L", 2, sum, NAMESPACE = ns, CLUSTER = cl), class = "pyrmap_usage_error")
  # The registered variables are still there, and nothing else is.
  expect_call_cleaned_up(pages, shm)
  expect_identical(retrieveViews(ns, "X")$X, X)
  releaseViews(ns, "X")
})

test_that("views given as X or VARS are used without a copy", {
  ns <- ms_ns("views")
  X <- matrix(rnorm(400), 20)
  registerVariables(ns, list(X = X, y = rnorm(20)))
  on.exit(releaseVariables(ns, c("X", "y")))
  seg_x <- ms_segment_of(ns, "X")
  seg_y <- ms_segment_of(ns, "y")
  vw <- retrieveViews(ns, c("X", "y"))
  on.exit(releaseViews(ns, c("X", "y")), add = TRUE, after = FALSE)
  got <- memApply(vw$X, 2, function(v, y) {
    list(cor = cor(v, y), v = pyrmap:::.pyrmap_view_info(v)$segment,
         y = pyrmap:::.pyrmap_view_info(y)$segment)
  }, VARS = list(y = vw$y), CLUSTER = cl)
  expect_equal(vapply(got, `[[`, 0, "cor"), apply(X, 2, function(v) cor(v, vw$y)))
  expect_identical(unique(vapply(got, `[[`, "", "v")), seg_x)
  expect_identical(unique(vapply(got, `[[`, "", "y")), seg_y)
})

test_that("views are released in the workers and the call's variables in this session", {
  pages <- pageList()
  shm <- shm_snapshot()
  X <- matrix(runif(3000), 30)
  res <- memApply(X, 2, function(v, y) sum(v) + y, VARS = list(y = 1), CLUSTER = cl)
  expect_length(res, 100L)
  expect_call_cleaned_up(pages, shm)
  res <- memLapply(list(1:3, 4:6), function(el, y) sum(el) + y, VARS = list(y = 1L), CLUSTER = cl)
  expect_identical(res, list(7L, 16L))
  expect_call_cleaned_up(pages, shm)
  # Also when the data are registered under NAMESPACE by name: the views go,
  # the variables stay.
  ns <- ms_ns("keep")
  registerVariables(ns, list(X = X))
  on.exit(releaseVariables(ns, "X"))
  pages <- pageList()
  shm <- shm_snapshot()
  invisible(memApply("X", 1, sum, NAMESPACE = ns, CLUSTER = cl))
  expect_call_cleaned_up(pages, shm)
  expect_true(paste0(ns, ".X") %in% unlist(pageList()))
})

test_that("character, factor, data.frame and other unsupported X are a pyrmap_usage_error", {
  pages <- pageList()
  shm <- shm_snapshot()
  bad_matrix <- list(matrix(letters[1:4], 2), data.frame(a = 1:2, b = c("x", "y")), factor(c("a", "b")),
                     1:10, list(1, 2), matrix(list(1, 2, 3, 4), 2), matrix(complex(4), 2))
  for (x in bad_matrix) expect_error(memApply(x, 2, identity, CLUSTER = cl), class = "pyrmap_usage_error")
  # A data.frame of numeric columns goes column by column (as lapply does).
  expect_identical(memLapply(data.frame(a = 1:2, b = c(1.5, 2)), sum, CLUSTER = cl), list(a = 3L, b = 3.5))
  # Any list or vector goes element by element, as lapply() takes it.
  as_lapply <- list(data.frame(a = 1:2, s = c("x", "y")), factor(c("a", "b")), c("a", "b"), list(1, "a"),
                    list(factor("a")), list(list(1)), NULL)
  for (x in as_lapply) expect_identical(memLapply(x, identity, CLUSTER = cl), lapply(x, identity))
  for (x in list(mean, new.env(), quote(a)))
    expect_error(memLapply(x, identity, CLUSTER = cl), class = "pyrmap_usage_error")
  # A data.frame with a column that cannot be shared: the error names it.
  e <- expect_error(memApply(data.frame(a = 1:2, f = factor(c("u", "v")), s = c("x", "y")), 2, identity,
                             CLUSTER = cl), class = "pyrmap_usage_error")
  expect_match(conditionMessage(e), "column 2 ('f')", fixed = TRUE)
  expect_match(conditionMessage(e), "factor")
  # MARGIN, FUN and CLUSTER.
  m <- matrix(1:4, 2)
  for (margin in list(0, 3, c(1, 2), "1", NA)) {
    expect_error(memApply(m, margin, sum, CLUSTER = cl), class = "pyrmap_usage_error")
  }
  expect_error(memApply(m, 2, "no_such_function_anywhere", CLUSTER = cl))
  expect_error(memApply(m, 2, sum, CLUSTER = "cluster"), class = "pyrmap_usage_error")
  expect_error(memApply(m, 2, sum, NAMESPACE = 1, CLUSTER = cl), class = "pyrmap_usage_error")
  expect_call_cleaned_up(pages, shm)
})

test_that("an error in FUN is an R error naming the row, column or element, with the original message", {
  pages <- pageList()
  shm <- shm_snapshot()
  X <- matrix(as.numeric(1:40), 4)
  f <- function(v) if (v[1] == 25) stop("no 25 please") else sum(v)
  e <- expect_error(memApply(X, 2, f, CLUSTER = cl), class = "pyrmap_fun_error")
  expect_s3_class(e, "pyrmap_error")
  expect_identical(e$index, 7L)
  expect_identical(e$parent_message, "no 25 please")
  expect_true("simpleError" %in% e$parent_class)
  expect_match(conditionMessage(e), "memApply: FUN failed on column 7: no 25 please", fixed = TRUE)
  g <- function(v) if (v[10] == 39) stop("row trouble") else 0
  e <- expect_error(memApply(X, 1, g, CLUSTER = cl), class = "pyrmap_fun_error")
  expect_identical(e$index, 3L)
  expect_match(conditionMessage(e), "row 3: row trouble", fixed = TRUE)
  h <- function(el) if (identical(el, 5L)) stop(structure(class = c("my_error", "error", "condition"),
                                                         list(message = "custom", call = NULL))) else el
  e <- expect_error(memLapply(1:9, h, CLUSTER = cl), class = "pyrmap_fun_error")
  expect_identical(e$index, 5L)
  expect_true("my_error" %in% e$parent_class)
  expect_match(conditionMessage(e), "memLapply: FUN failed on element 5: custom", fixed = TRUE)
  # An error that only the worker sees (a missing package).
  e <- expect_error(memLapply(1:3, function(el) noSuchPkgHere::f(el), CLUSTER = cl),
                    class = "pyrmap_fun_error")
  expect_match(conditionMessage(e), "noSuchPkgHere")
  # Nothing is left behind, and the cluster works on.
  expect_call_cleaned_up(pages, shm)
  expect_identical(unlist(memApply(X, 2, sum, CLUSTER = cl)), colSums(X))
})

test_that("of several failing elements, the first in order is reported", {
  X <- matrix(rep(as.numeric(1:8), each = 2), 2)  # column j holds j
  # Column 7 fails at once; column 3, already running, fails later.
  f <- ms_fn(function(v) {
    if (v[1] == 3) { Sys.sleep(0.5); stop("three") }
    if (v[1] == 7) stop("seven")
    v[1]
  })
  e <- expect_error(memApply(X, 2, f, CLUSTER = cl), class = "pyrmap_fun_error")
  expect_identical(e$index, 3L)
  expect_identical(e$parent_message, "three")
})

test_that("a FUN whose environment holds big data is warned about (it is copied to every worker)", {
  run <- function() {
    big <- runif(9e6)  # 72 MB in FUN's enclosing environment
    memApply(matrix(as.numeric(1:4), 2), 2, function(v) sum(v) + 0 * length(big), CLUSTER = cl)
  }
  expect_warning(res <- run(), "copied to every worker; pass big objects in VARS")
  expect_identical(unlist(res), c(3, 7))
  expect_silent(memApply(matrix(as.numeric(1:4), 2), 2, ms_fn(function(v) sum(v)), CLUSTER = cl))
})

test_that("zero-length data: empty lists, zero-row and zero-column matrices", {
  pages <- pageList()
  shm <- shm_snapshot()
  expect_identical(memApply(matrix(numeric(0), 5, 0), 2, function(v) stop("never"), CLUSTER = cl), list())
  expect_identical(memApply(matrix(numeric(0), 0, 5), 1, function(v) stop("never"), CLUSTER = cl), list())
  expect_identical(memApply(matrix(numeric(0), 0, 0), 2, function(v) stop("never"), CLUSTER = cl), list())
  expect_identical(memApply(matrix(numeric(0), 0, 3), 2, function(v) v, CLUSTER = cl),
                   rep(list(numeric(0)), 3))
  expect_identical(memApply(matrix(integer(0), 2, 0), 1, function(v) v, CLUSTER = cl),
                   rep(list(integer(0)), 2))
  expect_identical(memApply(matrix(raw(0), 0, 2), 2, function(v) typeof(v), CLUSTER = cl),
                   list("raw", "raw"))
  expect_identical(memLapply(list(), function(el) stop("never"), CLUSTER = cl), list())
  expect_identical(memLapply(integer(0), function(el) stop("never"), CLUSTER = cl), list())
  expect_identical(memLapply(list(numeric(0), 1:2, logical(0)), function(el) el, CLUSTER = cl),
                   list(numeric(0), 1:2, logical(0)))
  expect_identical(memApply(matrix(1:4, 2), 2, function(v, e) length(e), VARS = list(e = numeric(0)),
                            CLUSTER = cl), list(0L, 0L))
  expect_call_cleaned_up(pages, shm)
})

test_that("FUN changing its arguments changes nothing for later tasks or calls", {
  X <- matrix(as.numeric(1:30), 3)
  f <- function(v, y) {
    v[1] <- -1000
    y[1] <- -1000
    sum(v) + sum(y)
  }
  want <- apply(X, 2, function(v) sum(v[-1]) - 1000 + 1 - 1000)
  expect_identical(unlist(memApply(X, 2, f, VARS = list(y = c(7, 1)), CLUSTER = cl)), want)
  ns <- ms_ns("mutate")
  registerVariables(ns, list(X = X, y = c(7, 1)))
  on.exit(releaseVariables(ns, c("X", "y")))
  for (k in 1:2)
    expect_identical(unlist(memApply("X", 2, f, NAMESPACE = ns, VARS = "y", CLUSTER = cl)), want)
  expect_identical(retrieveViews(ns, "X")$X, X)
  releaseViews(ns, "X")
  # A NULL result keeps its place.
  expect_identical(memLapply(1:4, function(el) if (el %% 2 == 0) NULL else el, CLUSTER = cl),
                   list(1L, NULL, 3L, NULL))
})

test_that("a worker that dies is a pyrmap error, and the surviving workers give right answers after", {
  dcl <- ms_cluster(2)
  pids <- ms_worker_pids(dcl)
  pages <- pageList()
  killer <- function(el) {
    if (el == 3) tools::pskill(Sys.getpid(), tools::SIGKILL)
    Sys.sleep(0.05)
    el
  }
  e <- expect_error(memLapply(1:10, killer, CLUSTER = dcl), class = "pyrmap_system_error")
  expect_s3_class(e, "pyrmap_error")
  expect_match(conditionMessage(e), "lost a worker")
  expect_identical(pageList(), pages)
  expect_true(wait_until(function() sum(vapply(pids, proc_alive, logical(1))) == 1L))
  alive <- which(vapply(pids, proc_alive, logical(1)))
  # The survivor has no reply of the failed call left in its socket...
  expect_identical(memLapply(1:6, function(el) el * 10L, CLUSTER = dcl[alive]),
                   as.list(1:6 * 10L))
  expect_identical(parallel::clusterCall(dcl[alive], function() 7), list(7))
  expect_identical(parallel::clusterCall(dcl[alive], pyrmap::viewList), list(list()))
  # ...and the whole cluster is a clear error now, not a hang.
  expect_error(memLapply(1:6, function(el) el, CLUSTER = dcl), class = "pyrmap_system_error")
  expect_identical(memLapply(1:3, function(el) el, CLUSTER = dcl[alive]), list(1L, 2L, 3L))
  expect_identical(pageList(), pages)
  ms_stop_cluster(dcl)
})

test_that("an engine worker that dies is an error naming the element, and it alone is started again", {
  invisible(memLapply(1:2, function(el) el, MAX.CORES = 2))
  pids <- ms_note_engine()
  shm <- shm_snapshot()
  e <- expect_error(memLapply(1:10, function(el) {
    if (el == 3) tools::pskill(Sys.getpid(), tools::SIGKILL)
    Sys.sleep(0.05)
    el
  }, MAX.CORES = 2), class = "pyrmap_system_error")
  expect_s3_class(e, "pyrmap_error")
  expect_match(conditionMessage(e), "lost a worker")
  expect_match(conditionMessage(e), "killed by signal 9")
  expect_match(conditionMessage(e), "while running FUN on element 3", fixed = TRUE)
  expect_identical(memLapply(1:4, function(el) el, MAX.CORES = 2), list(1L, 2L, 3L, 4L))
  new_pids <- ms_note_engine()
  expect_length(new_pids, 2L)
  expect_true(all(new_pids > 0))
  # The dead worker was replaced; the other one kept serving.
  expect_length(setdiff(new_pids, pids), 1L)
  expect_length(intersect(new_pids, pids), 1L)
  expect_identical(ms_leftovers(shm, pids), character(0))
})

test_that("the end of the file leaves no worker and no segment", {
  ms_expect_clean_end(ms_shm_at_start)
})
