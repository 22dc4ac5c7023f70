# python_pool(): warm Python workers behind run_python() and family.

pool_pids <- function(pool) {
  out <- utils::capture.output(print(pool))
  as.integer(vapply(strsplit(trimws(out[-(1:2)]), "[[:space:]]+"), `[[`, "", 2L))
}

test_that("a pool gives what a one-shot run gives, for small and large data", {
  pool <- python_pool()
  on.exit(close(pool), add = TRUE)
  for (x in list(as.numeric(1:10), matrix(as.numeric(1:6), 2), 1:5, c(TRUE, FALSE, NA)[1:2],
                 runif(3e5))) {
    expect_identical(run_python(x, py("expr.py"), args = "data * 2", pool = pool),
                     run_python(x, py("expr.py"), args = "data * 2"))
  }
  big <- run_python(runif(3e5), py("identity.py"), pool = pool)
  expect_true(is_view(big))  # beyond the worker's area: a view of its segment
  small <- run_python(runif(10), py("identity.py"), pool = pool)
  expect_false(is_view(small))  # copied out of the area, which the next call reuses
  kept <- run_python(c(1, 2, 3), py("identity.py"), pool = pool)
  run_python(c(7, 8, 9), py("identity.py"), pool = pool)
  expect_identical(kept, c(1, 2, 3))
  expect_no_segments()
})

test_that("a large result goes over the call's input, as a one-shot run's does, unless the script keeps the input", {
  dir <- local_dir()
  # The first call keeps its input; later calls return what was kept.
  keeper <- write_py(dir, "keeper.py", c(
    "global kept",
    "if 'kept' not in globals():",
    "    kept = data",
    "    return data * 2",
    "return kept + 0"), imports = c("import numpy as np"))
  pool <- python_pool()
  on.exit(close(pool), add = TRUE)
  x1 <- runif(3e5)
  expect_identical(run_python(x1, keeper, pool = pool), x1 * 2)
  # Had the first result been written over the kept input, this would be x1 * 2.
  expect_identical(run_python(runif(3e5), keeper, pool = pool), x1)
  # A result that is a view of the input is stored apart from it too.
  x <- runif(3e5)
  expect_identical(run_python(x, py("identity.py"), pool = pool), x)
  expect_identical(run_python(x, py("expr.py"), args = "data[::-1] * 1", pool = pool), rev(x))
  # Several scripts over one input each get it whole.
  res <- run_python_shared_data(x, c(py("twice.py"), py("identity.py")), pool = pool)
  expect_identical(unname(res), list(x * 2, x))
  expect_no_segments()
})

# The unnamed segments this R process holds open in /dev/shm (the workers'
# areas, and a kept input).
unnamed_segments <- function() {
  links <- Sys.readlink(list.files("/proc/self/fd", full.names = TRUE))
  sort(grep("^/dev/shm/#", links, value = TRUE))
}

test_that("a large input's segment takes the next call's input, never while anything views it", {
  dir <- local_dir()
  pool <- python_pool()
  on.exit(close(pool), add = TRUE)
  run_python(1, py("identity.py"), pool = pool)
  areas <- unnamed_segments()
  # Kept after the call, written into by the next (the same file), let go
  # of when no call comes (2 s).
  x <- runif(3e5)
  expect_identical(run_python(x, py("identity.py"), pool = pool), x)
  kept <- setdiff(unnamed_segments(), areas)
  expect_length(kept, 1L)
  y <- runif(3e5)
  expect_identical(run_python(y, py("identity.py"), pool = pool), y)
  expect_identical(setdiff(unnamed_segments(), areas), kept)
  expect_true(wait_until(function() length(setdiff(unnamed_segments(), areas)) == 0L, timeout = 30))
  # A script that keeps its input (a view of the segment) keeps it intact:
  # each call gives back the sum of the input the call before kept.
  holder <- write_py(dir, "holder.py", c(
    "global last",
    "prev = float(last.sum()) if 'last' in globals() else -1.0",
    "last = data",
    "return np.array([prev, float(data.sum())])"))
  xs <- lapply(1:4, function(i) runif(3e5))
  for (i in seq_along(xs)) {
    r <- run_python(xs[[i]], holder, pool = pool)
    expect_equal(r[[2]], sum(xs[[i]]))
    if (i > 1) expect_equal(r[[1]], sum(xs[[i - 1]]), info = paste("call", i))
  }
  # R keeping a view of the input (a column returned reshaped: a view of the
  # input block) keeps it intact too.
  a <- runif(3e5)
  m <- run_python(data.frame(a = a), py("frames.py"), fun = "ev", pool = pool,
                  args = "{'m': np.asarray(x['a']).reshape(600, 500, order='F')}")$m
  expect_true(is_view(m))
  for (i in 1:2) {
    b <- data.frame(a = runif(3e5))
    expect_identical(run_python(b, py("frames.py"), fun = "identity", pool = pool), b)
  }
  expect_identical(m, matrix(a, 600, 500))
  expect_no_segments()
})

