# Where the segments live (segment_dir = / path = / options / the
# environment), the seed's argument names, and leftovers of killed runs.

shm_at_start <- shm_snapshot()

# ---- the segment directory ------------------------------------------------------

test_that("a run with path = \"DISK\" works and leaves nothing in the DISK directory", {
  disk <- pyrmap_segment_dir("DISK")
  expect_identical(disk, pyrmap_segment_dir(segment_dir = "DISK"))
  expect_match(disk, sprintf("/pyrmap-%s$", my_uid()))
  expect_identical(file.info(disk)$mode, as.octmode("700"))
  before <- pyrmap_files(disk)
  x <- matrix(as.numeric(1:12), 3)
  expect_identical(run_python(x, py("twice.py"), "float64", path = "DISK"), x * 2)
  expect_identical(run_python(x, py("twice.py"), segment_dir = "DISK"), x * 2)
  expect_identical(pyrmap_files(disk), before)
  expect_no_segments()
})

test_that("a run in a directory of one's own: the segments are made there, and removed", {
  d <- private_dir()
  on.exit(unlink(d, recursive = TRUE), add = TRUE)
  seen <- tempfile()
  on.exit(unlink(seen), add = TRUE)
  x <- as.numeric(1:1000)
  # The script reports the directory it was given and the files in it.
  script <- tempfile(fileext = ".py")
  on.exit(unlink(script), add = TRUE)
  writeLines(c("import os, sys",
               "from pyrmap import process_via_mmap",
               "@process_via_mmap",
               "def process(data):",
               "    d = os.environ['PYRMAP_SEGMENT_DIR']",
               "    open(sys.argv[1], 'w').write(d + '\\n' + ''.join(n + '\\n' for n in sorted(os.listdir(d))))",
               "    return data + 1",
               "if __name__ == '__main__':",
               "    process()"), script)
  r <- run_python(x, script, segment_dir = d, args = seen)
  expect_identical(r, x + 1)
  got <- readLines(seen)
  expect_identical(got[[1L]], d)
  expect_true(any(grepl(sprintf("^pyrmap-%s-%d-[0-9a-f]{16}-meta-0$", my_uid(), Sys.getpid()), got)))
  expect_identical(pyrmap_files(d), character(0))
  expect_no_segments()
  # The same through options() and through the environment; the argument wins.
  withr_opts <- options(pyrmap.segment_dir = d)
  on.exit(options(withr_opts), add = TRUE)
  r <- run_python(x, script, args = seen)
  expect_identical(readLines(seen)[[1L]], d)
  r <- run_python(x, script, args = seen, path = "RAM")
  expect_identical(readLines(seen)[[1L]], "/dev/shm")
  options(withr_opts)
  old_env <- Sys.getenv("PYRMAP_SEGMENT_DIR", NA)
  Sys.setenv(PYRMAP_SEGMENT_DIR = d)
  on.exit(if (is.na(old_env)) Sys.unsetenv("PYRMAP_SEGMENT_DIR") else Sys.setenv(PYRMAP_SEGMENT_DIR = old_env),
          add = TRUE)
  r <- run_python_pipeline(x, c(script, py("twice.py")), args = seen)
  expect_identical(r, (x + 1) * 2)
  expect_identical(readLines(seen)[[1L]], d)
  expect_identical(pyrmap_segment_dir(), d)
  expect_identical(pyrmap_files(d), character(0))
})

test_that("a directory other users could write into is refused, naming it", {
  d <- private_dir()
  on.exit(unlink(d, recursive = TRUE), add = TRUE)
  Sys.chmod(d, "0777", use_umask = FALSE)
  e <- expect_pyrmap_error(run_python(1, py("identity.py"), segment_dir = d), "pyrmap_system_error")
  expect_match(conditionMessage(e), sprintf("segment directory '%s' is not safe to use", d), fixed = TRUE)
  expect_match(conditionMessage(e), "mode 0777", fixed = TRUE)
  e <- expect_pyrmap_error(run_python(1, py("identity.py"), segment_dir = file.path(d, "none")),
                           "pyrmap_usage_error")
  expect_match(conditionMessage(e), "does not exist")
  expect_pyrmap_error(run_python(1, py("identity.py"), segment_dir = c("a", "b")), "pyrmap_usage_error")
  old <- options(pyrmap.segment_dir = 42)
  on.exit(options(old), add = TRUE)
  expect_pyrmap_error(run_python(1, py("identity.py")), "pyrmap_usage_error")
})

