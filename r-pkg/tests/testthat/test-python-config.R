# Finding Python: an explicit choice is used as it is; without one, the
# first candidate that imports numpy is found once per session and
# remembered; pyrmap_available() and pyrmap_config() report it.

# Runs `code` with no interpreter chosen (no option, no PYRMAP_PYTHON), with
# `dir` first on PATH and the candidates `candidates`; restores everything
# after, and forgets what was found.
without_a_choice <- function(dir, candidates, code) {
  old_env <- Sys.getenv(c("PATH", "PYRMAP_PYTHON"), unset = NA)
  old_opt <- options(pyrmap.python = NULL)
  ns <- asNamespace("pyrmap")
  old_candidates <- get(".python_candidates", ns)
  set_candidates <- function(value) {
    unlockBinding(".python_candidates", ns)
    assign(".python_candidates", value, envir = ns)
    lockBinding(".python_candidates", ns)
  }
  on.exit({
    options(old_opt)
    for (v in names(old_env))
      if (is.na(old_env[[v]])) Sys.unsetenv(v) else do.call(Sys.setenv, as.list(old_env[v]))
    set_candidates(old_candidates)
    pyrmap:::.forget_python()
  })
  Sys.setenv(PATH = paste(dir, old_env[["PATH"]], sep = ":"))
  Sys.unsetenv("PYRMAP_PYTHON")
  set_candidates(candidates)
  pyrmap:::.forget_python()
  force(code)
}

# A `python3` that cannot import numpy (as the first python3 on this
# machine's PATH), and that counts how often it was started.
fake_python_dir <- function() {
  dir <- tempfile("fake-python-")
  dir.create(dir)
  log <- file.path(dir, "started")
  file.create(log)
  writeLines(c("#!/bin/sh", sprintf("echo \"$*\" >> '%s'", log),
               "echo \"ModuleNotFoundError: No module named 'numpy'\" >&2", "exit 1"),
             file.path(dir, "python3"))
  Sys.chmod(file.path(dir, "python3"), "755")
  dir
}

starts <- function(dir) length(readLines(file.path(dir, "started")))

with_numpy <- function() {
  p <- "/usr/bin/python3"
  file.exists(p) && suppressWarnings(system2(p, c("-c", shQuote("import numpy")),
                                             stdout = FALSE, stderr = FALSE)) == 0L
}

test_that("without a choice, the first candidate that imports numpy is used, and remembered", {
  skip_if_not(with_numpy(), "needs /usr/bin/python3 with numpy")
  dir <- fake_python_dir()
  without_a_choice(dir, c("python3", "/usr/bin/python3", "python"), {
    # python3 (the fake, first on PATH) cannot import numpy: passed over.
    expect_identical(pyrmap_python(), "/usr/bin/python3")
    expect_identical(starts(dir), 1L)
    expect_true(pyrmap_available())
    x <- c(1, 2, 3)
    expect_equal(as.vector(run_python(x, py("expr.py"), args = "data * 2")), x * 2)
    # Remembered: the candidates are not started again.
    expect_identical(pyrmap_python(), "/usr/bin/python3")
    expect_identical(starts(dir), 1L)
    cfg <- pyrmap_config()  # looks again
    expect_identical(starts(dir), 2L)
    expect_identical(cfg$python, "/usr/bin/python3")
    expect_match(cfg$chosen_by, "the first of python3, /usr/bin/python3, python that imports numpy",
                 fixed = TRUE)
    expect_identical(cfg$tried, sprintf("python3 (%s): cannot import numpy", file.path(dir, "python3")))
  })
})

