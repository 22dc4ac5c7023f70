# Helpers for the pyrmap tests (loaded by testthat before the test files).

# ---- scripts ----------------------------------------------------------------

# Absolute path of a test script in tests/testthat/py (absolute, so that child
# R processes started from elsewhere find it too).
py <- function(name) {
  path <- testthat::test_path("py", name)
  if (!file.exists(path)) stop("no test script ", path)
  normalizePath(path)
}

# run_python() on py/expr.py: the script returns eval(code) with `data` and
# `np` in scope.
py_eval <- function(data, code, dtype = NULL, ...) {
  run_python(data, py("expr.py"), dtype, args = code, ...)
}

# The interpreter the tests use (make test-r sets PYRMAP_PYTHON). Without
# one chosen, the first of python3 and /usr/bin/python3 that has numpy.
real_python <- function() pyrmap_python()

local({
  if (is.null(getOption("pyrmap.python")) && !nzchar(Sys.getenv("PYRMAP_PYTHON"))) {
    for (p in c("python3", "/usr/bin/python3")) {
      path <- Sys.which(p)[[1L]]
      if (nzchar(path) && suppressWarnings(system2(path, c("-c", shQuote("import numpy")),
                                                   stdout = FALSE, stderr = FALSE)) == 0L) {
        Sys.setenv(PYRMAP_PYTHON = path)
        break
      }
    }
  }
})

# ---- shared-memory segments ---------------------------------------------------

shm_dir <- "/dev/shm"

my_uid <- function() {
  uid <- grep("^Uid:", readLines("/proc/self/status"), value = TRUE)
  strsplit(trimws(sub("^Uid:", "", uid)), "[[:space:]]+")[[1L]][1L]
}

# pyrmap segments in /dev/shm created by process `pid` (names are
# pyrmap-<uid>-<pid>-<hex>-<role>).
segments_of <- function(pid = Sys.getpid()) {
  list.files(shm_dir, sprintf("^pyrmap-%s-%d-", my_uid(), as.integer(pid)))
}

# Fails if process `pid` (this R process by default) has a segment in /dev/shm.
expect_no_segments <- function(pid = Sys.getpid()) {
  left <- segments_of(pid)
  testthat::expect(length(left) == 0L,
                   sprintf("segments of pid %s left in /dev/shm: %s", pid,
                           paste(left, collapse = ", ")))
  invisible(left)
}

# expect_error() for a pyrmap condition of `class` (a pyrmap_error), then no
# segment of this process may remain. Returns the condition.
expect_pyrmap_error <- function(object, class, regexp = NULL, ...) {
  cond <- testthat::expect_error(object, regexp = regexp, class = class, ...)
  if (!is.null(cond)) {
    testthat::expect_s3_class(cond, c(class, "pyrmap_error"))
    testthat::expect_s3_class(cond, "error")
  }
  expect_no_segments()
  invisible(cond)
}

# A snapshot of the pyrmap segment names in /dev/shm, taken when a test file
# starts; shm_leftovers() lists the ones that appeared since and belong to
# this R process (other users of /dev/shm, e.g. parallel test runs, are
# ignored).
shm_snapshot <- function() list.files(shm_dir, "^pyrmap-")
shm_leftovers <- function(snapshot, pids = Sys.getpid()) {
  now <- setdiff(list.files(shm_dir, "^pyrmap-"), snapshot)
  mine <- unlist(lapply(pids, function(p) sprintf("^pyrmap-%s-%d-", my_uid(), as.integer(p))))
  now[vapply(now, function(n) any(vapply(mine, grepl, logical(1), x = n)), logical(1))]
}

# Bytes used in the /dev/shm file system (df -P: 1024-byte blocks).
shm_used <- function() {
  out <- system2("df", c("-P", "-k", shm_dir), stdout = TRUE)
  as.numeric(strsplit(out[length(out)], "[[:space:]]+")[[1L]][3L]) * 1024
}
shm_available <- function() {
  out <- system2("df", c("-P", "-k", shm_dir), stdout = TRUE)
  as.numeric(strsplit(out[length(out)], "[[:space:]]+")[[1L]][4L]) * 1024
}

# ---- views and mappings ----------------------------------------------------

