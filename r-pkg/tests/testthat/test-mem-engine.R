# The parallel engine: results written in place (FUN.VALUE), lists packed
# into one segment and read by index, pyrmap's own workers (balance, a job
# that cannot start, FUN's own state, forks), and what a call leaves in
# /dev/shm. The default engine and a user's cluster alike, where both apply.

ms_shm_at_start <- shm_snapshot()
cl <- ms_cluster(2)
uid <- my_uid()

# The names in /dev/shm of this session's call segments.
call_segments <- function(pid = Sys.getpid()) grep(sprintf("^pyrmap-%s-%d-", uid, pid), shm_snapshot(), value = TRUE)

test_that("FUN.VALUE: results are written in place and come back as vapply() gives them", {
  set.seed(4)
  X <- matrix(rnorm(6 * 9), 6)
  for (where in list(NULL, cl)) {
    got <- memApply(X, 2, sum, FUN.VALUE = 0, CLUSTER = where)
    expect_identical(got, vapply(seq_len(ncol(X)), function(j) sum(X[, j]), 0))
    f <- function(v) c(lo = min(v), hi = max(v))
    got <- memApply(X, 1, f, FUN.VALUE = c(lo = 0, hi = 0), CLUSTER = where)
    expect_identical(got, vapply(seq_len(nrow(X)), function(i) f(X[i, ]), c(lo = 0, hi = 0)))
    expect_identical(dim(got), c(2L, 6L))
    expect_identical(rownames(got), c("lo", "hi"))
    expect_identical(memLapply(1:5, function(el) el * 2L, FUN.VALUE = integer(1), CLUSTER = where), 1:5 * 2L)
    expect_identical(memLapply(list(TRUE, NA), function(el) !el, FUN.VALUE = logical(1), CLUSTER = where),
                     c(FALSE, NA))
    expect_identical(memLapply(as.raw(1:3), function(el) el, FUN.VALUE = raw(1), CLUSTER = where), as.raw(1:3))
    # Integer and logical results fill a double template exactly (NA too), as in vapply().
    expect_identical(memLapply(list(1L, NA, TRUE), function(el) el, FUN.VALUE = 0, CLUSTER = where),
                     vapply(list(1L, NA, TRUE), function(el) el, 0))
    # A matrix template: the result has its dims and one more.
    got <- memLapply(1:3, function(el) matrix(el * 1:4, 2), FUN.VALUE = matrix(0L, 2, 2), CLUSTER = where)
    expect_identical(got, vapply(1:3, function(el) matrix(el * 1:4, 2), matrix(0L, 2, 2)))
    # No tasks.
    expect_identical(memLapply(list(), function(el) 1, FUN.VALUE = 0, CLUSTER = where), numeric(0))
    expect_identical(memLapply(list(), function(el) c(1, 2), FUN.VALUE = c(0, 0), CLUSTER = where),
                     vapply(list(), function(el) c(1, 2), c(0, 0)))
    expect_identical(memLapply(1:3, function(el) numeric(0), FUN.VALUE = numeric(0), CLUSTER = where),
                     vapply(1:3, function(el) numeric(0), numeric(0)))
  }
})

test_that("FUN.VALUE: a result of another type or length is an error naming the element", {
  shm <- shm_snapshot()
  for (where in list(NULL, cl)) {
    e <- expect_error(memLapply(1:6, function(el) if (el == 4) "four" else el + 0.5, FUN.VALUE = 0, CLUSTER = where),
                      class = "pyrmap_fun_error")
    expect_identical(e$index, 4L)
    expect_match(e$parent_message, "values must be type 'double', but FUN's result is type 'character'", fixed = TRUE)
    expect_true("pyrmap_value_error" %in% e$parent_class)
    expect_match(conditionMessage(e), "memLapply: FUN failed on element 4", fixed = TRUE)
    e <- expect_error(memApply(matrix(1:6, 2), 2, function(v) if (v[1] == 3) v else sum(v), FUN.VALUE = 0L,
                               CLUSTER = where), class = "pyrmap_fun_error")
    expect_identical(e$index, 2L)
    expect_match(e$parent_message, "values must be length 1, but FUN's result is length 2", fixed = TRUE)
    # A double result does not fit an integer template (no silent truncation).
    e <- expect_error(memLapply(1:3, function(el) el / 2, FUN.VALUE = integer(1), CLUSTER = where),
                      class = "pyrmap_fun_error")
    expect_identical(e$index, 1L)
  }
  # Templates that cannot be written in place.
  for (bad in list("a", list(1), factor("a"), NA_complex_, Sys.Date()))
    expect_error(memLapply(1:2, function(el) el, FUN.VALUE = bad), class = "pyrmap_usage_error")
  expect_identical(ms_leftovers(shm, ms_clusters$pids), character(0))
})