test_that("a pool keeps an input's segment only while /dev/shm has room for two more of its size", {
  out <- rscript_lines(c(
    "library(pyrmap)",
    "segs <- function() length(grep('^/dev/shm/#', Sys.readlink(list.files('/proc/self/fd', full.names = TRUE))))",
    "pool <- python_pool()",
    sprintf("s <- %s", deparse(py("expr.py"))),
    "invisible(run_python(1, s, args = 'data.sum()', pool = pool)); areas <- segs()  # the worker's area: 2 MiB",
    "x <- runif(4 * 2^17)  # 4 MiB: 2 + 4 + 2 * 4 fit in 16 MiB",
    "cat('SMALL', all.equal(run_python(x, s, args = 'data.sum()', pool = pool), sum(x)), segs() - areas, '\\n')",
    "x <- runif(6 * 2^17)  # 6 MiB: 2 + 6 + 2 * 6 do not",
    "cat('LARGE', all.equal(run_python(x, s, args = 'data.sum()', pool = pool), sum(x)), segs() - areas, '\\n')",
    "close(pool)",
    "cat('LEFT', list.files('/dev/shm'), '\\n')"), shm_size = "16m")
  expect_match(out, "SMALL TRUE 1", fixed = TRUE)
  expect_match(out, "LARGE TRUE 0", fixed = TRUE)
  expect_match(out, "LEFT\\s*$")
})

test_that("a large pool call needs room for one copy in /dev/shm, as a one-shot run does", {
  out <- rscript_lines(c(
    "library(pyrmap)",
    "x <- runif(2 * 1024^2)  # 16 MiB: input and result together do not fit in 24 MiB",
    "pool <- python_pool()",
    sprintf("r <- run_python(x, %s, pool = pool)", deparse(py("twice.py"))),
    "cat('POOL', identical(r, x * 2), '\\n')",
    "rm(r); invisible(gc())  # (the result's memory goes with the view)",
    sprintf("e <- tryCatch(run_python(x, %s, pool = pool), error = identity)", deparse(py("identity.py"))),
    "cat('KEPT', conditionMessage(e), '\\n')",
    "close(pool)",
    "cat('LEFT', list.files('/dev/shm'), '\\n')"), shm_size = "24m")
  expect_match(out, "POOL TRUE", fixed = TRUE)
  # A result that is the input itself needs a second copy: a clear error, not a crash.
  expect_match(out, "KEPT [^\n]*no space in /dev/shm for the result")
  expect_match(out, "LEFT\\s*$")
})

test_that("the worker stays warm: one process, its module state kept, calls counted", {
  pool <- python_pool()
  on.exit(close(pool), add = TRUE)
  first <- run_python(5, py("pool_faults.py"), pool = pool)
  second <- run_python(5, py("pool_faults.py"), pool = pool)
  expect_identical(first[[1L]], second[[1L]])      # the same worker process
  expect_identical(second[[2L]], first[[2L]] + 1)  # module state kept between calls
  out <- utils::capture.output(print(pool))
  expect_match(out[1L], "<pyrmap pool: 1 worker")
  expect_match(out[3L], sprintf("^ +1 +%d +2 +1 +0$", as.integer(first[[1L]])))
})

test_that("an exception is a classed error and the worker keeps serving", {
  pool <- python_pool()
  on.exit(close(pool), add = TRUE)
  pid <- run_python(5, py("pool_faults.py"), pool = pool)[[1L]]
  cond <- expect_pyrmap_error(quiet_stderr(run_python(1, py("pool_faults.py"), pool = pool)),
                              "pyrmap_python_error", "asked to fail")
  expect_identical(cond$python_type, "ValueError")
  expect_match(cond$traceback, "pool_faults.py")
  expect_identical(run_python(5, py("pool_faults.py"), pool = pool)[[1L]], pid)
})