view_info <- function(x) pyrmap:::.pyrmap_view_info(x)
is_view <- function(x) !is.null(view_info(x))
inspect_text <- function(x) paste(utils::capture.output(.Internal(inspect(x))), collapse = "\n")

# A hexadecimal address ("0x7f..." or "7f...") as a double (exact below 2^53).
hex_to_num <- function(h) {
  vapply(sub("^0x", "", tolower(h)), function(s) {
    d <- match(strsplit(s, "")[[1L]], c(0:9, letters[1:6])) - 1
    sum(d * 16^(rev(seq_along(d)) - 1))
  }, numeric(1), USE.NAMES = FALSE)
}

# The lines of /proc/self/maps, parsed: start, end (doubles), perms, path.
self_maps <- function() {
  lines <- readLines("/proc/self/maps")
  parts <- strsplit(lines, "[[:space:]]+")
  range <- vapply(parts, `[[`, "", 1L)
  data.frame(
    start = hex_to_num(sub("-.*", "", range)),
    end = hex_to_num(sub(".*-", "", range)),
    perms = vapply(parts, `[[`, "", 2L),
    path = vapply(parts, function(p) if (length(p) >= 6L) paste(p[-(1:5)], collapse = " ") else "", ""),
    stringsAsFactors = FALSE)
}

# The /proc/self/maps entry holding address `addr` (a hex string), or NULL.
mapping_at <- function(addr) {
  a <- hex_to_num(addr)
  maps <- self_maps()
  hit <- maps[maps$start <= a & a < maps$end, , drop = FALSE]
  if (nrow(hit) == 0L) NULL else hit[1L, ]
}

# Kilobytes of shared memory resident in this process (RssShmem).
rss_shmem_kb <- function() {
  line <- grep("^RssShmem:", readLines("/proc/self/status"), value = TRUE)
  as.numeric(gsub("[^0-9]", "", line))
}

# Megabytes of R's vector heap in use.
r_heap_mb <- function() gc()[2L, 2L]

# ---- processes -----------------------------------------------------------------

proc_alive <- function(pid) {
  f <- file.path("/proc", pid, "stat")
  if (!file.exists(f)) return(FALSE)
  st <- tryCatch(suppressWarnings(readLines(f, warn = FALSE)), error = function(e) "")
  # A zombie has exited already.
  length(st) > 0L && !grepl("^[0-9]+ \\(.*\\) Z ", st[1L])
}

# Pids of the live children of `pid`.
# (memApply's own R workers, which live for the session, are not counted.)
children_of <- function(pid) {
  engine <- if (identical(pid, Sys.getpid())) pyrmap:::.engine_info()$pids
  pids <- setdiff(list.files("/proc", "^[0-9]+$"), as.character(engine))
  kids <- vapply(pids, function(p) {
    st <- tryCatch(suppressWarnings(readLines(file.path("/proc", p, "stat"), warn = FALSE)),
                   error = function(e) "")
    if (!length(st) || !nzchar(st[1L])) return(FALSE)
    fields <- strsplit(sub("^.*\\) ", "", st[1L]), " ")[[1L]]
    identical(fields[2L], as.character(pid)) && fields[1L] != "Z"
  }, logical(1))
  as.integer(pids[kids])
}

wait_until <- function(cond, timeout = 20, interval = 0.05) {
  deadline <- Sys.time() + timeout
  while (Sys.time() < deadline) {
    if (isTRUE(cond())) return(TRUE)
    Sys.sleep(interval)
  }
  isTRUE(cond())
}

# Starts `code` in a new Rscript process that sees the same library paths and
# interpreter as this one. Returns the path of its log; the process writes
# its own pid where the code says.
rscript_bg <- function(code, dir) {
  file <- file.path(dir, "child.R")
  log <- file.path(dir, "child.log")
  writeLines(code, file)
  env <- c(sprintf("R_LIBS=%s", shQuote(paste(.libPaths(), collapse = ":"))),
           sprintf("PYRMAP_PYTHON=%s", shQuote(real_python())))
  system2(file.path(R.home("bin"), "Rscript"), shQuote(file), env = env,
          stdout = log, stderr = log, wait = FALSE)
  log
}

