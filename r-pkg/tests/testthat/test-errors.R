# Failures are classed R conditions, and none leaves a segment behind.

shm_at_start <- shm_snapshot()

test_that("a Python exception is a pyrmap_python_error with the exception and traceback", {
  err <- expect_pyrmap_error(run_python(1:3, py("raise.py")), "pyrmap_python_error",
                             "ValueError: input of length 3 rejected by check_input")
  msg <- conditionMessage(err)
  # The end of the traceback: the frame that raised and the one that called it.
  expect_match(msg, "raise.py\", line [0-9]+, in check_input")
  expect_match(msg, "in process")
  expect_match(msg, "raise.py", fixed = TRUE)
  expect_identical(err$python_type, "ValueError")
  expect_match(err$traceback, "^Traceback \\(most recent call last\\)")
  expect_match(err$traceback, "ValueError: input of length 3 rejected by check_input")
  expect_identical(err$script, py("raise.py"))
  expect_identical(err$exit_status, 1L)
  # The condition names the user's call.
  expect_identical(conditionCall(err)[[1L]], as.name("run_python"))
  # Caught as any R error.
  expect_true(inherits(try(run_python(1:3, py("raise.py")), silent = TRUE), "try-error"))
  expect_no_segments()
})

test_that("sys.exit(n) is reported with Python's SystemExit and the status", {
  err <- expect_pyrmap_error(run_python(1, py("sys_exit.py")), "pyrmap_python_error", "SystemExit")
  expect_identical(err$python_type, "SystemExit")
  expect_identical(err$exit_status, 3L)
})

test_that("a script that dies without an outcome is a pyrmap_script_error", {
  err <- expect_pyrmap_error(quiet_stderr(run_python(1, py("os_exit.py"))), "pyrmap_script_error", "status 4")
  expect_match(conditionMessage(err), "os_exit.py is about to exit", fixed = TRUE)  # stderr's end
  expect_identical(err$exit_status, 4L)
  err <- expect_pyrmap_error(run_python(1, py("kill_self.py")), "pyrmap_script_error", "signal 9")
  expect_identical(err$signal, 9L)
  expect_pyrmap_error(run_python(1, py("no_result.py")), "pyrmap_script_error",
                      "finished without writing a result")
})

test_that("a result Python cannot store is a Python error naming the type", {
  err <- expect_pyrmap_error(run_python(1, py("bad_result.py")), "pyrmap_python_error",
                             "not supported")
  expect_identical(err$python_type, "pyrmap.ResultTypeError")
  expect_pyrmap_error(py_eval(1, "np.array([1 + 2j])"), "pyrmap_python_error", "complex128")
  expect_pyrmap_error(py_eval(1, "object()"), "pyrmap_python_error", "a object with numpy dtype object")
  expect_pyrmap_error(py_eval(1, "np.array([2**64 - 1], dtype=np.uint64)"),
                      "pyrmap_python_error", "uint64")
})

test_that("a broken exchange header is a pyrmap_protocol_error", {
  # (The Python side also complains on stderr; that is captured here.)
  expect_pyrmap_error(quiet_stderr(run_python(1:3, py("break_header.py"))),
                      "pyrmap_protocol_error", "bad magic")
})

test_that("a timeout kills the script: pyrmap_timeout_error, promptly", {
  t0 <- Sys.time()
  err <- expect_pyrmap_error(run_python(1, py("sleep.py"), timeout = 0.5, args = "30"),
                             "pyrmap_timeout_error", "timed out after 0.5 s")
  expect_lt(as.numeric(Sys.time() - t0, units = "secs"), 10)
  expect_identical(err$signal, 9L)
  # The killed interpreter is gone (reaped): this R process has no children.
  expect_length(children_of(Sys.getpid()), 0L)
  # Within the limit nothing happens.
  expect_identical(run_python(1:3, py("sleep.py"), timeout = 30, args = "0"), 1:3)
  expect_identical(run_python(1:3, py("sleep.py"), timeout = Inf, args = "0"), 1:3)
  # Each stage of a pipeline has the limit: the first stage (a Python start,
  # ~0.2 s, 25 times that on a loaded machine) stays within it, the second
  # (30 s) does not.
  expect_pyrmap_error(run_python_pipeline(1, c(py("identity.py"), py("sleep.py")), timeout = 5),
                      "pyrmap_timeout_error", "sleep.py")
})