test_that("a worker that dies is an error for that call and is replaced", {
  pool <- python_pool()
  on.exit(close(pool), add = TRUE)
  pid <- run_python(5, py("pool_faults.py"), pool = pool)[[1L]]
  cond <- expect_pyrmap_error(quiet_stderr(run_python(2, py("pool_faults.py"), pool = pool)),
                              "pyrmap_script_error", "exited with status 3")
  expect_identical(cond$exit_status, 3L)
  expect_false(proc_alive(pid))
  pid2 <- run_python(5, py("pool_faults.py"), pool = pool)[[1L]]
  expect_false(identical(pid2, pid))
  cond <- expect_pyrmap_error(quiet_stderr(run_python(3, py("pool_faults.py"), pool = pool)),
                              "pyrmap_script_error", "SIGSEGV")
  expect_identical(cond$signal, 11L)
  expect_identical(run_python(0, py("pool_faults.py"), pool = pool), 0)
  expect_match(utils::capture.output(print(pool))[3L], " 2$")  # two restarts
})

test_that("a timeout kills and replaces the worker", {
  pool <- python_pool()
  on.exit(close(pool), add = TRUE)
  pid <- run_python(5, py("pool_faults.py"), pool = pool)[[1L]]
  expect_pyrmap_error(run_python(4, py("pool_faults.py"), pool = pool, timeout = 1),
                      "pyrmap_timeout_error", "timed out after 1 s")
  expect_false(proc_alive(pid))
  expect_identical(run_python(0, py("pool_faults.py"), pool = pool), 0)
})

test_that("Ctrl-C in R interrupts a pool call and leaves a working pool", {
  skip_on_os(c("windows", "mac", "solaris"))
  dir <- local_dir()
  pid_file <- file.path(dir, "pid")
  out_file <- file.path(dir, "out.rds")
  log <- rscript_bg(c(
    "library(pyrmap)",
    "pool <- python_pool()",
    sprintf("run_python(0, %s, pool = pool)", deparse(py("pool_faults.py"))),
    sprintf("writeLines(as.character(Sys.getpid()), %s)", deparse(pid_file)),
    sprintf("r <- tryCatch(run_python(4, %s, pool = pool), condition = function(e) e)",
            deparse(py("pool_faults.py"))),
    sprintf("after <- run_python(c(1, 2), %s, pool = pool)", deparse(py("identity.py"))),
    sprintf("saveRDS(list(class = class(r), after = after), %s)", deparse(out_file))), dir)
  expect_true(wait_until(function() file.exists(pid_file) && length(readLines(pid_file)) == 1L, 120))
  rpid <- as.integer(readLines(pid_file))
  on.exit(if (proc_alive(rpid)) tools::pskill(rpid, tools::SIGKILL), add = TRUE)
  Sys.sleep(1)  # the call is under way (its script sleeps 600 s)
  tools::pskill(rpid, tools::SIGINT)
  expect_true(wait_until(function() file.exists(out_file), 60),
              label = paste("the child reported back; its log:", paste(readLines(log), collapse = "\n")))
  out <- readRDS(out_file)
  expect_true("interrupt" %in% out$class)
  expect_identical(out$after, c(1, 2))
})

test_that("the workers die with R, even when R is killed", {
  dir <- local_dir()
  out_file <- file.path(dir, "pids")
  rscript_bg(c(
    "library(pyrmap)",
    "pool <- python_pool(workers = 2)",
    sprintf("run_python_shared_data(5, c(%s, %s), pool = pool, jobs = 2)",
            deparse(py("pool_faults.py")), deparse(py("identity.py"))),
    "info <- utils::capture.output(print(pool))",
    "worker_pids <- as.integer(vapply(strsplit(trimws(info[-(1:2)]), ' +'), `[[`, '', 2L))",
    sprintf("writeLines(as.character(c(Sys.getpid(), worker_pids)), %s)", deparse(out_file)),
    "Sys.sleep(600)"), dir)
  expect_true(wait_until(function() file.exists(out_file) && length(readLines(out_file)) == 3L, 120))
  pids <- as.integer(readLines(out_file))
  expect_true(all(vapply(pids, proc_alive, logical(1))))
  tools::pskill(pids[1L], tools::SIGKILL)
  gone <- wait_until(function() !any(vapply(pids[-1L], proc_alive, logical(1))), 30)
  for (p in pids[-1L]) if (proc_alive(p)) tools::pskill(p, tools::SIGKILL)
  expect_true(gone, label = "the workers died with R")
  expect_length(segments_of(pids[1L]), 0L)  # a pool makes no named segment at all
})