test_that("large FUN.VALUE results come back as one view of shared memory, whose name is gone", {
  shm <- shm_snapshot()
  n <- 3e5  # 2.4 MB of results
  for (where in list(NULL, cl)) {
    got <- memLapply(seq_len(n), function(el) el * 0.5, FUN.VALUE = 0, CLUSTER = where)
    info <- view_info(got)
    expect_false(is.null(info))
    expect_identical(info$segment, "")  # its name is removed: nothing to clean up
    expect_identical(length(got), as.integer(n))
    expect_identical(got[c(1, n)], c(0.5, n / 2))
    gc()
    expect_identical(sum(got), sum(seq_len(n)) / 2)
    # Small results are ordinary vectors.
    expect_null(view_info(memLapply(1:10, function(el) el * 0.5, FUN.VALUE = 0, CLUSTER = where)))
  }
  expect_identical(call_segments(), character(0))
  expect_identical(ms_leftovers(shm, ms_clusters$pids), character(0))
})

test_that("a list of many small elements is one segment, read by index: small elements copied, large ones views", {
  set.seed(5)
  L <- lapply(1:20000, function(i) switch(i %% 4 + 1, i + 0.5, i, i %% 3 == 0, matrix(c(i, -i), 1)))
  L[[7]] <- runif(3000)  # 24 kB: a view
  for (where in list(NULL, cl)) {
    got <- memLapply(L, function(el) el, CLUSTER = where)
    expect_identical(got, L)
    # While the call runs, this session has one segment of its own in
    # /dev/shm: the call's (not one page per element).
    segs <- memLapply(L[1:50], function(el, pid) {
      grep(sprintf("^pyrmap-[0-9]+-%d-", pid), list.files("/dev/shm"), value = TRUE)
    }, VARS = list(pid = Sys.getpid()), CLUSTER = where)
    names_seen <- unique(unlist(segs))
    expect_identical(length(names_seen), if (is.null(where)) 1L else 3L)  # with a cluster: + 2 result files
    expect_true(any(grepl("-call$", names_seen)))
    kinds <- memLapply(L[c(1, 7)], function(el) !is.null(pyrmap:::.pyrmap_view_info(el)), CLUSTER = where)
    expect_identical(kinds, list(FALSE, TRUE))
  }
  expect_identical(call_segments(), character(0))
})

test_that("small calls go through the engine's call area: nothing kept by FUN changes with the next call", {
  # A small call without side data is written into one area the workers keep
  # mapped, rewritten by the next call; its elements are therefore copies,
  # even of 16 KiB and more. An element kept by FUN (here in the worker's
  # global environment) keeps its values when the next call rewrites the
  # area (as a view of the area it would show the next call's data).
  keep <- function(el) {
    assign("kept", el, envir = globalenv())
    is.null(pyrmap:::.pyrmap_view_info(el))
  }
  environment(keep) <- globalenv()  # sent by reference: a small job
  a <- list(rep(1, 3000))          # 24 kB
  b <- list(rep(2, 3000))
  expect_identical(memLapply(a, keep, MAX.CORES = 1), list(TRUE))  # a copy, not a view
  expect_identical(memLapply(b, function(el) sum(el), MAX.CORES = 1), list(6000))
  got <- memLapply(list(0), function(el) get("kept", envir = globalenv()), MAX.CORES = 1)
  expect_identical(got, a)
  # Many calls back to back, on both workers, with and without side data
  # (which takes a segment of its own) and FUN.VALUE: each sees its own data.
  for (k in 1:150) {
    x <- as.list(k * as.numeric(1:30))
    f <- function(el) el + 0.5
    if (k %% 3 == 0) {
      got <- memLapply(x, function(el, w) el * w, VARS = list(w = k), MAX.CORES = 2)
      expect_identical(got, lapply(x, function(el) el * k))
    } else if (k %% 3 == 1) {
      expect_identical(memLapply(x, f, MAX.CORES = 2, FUN.VALUE = 0), unlist(x) + 0.5)
    } else {
      expect_identical(memApply(matrix(unlist(x), 5), 2, sum, MAX.CORES = 2), as.list(colSums(matrix(unlist(x), 5))))
    }
  }
})

test_that("a FUN with an environment of its own starts afresh in every call", {
  counter <- local({
    n <- 0
    function(el) {
      n <<- n + 1
      n
    }
  })
  first <- unlist(memLapply(1:3, counter, MAX.CORES = 1))
  second <- unlist(memLapply(1:3, counter, MAX.CORES = 1))
  expect_identical(first, c(1, 2, 3))
  expect_identical(second, first)
  # Calls repeated with the same FUN and new data use the new data.
  f <- function(v, w) sum(v * w)
  for (k in 1:5) {
    X <- matrix(as.numeric(k * (1:6)), 2)
    expect_identical(memApply(X, 2, f, VARS = list(w = c(1, k)), MAX.CORES = 2), as.list(colSums(X * c(1, k))))
  }
})