test_that("a missing script is a pyrmap_script_not_found; no Python is started", {
  missing <- file.path(tempdir(), "no-such-script.py")
  err <- expect_pyrmap_error(run_python(1, missing), "pyrmap_script_not_found", "no-such-script.py")
  expect_identical(err$script, missing)
  expect_pyrmap_error(run_python(1, tempdir()), "pyrmap_script_not_found", "not a regular file")
  expect_pyrmap_error(run_python_shared_data(1, c(py("identity.py"), missing)),
                      "pyrmap_script_not_found", "no-such-script.py")
  expect_pyrmap_error(run_python_pipeline(1, c(py("identity.py"), missing)),
                      "pyrmap_script_not_found", "no-such-script.py")
})

test_that("an interpreter that is missing or lacks numpy is a pyrmap_interpreter_error", {
  err <- expect_pyrmap_error(run_python(1, py("identity.py"), python = "/nonexistent/python3"),
                             "pyrmap_interpreter_error", "/nonexistent/python3", fixed = TRUE)
  expect_match(conditionMessage(err), "PYRMAP_PYTHON", fixed = TRUE)
  dir <- tempfile("fakepy")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE), add = TRUE)
  err <- expect_pyrmap_error(run_python(1, py("identity.py"), python = numpy_less_python(dir)),
                             "pyrmap_interpreter_error", "numpy")
  expect_match(conditionMessage(err), "cannot import numpy")
  # The `python3` first on PATH, when it has no numpy (as on the dev machine).
  path_python <- Sys.which("python3")
  skip_if(!nzchar(path_python), "no python3 on PATH")
  has_numpy <- suppressWarnings(system2(path_python, c("-c", shQuote("import numpy")),
                                        stdout = FALSE, stderr = FALSE)) == 0L
  skip_if(has_numpy, "the python3 on PATH has numpy")
  expect_pyrmap_error(run_python(1, py("identity.py"), python = "python3"),
                      "pyrmap_interpreter_error", "numpy")
})

test_that("a segment that cannot be reserved is a pyrmap_system_error, nothing left", {
  # A file size limit makes posix_fallocate fail (EFBIG) as a full /dev/shm
  # would (ENOSPC); the child R process reports what it got.
  dir <- tempfile("limit")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE), add = TRUE)
  out_file <- file.path(dir, "out.rds")
  code <- c(
    "library(pyrmap)",
    "got <- function(expr) tryCatch({ expr; 'no error' }, condition = function(e) class(e)[1L])",
    sprintf("input <- got(run_python(as.numeric(1:1e6), %s))", deparse(py("identity.py"))),
    sprintf("result <- got(run_python(1, %s, args = '1000000'))", deparse(py("filled.py"))),
    sprintf("ok <- got(run_python(1:3, %s))", deparse(py("twice.py"))),
    "segs <- list.files('/dev/shm', sprintf('^pyrmap-[0-9]+-%d-', Sys.getpid()))",
    sprintf("saveRDS(list(input = input, result = result, ok = ok, segments = segs, pid = Sys.getpid()), %s)",
            deparse(out_file)))
  log <- rscript_with_file_limit(code, dir, blocks = 1024)  # 512 KiB or 1 MiB
  expect_true(file.exists(out_file), label = paste(c("the child reported back; its output:", log), collapse = "\n"))
  out <- readRDS(out_file)
  expect_identical(out$input, "pyrmap_system_error")   # the 8 MB input segment
  expect_identical(out$result, "pyrmap_python_error")  # Python could not store 8 MB
  expect_identical(out$ok, "no error")                 # small calls still work
  expect_identical(out$segments, character(0))
  expect_identical(segments_of(out$pid), character(0))
})