test_that("registered variables live in the chosen directory, read-only, and go when released", {
  d <- private_dir()
  on.exit(unlink(d, recursive = TRUE), add = TRUE)
  old <- options(pyrmap.segment_dir = d)
  on.exit(options(old), add = TRUE)
  ns <- sprintf("segdir-%d", Sys.getpid())
  registerVariables(ns, list(X = matrix(1:6, 2), L = list(a = 1, b = 2:3)))
  files <- pyrmap_files(d)
  expect_length(files, 2L)
  expect_true(all(grepl("-ns-", files)))
  expect_true(all(file.info(file.path(d, files))$mode == as.octmode("400")))
  expect_identical(retrieveViews(ns, "X")$X, matrix(1:6, 2))
  expect_identical(view_info(retrieveViews(ns, "X")$X)$dir, d)
  expect_identical(retrieveMetadata(ns, "X")$type, "matrix")
  # Handed to Python without a copy, from that directory.
  expect_identical(run_python(retrieveViews(ns, "X")$X, py("twice.py")), matrix(1:6, 2) * 2L)
  # Another directory does not have them.
  options(pyrmap.segment_dir = "RAM")
  expect_error(retrieveViews(ns, "X"), class = "pyrmap_not_registered")
  expect_error(retrieveMetadata(ns, "X"), class = "pyrmap_not_registered")
  # Released from where they were registered, whatever the option says now.
  releaseViews(ns, "X")
  releaseVariables(ns, c("X", "L"))
  expect_identical(pyrmap_files(d), character(0))
})

test_that("memLapply's workers find the pages in the directory they were registered in", {
  d <- private_dir()
  on.exit(unlink(d, recursive = TRUE), add = TRUE)
  old <- options(pyrmap.segment_dir = d)
  on.exit(options(old), add = TRUE)
  cl <- parallel::makePSOCKcluster(1L)
  on.exit(parallel::stopCluster(cl), add = TRUE)
  ns <- sprintf("segdir-ml-%d", Sys.getpid())
  registerVariables(ns, list(w = c(10, 20)))
  on.exit(releaseVariables(ns, "w"), add = TRUE, after = FALSE)
  res <- memLapply(list(1, 2, 3), function(el, w, y) {
    # FUN's own retrieveViews() looks in the same directory.
    el * sum(w) + pyrmap::retrieveViews(ns, "w")$w[[1L]] + sum(y)
  }, NAMESPACE = ns, CLUSTER = cl, VARS = list(w = retrieveViews(ns, "w")$w, y = 1:2))
  expect_identical(res, list(43, 73, 103))
  releaseViews(ns, "w")
})

test_that("a /dev/shm too small for the data names the sizes and path = \"DISK\"; DISK then works", {
  out <- rscript_lines(c(
    "library(pyrmap)",
    "x <- as.numeric(seq_len(512 * 1024))  # 4 MiB",
    sprintf("e <- tryCatch(run_python(x, %s), error = identity)", deparse(py("twice.py"))),
    "cat('CLASS', class(e), '\\n')",
    "cat('MESSAGE', conditionMessage(e), '\\n')",
    sprintf("r <- run_python(x, %s, path = 'DISK')", deparse(py("twice.py"))),
    "cat('DISK', identical(r, x * 2), '\\n')",
    "cat('LEFT', list.files('/dev/shm'), '\\n')"), shm_size = "1m")
  expect_match(out, "CLASS pyrmap_system_error pyrmap_error", fixed = TRUE)
  expect_match(out, "No space left on device", fixed = TRUE)
  expect_match(out, "the segment needs 4.0 MiB (4194304 bytes), /dev/shm has ", fixed = TRUE)
  expect_match(out, "free", fixed = TRUE)
  expect_match(out, "path = \"DISK\"", fixed = TRUE)
  expect_match(out, "DISK TRUE", fixed = TRUE)
  expect_match(out, "LEFT\\s*$")  # nothing left in the tiny /dev/shm
})

test_that("results too large for /dev/shm: a clear error; in the chosen segment directory they fit", {
  out <- rscript_lines(c(
    "library(pyrmap)",
    "# 200 results of 16 KB: 3 MB of results, more than the 1 MiB /dev/shm holds",
    "f <- function(i) rep(as.numeric(i), 2000)",
    "e <- tryCatch(memLapply(as.list(1:200), f, MAX.CORES = 2), error = identity)",
    "cat('CLASS', class(e), '\\n')",
    "cat('MESSAGE', conditionMessage(e), '\\n')",
    "options(pyrmap.segment_dir = 'DISK')",
    "r <- memLapply(as.list(1:200), f, MAX.CORES = 2)",
    "cat('SAME', identical(r, lapply(1:200, f)), '\\n')",
    "cat('LEFT', list.files('/dev/shm'), '\\n')"), shm_size = "1m")
  expect_match(out, "CLASS pyrmap_system_error pyrmap_error", fixed = TRUE)
  expect_match(out, "MESSAGE memLapply: worker [12] could not write its results into the segment directory /dev/shm: No space left on device")
  expect_match(out, "options(pyrmap.segment_dir = \"DISK\")", fixed = TRUE)
  expect_match(out, "SAME TRUE", fixed = TRUE)
  expect_match(out, "LEFT\\s*$")
})