test_that("the engine balances uneven tasks: of 4 slow tasks, each of 2 workers runs 2", {
  X <- matrix(as.numeric(1:20), 1)
  invisible(memApply(X, 2, function(v) v, MAX.CORES = 2))
  pids <- ms_note_engine()
  f <- function(v) {
    if (v <= 4) Sys.sleep(0.5)
    Sys.getpid()
  }
  r <- memApply(X, 2, f, MAX.CORES = 2)
  expect_setequal(unique(unlist(r)), pids)
  expect_identical(sort(as.vector(table(unlist(r[1:4])))), c(2L, 2L))
  g <- function(v) {
    if (v >= 17) Sys.sleep(0.5)
    c(v, Sys.getpid())
  }
  r <- memApply(X, 2, g, MAX.CORES = 2)
  expect_identical(vapply(r, `[[`, 0, 1), as.numeric(1:20))
  expect_identical(sort(as.vector(table(vapply(r[17:20], `[[`, 0, 2)))), c(2L, 2L))
})

test_that("a job a worker cannot start is an error saying why, and leaves nothing behind", {
  # Side data the workers cannot map: a registered variable whose page is
  # damaged after the master checked it (the tag of its array, which only
  # mapping it reads, names no R type).
  ns <- ms_ns("broken")
  registerVariables(ns, list(w = c(1, 2, 3)))
  on.exit(releaseVariables(ns, "w"))
  con <- file(file.path("/dev/shm", ms_segment_of(ns, "w")), "r+b")
  seek(con, 4096 + 12, rw = "write")
  writeBin(77L, con, size = 4L)
  close(con)
  shm <- shm_snapshot()
  pages <- pageList()
  for (where in list(NULL, cl)) {
    e <- expect_error(memLapply(1:4, function(el, w) el + w[1], NAMESPACE = ns, VARS = "w", CLUSTER = where,
                                MAX.CORES = 2), class = "pyrmap_system_error")
    expect_match(conditionMessage(e), "could not start the call")
    expect_match(conditionMessage(e), "tag 77 is not an R type")
    # The workers serve on.
    expect_identical(memLapply(1:2, function(el) el, CLUSTER = where, MAX.CORES = 2), list(1L, 2L))
  }
  expect_identical(pageList(), pages)
  expect_identical(ms_leftovers(shm, ms_clusters$pids), character(0))
})

test_that("progress is signalled through progressr with the engine too", {
  skip_if_not_installed("progressr")
  rec <- new.env()
  recorder <- function(...) {
    progressr::make_progression_handler("ms_recorder", reporter = list(
      initiate = function(config, state, progression, ...) rec$max <- config$max_steps,
      update = function(config, state, progression, ...) rec$steps <- c(rec$steps, state$step),
      finish = function(config, state, progression, ...) rec$final <- state$step
    ), enable = TRUE, ...)
  }
  rec$steps <- numeric()
  progressr::with_progress(res <- memLapply(1:30, function(el) { Sys.sleep(0.02); el }, MAX.CORES = 2),
                           handlers = recorder, enable = TRUE)
  expect_identical(res, as.list(1:30))
  expect_equal(rec$max, 30)
  expect_equal(rec$final, 30)
  expect_false(is.unsorted(rec$steps))
})

test_that("a forked child makes its own engine and leaves this session's alone", {
  skip_on_os(c("windows", "mac", "solaris"))
  invisible(memLapply(1:2, function(el) el, MAX.CORES = 2))
  pids <- ms_note_engine()
  r <- parallel::mclapply(1:2, function(i) {
    list(value = unlist(memLapply(1:3, function(el) el * i, MAX.CORES = 1)), engine = pyrmap:::.engine_info()$pids)
  }, mc.cores = 2)
  expect_identical(lapply(r, `[[`, "value"), list(1:3, 1:3 * 2L))
  child_workers <- unlist(lapply(r, `[[`, "engine"))
  expect_length(child_workers, 2L)
  expect_length(intersect(child_workers, pids), 0L)
  # The children's workers ended with them; this session's serve on.
  expect_true(wait_until(function() !any(vapply(child_workers, proc_alive, logical(1))), timeout = 15))
  expect_identical(ms_engine_pids(), pids)
  expect_identical(memLapply(1:3, function(el) el + 1L, MAX.CORES = 2), list(2L, 3L, 4L))
})

test_that("the end of the file leaves no worker and no segment", {
  ms_expect_clean_end(ms_shm_at_start)
})
