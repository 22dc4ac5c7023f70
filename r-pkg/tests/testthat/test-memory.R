# Memory that follows the program: a view is a small R object holding a
# large mapping, so R's collector alone would leave unreachable views (and
# the shared memory they pin) for a long time. pyrmap collects when the bytes
# that views map grow past a bound, and memApply's workers let go of what a
# call mapped at its end. No test here calls gc().
#
# What is measured, relative to the start of each test:
# - the bytes of pyrmap segments mapped by the process(es), from
#   /proc/PID/maps: exact for each process, and undisturbed by anything else
#   running on the machine;
# - the bytes in use in the /dev/shm file system (df), where the segments
#   live: a segment whose name is gone still counts there while any process
#   maps it. Under `make test` /dev/shm is a private tmpfs (see the
#   Makefile's test targets), so other test runs do not disturb it; without
#   one, others' segments may appear in it, so this check allows for a
#   little noise but would still see 20 copies pinned. (/proc/meminfo's
#   Shmem is not used: it counts every tmpfs of the machine, other users'
#   included.)

shm_at_start <- shm_snapshot()

# Bytes of pyrmap segments mapped by process `pid`.
mapped_segment_bytes <- function(pid = Sys.getpid()) {
  lines <- tryCatch(readLines(file.path("/proc", pid, "maps")), error = function(e) character())
  lines <- lines[grepl("/dev/shm/pyrmap-", lines, fixed = TRUE)]
  if (!length(lines)) return(0)
  range <- sub(" .*", "", lines)
  sum(hex_to_num(sub(".*-", "", range)) - hex_to_num(sub("-.*", "", range)))
}

test_that("20 run_python() calls with 160 MB results never pin more than two results", {
  # In a session of its own, whose heap holds x and little else: the bound
  # is R's heap (next test), so in this long test session, grown by the
  # tests before, more results could be left for R's collector.
  out <- rscript_lines(c(
    "library(pyrmap)",
    "mapped <- function() {",
    "  l <- readLines('/proc/self/maps')",
    "  l <- l[grepl('/dev/shm/pyrmap-', l, fixed = TRUE)]",
    "  r <- sub(' .*', '', l)",
    "  sum(as.numeric(paste0('0x', sub('.*-', '', r))) - as.numeric(paste0('0x', sub('-.*', '', r))))",
    "}",
    "x <- as.numeric(seq_len(2e7))",
    "m <- numeric(20)",
    sprintf("for (i in 1:20) { y <- run_python(x, '%s', args = 'data * 2'); m[i] <- mapped() }", py("expr.py")),
    "stopifnot(identical(y[c(1, 2e7)], c(2, 4e7)))",
    "cat(max(m), '\\n')"))
  out <- strsplit(out, "\n")[[1]]
  size <- 8 * 2e7
  most <- as.numeric(out[length(out)])
  expect_false(is.na(most))
  # The result just made and, at most, the one before it (still bound to
  # `y` while a call runs, so no collection could free it).
  expect_lt(most, 2.1 * size, label = sprintf("most segment bytes mapped after a call (%.0f MB; a result is %.0f MB)",
                                              most / 2^20, size / 2^20))
  x <- as.numeric(seq_len(2e7))
  # Results that are kept stay intact (collections free only the unreachable).
  kept <- lapply(1:3, function(k) py_eval(x[1:1e6], sprintf("data * %d", k)))
  invisible(py_eval(x, "data * 2"))
  for (k in 1:3) expect_identical(kept[[k]][c(1, 1e6)], c(k, k * 1e6))
})

test_that("a dropped result is collected before the next call takes its memory", {
  # /dev/shm holds one call's segments and a result, not two results: the
  # second call fits only if the first result (dropped with rm(), not yet
  # collected by R) is let go of before the second call's input is made.
  # The identity's result is a segment of its own (the script's input is
  # read-only): a call takes 320 MB, 480 MB with a dead result of 160 MB.
  # (Before the collection was done at the input, the second call failed
  # for want of space.)
  twice <- function(pool, shm) rscript_lines(c(
    "library(pyrmap)",
    "x <- as.numeric(seq_len(2e7))",
    sprintf("script <- '%s'", py("expr.py")),
    sprintf("p <- %s", pool),
    "for (k in 1:2) {",
    "  y <- run_python(x, script, args = 'data', pool = p)",
    "  stopifnot(identical(y[c(1, 2e7)], c(1, 2e7)))",
    "  rm(y)",
    "}",
    "cat('BOTH FIT\\n')"), shm_size = shm)
  expect_match(twice("FALSE", "400m"), "BOTH FIT", fixed = TRUE)
  expect_match(twice("python_pool()", "400m"), "BOTH FIT", fixed = TRUE)
})