test_that("a closed or collected pool leaves no process", {
  pool <- python_pool(workers = 2)
  run_python(1, py("identity.py"), pool = pool)
  pids <- pool_pids(pool)
  expect_length(pids, 2L)
  close(pool)
  expect_true(wait_until(function() !any(vapply(pids, proc_alive, logical(1))), 20))
  expect_output(print(pool), "closed")
  expect_pyrmap_error(run_python(1, py("identity.py"), pool = pool), "pyrmap_usage_error", "closed")
  close(pool)  # again: nothing to do
  pool <- python_pool()
  run_python(1, py("identity.py"), pool = pool)
  pid <- pool_pids(pool)
  rm(pool)
  gc()
  expect_true(wait_until(function() !proc_alive(pid), 20))
})

test_that("shared data runs its scripts at once, one per worker", {
  dir <- local_dir()
  body <- c("t0 = time.time()", "time.sleep(2)", "return [t0, time.time()]")
  times <- write_py(dir, "times.py", body)
  other <- write_py(dir, "times2.py", body)
  pool <- python_pool(workers = 2)
  on.exit(close(pool), add = TRUE)
  r <- run_python_shared_data(1, c(times, other), pool = pool, jobs = 2)
  expect_named(r, c("times.py", "times2.py"))
  # The two runs overlap in time (each sleeps 2 s).
  expect_lt(r[[2L]][[1L]], r[[1L]][[2L]])
  expect_lt(r[[1L]][[1L]], r[[2L]][[2L]])
})

test_that("a pipeline runs in one worker and a scalar stage feeds the next", {
  dir <- local_dir()
  total <- write_py(dir, "sum.py", "return np.sum(data)")
  plus_one <- write_py(dir, "plus_one.py", "return data[0] + 1")
  pool <- python_pool()
  on.exit(close(pool), add = TRUE)
  expect_identical(run_python_pipeline(c(1, 2, 3), c(total, plus_one), pool = pool), 7)
  all <- run_python_pipeline(c(1, 2, 3), c(total, plus_one), keep_intermediate = TRUE, pool = pool)
  expect_identical(unname(unlist(all)), c(6, 7))
})

test_that("a script is loaded again when its file changes", {
  dir <- local_dir()
  script <- write_py(dir, "times.py", "return data * 2")
  pool <- python_pool()
  on.exit(close(pool), add = TRUE)
  expect_identical(run_python(3, script, pool = pool), 6)
  write_py(dir, "times.py", "return data * 3")
  Sys.setFileTime(script, Sys.time() + 5)
  expect_identical(run_python(3, script, pool = pool), 9)
})

test_that("options(pyrmap.pool = TRUE) makes a session pool that serves every call", {
  old <- options(pyrmap.pool = TRUE)
  on.exit({
    options(old)
    state <- pyrmap:::.state
    if (!is.null(state$pool)) close(state$pool)
    state$pool <- NULL
  }, add = TRUE)
  a <- run_python(5, py("pool_faults.py"))
  b <- run_python(5, py("pool_faults.py"))
  expect_identical(a[[1L]], b[[1L]])  # the same warm worker
  one_shot <- run_python(5, py("pool_faults.py"), pool = FALSE)
  expect_false(identical(one_shot[[1L]], a[[1L]]))
  expect_pyrmap_error(run_python(1, py("identity.py"), pool = "yes"), "pyrmap_usage_error",
                      "pool must be")
})

test_that("workers, python and pool arguments are checked", {
  expect_pyrmap_error(python_pool(0), "pyrmap_usage_error", "workers")
  expect_pyrmap_error(python_pool(1.5), "pyrmap_usage_error", "workers")
  expect_pyrmap_error(python_pool(1, extra = 1), "pyrmap_usage_error", "unused")
  pool <- python_pool()
  on.exit(close(pool), add = TRUE)
  expect_pyrmap_error(run_python(1, py("identity.py"), pool = pool, python = "/usr/bin/false"),
                      "pyrmap_usage_error", "the pool runs")
  bad <- python_pool(python = "/bin/false")
  on.exit(close(bad), add = TRUE)
  expect_pyrmap_error(run_python(1, py("identity.py"), pool = bad), "pyrmap_interpreter_error",
                      "/bin/false")
})