# ---- the seed's argument names ---------------------------------------------------

test_that("the seed's calls run unchanged: path =, python_scripts_paths =, initial_data =, required_intermediate_results =", {
  x <- as.numeric(1:10)
  expect_identical(run_python(x, py("twice.py"), "float64", path = "DISK"), x * 2)
  expect_identical(run_python(x, py("twice.py"), "float64", path = "RAM"), x * 2)
  res <- run_python_shared_data(data = x, python_scripts_paths = c(py("twice.py"), py("identity.py")),
                                dtype = "float64", path = "DISK")
  expect_identical(res, list(twice.py = x * 2, identity.py = x))
  res <- run_python_pipeline(initial_data = x, python_scripts_paths = c(py("twice.py"), py("twice.py")),
                             dtype = "float64", path = "RAM", required_intermediate_results = TRUE)
  expect_identical(unname(res), list(x * 2, x * 4))
  res <- run_python_pipeline(initial_data = x, required_intermediate_results = FALSE,
                             python_scripts_paths = c(py("twice.py"), py("twice.py")))
  expect_identical(res, x * 4)
  # Positional calls keep working.
  expect_identical(run_python_pipeline(x, c(py("twice.py"), py("twice.py")), "float64"), x * 4)
  expect_identical(run_python_shared_data(x, py("twice.py"), "float64")[[1L]], x * 2)
  expect_no_segments()
})

test_that("giving both spellings of an argument is a usage error naming both", {
  x <- 1
  both <- function(expr, ours, seeds) {
    e <- expect_pyrmap_error(expr, "pyrmap_usage_error")
    expect_match(conditionMessage(e), sprintf("give either %s or %s", ours, seeds), fixed = TRUE)
  }
  both(run_python(x, py("identity.py"), segment_dir = "RAM", path = "DISK"), "segment_dir", "path")
  both(run_python_shared_data(x, py("identity.py"), python_scripts_paths = py("identity.py")),
       "script_paths", "python_scripts_paths")
  both(run_python_shared_data(x, py("identity.py"), segment_dir = "RAM", path = "RAM"), "segment_dir", "path")
  both(run_python_pipeline(x, initial_data = x, script_paths = py("identity.py")), "data", "initial_data")
  both(run_python_pipeline(x, py("identity.py"), python_scripts_paths = py("identity.py")),
       "script_paths", "python_scripts_paths")
  both(run_python_pipeline(x, py("identity.py"), keep_intermediate = TRUE,
                           required_intermediate_results = TRUE),
       "keep_intermediate", "required_intermediate_results")
  both(run_python_pipeline(x, py("identity.py"), segment_dir = "RAM", path = "RAM"), "segment_dir", "path")
  e <- expect_pyrmap_error(run_python_shared_data(x), "pyrmap_usage_error")
  expect_match(conditionMessage(e), "script_paths is missing")
  e <- expect_pyrmap_error(run_python_pipeline(python_scripts_paths = py("identity.py")), "pyrmap_usage_error")
  expect_match(conditionMessage(e), "data is missing")
})

# ---- leftovers --------------------------------------------------------------------

test_that("loading the package removes the segments of a run that was killed (kill -9)", {
  d <- private_dir()
  on.exit(unlink(d, recursive = TRUE), add = TRUE)
  pidfile <- tempfile()
  on.exit(unlink(pidfile), add = TRUE)
  log <- rscript_bg(c(
    "library(pyrmap)",
    sprintf("writeLines(as.character(Sys.getpid()), %s)", deparse(paste0(pidfile, ".r"))),
    sprintf("run_python(as.numeric(1:100), %s, args = '60', segment_dir = %s)", deparse(py("sleep.py")),
            deparse(d))), dirname(pidfile))
  expect_true(wait_until(function() length(pyrmap_files(d)) >= 2L, timeout = 60))
  rpid <- as.integer(readLines(paste0(pidfile, ".r")))
  left <- pyrmap_files(d)
  expect_true(all(grepl(sprintf("^pyrmap-%s-%d-", my_uid(), rpid), left)))
  kids <- children_of(rpid)
  tools::pskill(rpid, tools::SIGKILL)
  expect_true(wait_until(function() !proc_alive(rpid)))
  for (k in kids) tools::pskill(k, tools::SIGKILL)  # the orphaned Python
  expect_identical(pyrmap_files(d), left)  # nobody cleaned up
  # A new session loading the package removes them (the directory is known:
  # it was recorded when used).
  out <- ms_rscript(c("library(pyrmap)", "cat('loaded\\n')"))
  expect_true("loaded" %in% out)
  expect_identical(pyrmap_files(d), character(0))
})

test_that("the end of the file leaves no segment", {
  expect_identical(shm_leftovers(shm_at_start), character(0))
})