test_that("unsupported data is a clear usage error naming what was given", {
  # (Character vectors, lists, factors, data.frames and NULL go: test-frames.R.)
  bad <- list(1i, sum, mean, new.env(), quote(x))
  what <- c("complex", "builtin", "closure", "environment", "symbol")
  for (i in seq_along(bad)) {
    err <- expect_pyrmap_error(run_python(bad[[i]], py("identity.py")), "pyrmap_usage_error",
                               "not supported")
    expect_match(conditionMessage(err), what[[i]])
    expect_match(conditionMessage(err), "numeric, integer, logical, raw or character")
  }
  expect_pyrmap_error(run_python(as.POSIXlt("2020-01-01"), py("identity.py")), "pyrmap_usage_error",
                      "list of class 'POSIXlt'")
  expect_pyrmap_error(run_python_shared_data(1i, py("identity.py")), "pyrmap_usage_error", "complex")
  expect_pyrmap_error(run_python_pipeline(sum, py("identity.py")), "pyrmap_usage_error", "builtin")
})

test_that("bad arguments are usage errors that name the user's call", {
  s <- py("identity.py")
  err <- expect_pyrmap_error(run_python(1, s, foo = 1), "pyrmap_usage_error", "foo")
  expect_identical(conditionCall(err)[[1L]], as.name("run_python"))
  err <- expect_pyrmap_error(run_python(1, c(s, s)), "pyrmap_usage_error", "python_script_path")
  expect_identical(conditionCall(err)[[1L]], as.name("run_python"))
  err <- expect_pyrmap_error(run_python(1, s, timeout = -1), "pyrmap_usage_error", "timeout")
  expect_identical(conditionCall(err)[[1L]], as.name("run_python"))
  expect_pyrmap_error(run_python(1, s, timeout = "5"), "pyrmap_usage_error", "timeout")
  expect_pyrmap_error(run_python(1, s, args = 1), "pyrmap_usage_error", "args")
  expect_pyrmap_error(run_python(1, s, python = ""), "pyrmap_usage_error", "python")
  expect_pyrmap_error(run_python(1, NA_character_), "pyrmap_usage_error", "python_script_path")
  expect_pyrmap_error(run_python(1, paste0(s, "::")), "pyrmap_usage_error", "no function name")
  err <- expect_pyrmap_error(run_python_shared_data(1, character(0)), "pyrmap_usage_error", "script paths")
  expect_identical(conditionCall(err)[[1L]], as.name("run_python_shared_data"))
  expect_pyrmap_error(run_python_shared_data(1, s, jobs = 0), "pyrmap_usage_error", "jobs")
  err <- expect_pyrmap_error(run_python_pipeline(1, s, keep_intermediate = NA), "pyrmap_usage_error",
                             "keep_intermediate")
  expect_identical(conditionCall(err)[[1L]], as.name("run_python_pipeline"))
  expect_pyrmap_error(run_python_shared_data(1, c(s, s, s), fun = c("a", "b")), "pyrmap_usage_error", "fun")
  expect_pyrmap_error(run_python(1, paste0(s, "::process"), fun = "process"), "pyrmap_usage_error",
                      "either in fun")
})

test_that("a failing script among several fails the call and leaves nothing", {
  err <- expect_pyrmap_error(run_python_shared_data(1:3, c(py("twice.py"), py("raise.py"), py("twice.py"))),
                             "pyrmap_python_error", "check_input")
  expect_identical(err$script, py("raise.py"))
  expect_pyrmap_error(run_python_shared_data(1:3, c(py("twice.py"), py("raise.py")), jobs = 2),
                      "pyrmap_python_error", "check_input")
  err <- expect_pyrmap_error(run_python_pipeline(1:3, c(py("twice.py"), py("raise.py"), py("twice.py"))),
                             "pyrmap_python_error", "check_input")
  expect_identical(err$script, py("raise.py"))
  # A later stage failing before its turn (it is started early) is reported too.
  expect_pyrmap_error(quiet_stderr(run_python_pipeline(1:3, c(py("sleep.py"), py("os_exit.py")), args = "0.5")),
                      "pyrmap_script_error", "status 4")
})

test_that("after all these failures no child process is left running", {
  expect_true(wait_until(function() length(children_of(Sys.getpid())) == 0L, timeout = 5))
})

test_that("this file leaves no segment in /dev/shm", {
  expect_identical(shm_leftovers(shm_at_start), character(0))
})