test_that("when no candidate imports numpy, the run's error says what was tried", {
  dir <- fake_python_dir()
  without_a_choice(dir, c("python3", "/nonexistent/python3"), {
    expect_identical(pyrmap_python(), "python3")
    expect_false(pyrmap_available())
    err <- expect_pyrmap_error(run_python(1, py("expr.py"), args = "data"), "pyrmap_interpreter_error")
    expect_match(conditionMessage(err), "pyrmap looked for an interpreter that imports numpy: ",
                 fixed = TRUE)
    expect_match(conditionMessage(err),
                 sprintf("python3 (%s): cannot import numpy; /nonexistent/python3: not found",
                         file.path(dir, "python3")), fixed = TRUE)
    expect_match(conditionMessage(err), "options(pyrmap.python = )", fixed = TRUE)
  })
})

test_that("an explicit choice is used as it is, even without numpy", {
  dir <- fake_python_dir()
  fake <- file.path(dir, "python3")
  without_a_choice(dir, c("/usr/bin/python3"), {
    old <- options(pyrmap.python = fake)
    on.exit(options(old))
    expect_identical(pyrmap_python(), fake)
    expect_identical(starts(dir), 0L)  # not probed to choose it
    expect_false(pyrmap_available())
    err <- expect_pyrmap_error(run_python(1, py("expr.py"), args = "data"), "pyrmap_interpreter_error")
    expect_match(conditionMessage(err), fake, fixed = TRUE)
    expect_false(grepl("looked for", conditionMessage(err), fixed = TRUE))
    cfg <- pyrmap_config()
    expect_identical(cfg$chosen_by, "options(pyrmap.python)")
    expect_true(is.na(cfg$numpy_version))
    expect_match(cfg$problem, "cannot import numpy: ModuleNotFoundError", fixed = TRUE)
    out <- capture.output(print(cfg))
    expect_true(any(grepl("^numpy: +NOT AVAILABLE: cannot import numpy", out)))
    # The argument comes before the option; the environment after it.
    expect_identical(pyrmap_python("/x/python"), "/x/python")
    options(pyrmap.python = NULL)
    Sys.setenv(PYRMAP_PYTHON = "/y/python")
    expect_identical(pyrmap_python(), "/y/python")
    expect_identical(pyrmap_config()$chosen_by, "the environment variable PYRMAP_PYTHON")
    expect_identical(pyrmap_config()$problem, "'/y/python' is not found")
  })
})

test_that("pyrmap_config() reports the interpreter, numpy, the segment directory and the command", {
  cfg <- pyrmap_config()
  expect_s3_class(cfg, "pyrmap_config")
  expect_identical(cfg$python, pyrmap_python())
  v <- system2(cfg$python_path, c("-c", shQuote("import sys, numpy; print(sys.version.split()[0]); print(numpy.__version__)")),
               stdout = TRUE)
  expect_identical(cfg$python_version, v[[1L]])
  expect_identical(cfg$numpy_version, v[[2L]])
  expect_identical(cfg$segment_dir, pyrmap_segment_dir())
  df <- strsplit(system2("df", c("-Pk", cfg$segment_dir), stdout = TRUE)[[2L]], "[[:space:]]+")[[1L]]
  expect_equal(cfg$segment_dir_size, as.numeric(df[[2L]]) * 1024)
  expect_true(cfg$segment_dir_free > 0 && cfg$segment_dir_free <= cfg$segment_dir_size)
  expect_identical(cfg$command, pyrmap_command())
  expect_identical(cfg$version, as.character(packageVersion("pyrmap")))
  out <- capture.output(print(cfg))
  expect_identical(sub(":.*", "", out),
                   c("pyrmap", "python", "chosen by", "python version", "numpy", "segment dir", "command"))
  expect_match(out[[6L]], sprintf("^segment dir: +%s \\(.* free of .*\\)$", cfg$segment_dir))
  expect_match(out[[5L]], paste0("^numpy: +", cfg$numpy_version, "$"))
  # A segment directory that cannot be used is reported, not raised.
  bad <- pyrmap_config(segment_dir = "/nonexistent/dir")
  expect_true(is.na(bad$segment_dir))
  expect_match(bad$segment_dir_problem, "/nonexistent/dir", fixed = TRUE)
  expect_match(capture.output(print(bad))[[6L]], "^segment dir: +unusable: ")
})