test_that("the bound: R's heap (RssAnon), at least 64 MiB, at most a quarter of MemAvailable", {
  mem <- pyrmap:::.pyrmap_view_memory()
  status <- readLines("/proc/self/status")
  anon <- as.numeric(gsub("[^0-9]", "", grep("^RssAnon:", status, value = TRUE))) * 1024
  avail <- as.numeric(gsub("[^0-9]", "", grep("^MemAvailable:", readLines("/proc/meminfo"), value = TRUE))) * 1024
  expected <- min(max(64 * 2^20, anon), avail / 4)
  expect_lt(abs(mem[["bound"]] - expected), 0.1 * expected)
  # The count is per mapping: columns of one matrix view add nothing.
  ns <- ms_ns("bound")
  registerVariables(ns, list(M = matrix(as.numeric(1:1e6), 1000)))
  on.exit(releaseVariables(ns, "M"))
  before <- pyrmap:::.pyrmap_view_memory()[["mapped"]]
  v <- retrieveViews(ns, "M")$M
  on.exit(releaseViews(ns, "M"), add = TRUE, after = FALSE)
  one <- pyrmap:::.pyrmap_view_memory()[["mapped"]] - before
  expect_gte(one, 8e6)
  cols <- lapply(1:50, function(j) pyrmap:::.pyrmap_slice(v, 2L, j))
  expect_identical(pyrmap:::.pyrmap_view_memory()[["mapped"]] - before, one)
  expect_identical(cols[[50]][1], 49001)
})

test_that("20 memApply() calls over a 160 MB matrix leave nothing mapped in the workers", {
  cl <- ms_cluster(2)
  pids <- ms_worker_pids(cl)
  X <- matrix(as.numeric(seq_len(2e7)), 1e4)  # 160 MB, 2000 columns
  size <- 8 * length(X)
  y <- as.numeric(seq_len(1e4))
  f <- ms_fn(function(v, y) sum(v * y))
  fs0 <- shm_used()
  workers <- fs <- numeric(20)
  for (i in 1:20) {
    r <- memApply(X, 2, f, VARS = list(y = y), CLUSTER = cl)
    # The call's page is gone and no worker maps it any more.
    workers[i] <- sum(vapply(pids, mapped_segment_bytes, 0))
    fs[i] <- shm_used() - fs0
  }
  expect_identical(r[[2000]], sum(X[, 2000] * y))
  expect_lt(max(workers), 0.1 * size, label = sprintf("most segment bytes the workers mapped after a call (%.0f MB; X is %.0f MB)",
                                                     max(workers) / 2^20, size / 2^20))
  expect_lt(max(fs), 0.5 * size, label = sprintf("most /dev/shm bytes in use after a call (%.0f MB)", max(fs) / 2^20))
})

test_that("20 calls over a 160 MB matrix on pyrmap's own workers leave nothing mapped in them", {
  X <- matrix(as.numeric(seq_len(2e7)), 1e4)  # 160 MB, 2000 columns
  size <- 8 * length(X)
  y <- as.numeric(seq_len(1e4))
  f <- ms_fn(function(v, y) sum(v * y))
  invisible(memApply(X[, 1:2], 2, f, VARS = list(y = y), MAX.CORES = 2))
  pids <- ms_note_engine()
  fs0 <- shm_used()
  workers <- fs <- numeric(20)
  for (i in 1:20) {
    r <- memApply(X, 2, f, VARS = list(y = y), MAX.CORES = 2, FUN.VALUE = 0)
    workers[i] <- sum(vapply(pids, mapped_segment_bytes, 0))
    fs[i] <- shm_used() - fs0
  }
  expect_identical(r[2000], sum(X[, 2000] * y))
  expect_lt(max(workers), 0.1 * size, label = sprintf("most segment bytes the workers mapped after a call (%.0f MB; X is %.0f MB)",
                                                     max(workers) / 2^20, size / 2^20))
  expect_lt(max(fs), 0.5 * size, label = sprintf("most /dev/shm bytes in use after a call (%.0f MB)", max(fs) / 2^20))
  expect_identical(ms_engine_pids(), pids)
})

test_that("this file leaves no worker, page or segment behind", {
  ms_expect_clean_end(shm_at_start)
})
