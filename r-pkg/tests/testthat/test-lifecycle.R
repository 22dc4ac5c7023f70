# The Python process lives and dies with R; results of every shape cross.

test_that("the Python process dies when R is killed with SIGKILL", {
  dir <- local_dir()
  script <- write_py(dir, "sleeper.py", c("open(os.environ['CHILD_PID'], 'w').write(str(os.getpid()))",
                                          "time.sleep(600)", "return data"))
  r_pid_file <- file.path(dir, "r.pid")
  child_pid_file <- file.path(dir, "child.pid")
  log <- rscript_bg(c(
    "library(pyrmap)",
    sprintf("writeLines(as.character(Sys.getpid()), %s)", deparse(r_pid_file)),
    sprintf("Sys.setenv(CHILD_PID = %s)", deparse(child_pid_file)),
    sprintf("run_python(as.numeric(1:10), %s)", deparse(script))), dir)
  read_pid <- function(f) suppressWarnings(as.integer(readLines(f, warn = FALSE)))
  expect_true(wait_until(function() file.exists(child_pid_file) && length(read_pid(child_pid_file)) > 0,
                         timeout = 120))
  r_pid <- read_pid(r_pid_file)
  child <- read_pid(child_pid_file)
  expect_true(proc_alive(child))
  tools::pskill(r_pid, tools::SIGKILL)
  # Generous: the parent-death signal is immediate, a loaded machine is not.
  gone <- wait_until(function() !proc_alive(child), timeout = 30)
  if (!gone) tools::pskill(child, tools::SIGKILL)
  expect_true(gone, label = "the Python process died with R")
  # The killed session's segment names stay until a collection.
  # (reaped, not only a zombie: until then its pid still counts as alive)
  expect_true(wait_until(function() !file.exists(file.path("/proc", r_pid)), timeout = 30))
  pyrmap:::.pyrmap_collect_garbage()
  expect_length(segments_of(r_pid), 0L)
})

test_that("an interpreter that is not Python is an interpreter error, not a script error", {
  cond <- expect_pyrmap_error(run_python(1:3, py("identity.py"), python = "/bin/false"),
                              "pyrmap_interpreter_error")
  expect_match(conditionMessage(cond), "the Python interpreter '/bin/false' exited with status 1",
               fixed = TRUE)
  expect_match(conditionMessage(cond), "before pyrmap's bootstrap started", fixed = TRUE)
})

test_that("a scalar result is a length-1 vector and feeds the next pipeline stage", {
  dir <- local_dir()
  total <- write_py(dir, "sum.py", "return np.sum(data)")
  plus_one <- write_py(dir, "plus_one.py", "return data[0] + 1")
  expect_identical(run_python(c(1, 2, 3), total), 6)
  expect_identical(run_python_pipeline(c(1, 2, 3), c(total, plus_one)), 7)
  both <- run_python_pipeline(c(1, 2, 3), c(total, plus_one), keep_intermediate = TRUE)
  expect_identical(unname(unlist(both)), c(6, 7))
  expect_no_segments()
})

test_that("text that is not valid UTF-8 from a script still makes a valid message", {
  dir <- local_dir()
  script <- file.path(dir, "bytes.py")
  writeLines(c("import os, sys",
               "sys.stderr.buffer.write(b'raw \\xff\\xfe bytes\\n')",
               "sys.stderr.flush()",
               "os._exit(3)"), script)
  cond <- quiet_stderr(tryCatch(run_python(1, script), error = function(e) e))
  expect_s3_class(cond, "pyrmap_script_error")
  msg <- conditionMessage(cond)
  expect_true(validUTF8(msg))
  expect_match(msg, "raw \ufffd\ufffd bytes", fixed = TRUE)
  expect_match(toupper(msg), "EXITED WITH STATUS 3", fixed = TRUE)
})