# A fake interpreter: the real one, but `import numpy` fails.
numpy_less_python <- function(dir) {
  fake <- file.path(dir, "fake-site")
  dir.create(file.path(fake, "numpy"), recursive = TRUE, showWarnings = FALSE)
  writeLines("raise ModuleNotFoundError(\"No module named 'numpy'\", name='numpy')",
             file.path(fake, "numpy", "__init__.py"))
  wrapper <- file.path(dir, "python-without-numpy")
  writeLines(c("#!/bin/sh",
               sprintf("PYTHONPATH=%s${PYTHONPATH:+:$PYTHONPATH}", shQuote(fake)),
               "export PYTHONPATH",
               sprintf("exec %s \"$@\"", shQuote(Sys.which(real_python())[[1L]]))),
             wrapper)
  Sys.chmod(wrapper, "0755")
  wrapper
}

# The bytes of a double vector, for bit-exact comparisons (NA vs NaN, -0).
bits <- function(x) writeBin(as.double(x), raw(), endian = "little")

# Evaluates `expr` with R's stderr (where the scripts' stderr is forwarded)
# captured, so that expected noise stays out of the test output.
quiet_stderr <- function(expr) {
  out <- NULL
  utils::capture.output(out <- expr, type = "message")
  out
}

# Runs `code` in a new Rscript process whose file size limit is `blocks`
# (ulimit -f: 512-byte blocks in dash, 1024 in bash; SIGXFSZ ignored, so a
# write beyond it fails with EFBIG instead of killing the process). Waits for
# it; returns its output.
rscript_with_file_limit <- function(code, dir, blocks) {
  file <- file.path(dir, "limited.R")
  writeLines(code, file)
  cmd <- sprintf("trap '' XFSZ; ulimit -f %d; R_LIBS=%s PYRMAP_PYTHON=%s exec %s %s 2>&1",
                 as.integer(blocks), shQuote(paste(.libPaths(), collapse = ":")),
                 shQuote(real_python()), shQuote(file.path(R.home("bin"), "Rscript")), shQuote(file))
  suppressWarnings(system2("sh", c("-c", shQuote(cmd)), stdout = TRUE))
}

# ---- scripts written by a test ------------------------------------------------

# A fresh directory, removed when the calling test (or function) ends.
local_dir <- function(pattern = "pyrmap-test", env = parent.frame()) {
  withr::local_tempdir(pattern, .local_envir = env)
}

# Writes `dir`/`name`: a script whose @process_via_mmap function `process`
# has `body` (lines, indented here) over its input `data`, after `imports`.
# Returns the path.
write_py <- function(dir, name, body, imports = c("import os, sys, time", "import numpy as np")) {
  path <- file.path(dir, name)
  writeLines(c(imports, "from pyrmap import process_via_mmap", "", "@process_via_mmap",
               "def process(data):", paste0("    ", body), "",
               "if __name__ == '__main__':", "    process()"), path)
  path
}

# Runs the R code `lines` in a fresh Rscript with this session's library
# path and Python; with `shm_size` (e.g. "1m"), inside a private mount
# namespace whose /dev/shm is a tmpfs of that size (skips the test when that
# cannot be made: not root, no unshare). Returns its stdout and stderr as
# one string.
rscript_lines <- function(lines, shm_size = NULL) {
  file <- tempfile(fileext = ".R")
  on.exit(unlink(file), add = TRUE)
  writeLines(lines, file)
  run <- sprintf("R_LIBS=%s PYRMAP_PYTHON=%s %s %s 2>&1", shQuote(paste(.libPaths(), collapse = ":")),
                 shQuote(real_python()), shQuote(file.path(R.home("bin"), "Rscript")), shQuote(file))
  if (is.null(shm_size)) return(paste(suppressWarnings(system(run, intern = TRUE)), collapse = "\n"))
  if (!identical(my_uid(), "0") || !nzchar(Sys.which("unshare")))
    testthat::skip("needs root and unshare for a private /dev/shm")
  mount <- sprintf("mount -t tmpfs -o size=%s tmpfs /dev/shm", shm_size)
  if (suppressWarnings(system2("unshare", c("-m", "sh", "-c", shQuote(mount)), stdout = FALSE,
                               stderr = FALSE)) != 0L)
    testthat::skip("cannot mount a private /dev/shm here")
  paste(suppressWarnings(system2("unshare", c("-m", "sh", "-c", shQuote(paste(mount, "&&", run))),
                                 stdout = TRUE)), collapse = "\n")
}
