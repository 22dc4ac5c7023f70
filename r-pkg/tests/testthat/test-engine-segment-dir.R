# memApply()/memLapply() on pyrmap's own workers with a segment directory
# other than /dev/shm: the call's segments go there, the workers find the
# pages there (X and VARS by name, VARS as views), FUN's own
# retrieveViews() looks there, and nothing is left behind.

ms_shm_at_start <- shm_snapshot()

call_files <- function(d) list.files(d, "^pyrmap-.*-(call|out|res-[0-9]+)$", all.files = TRUE)

test_that("the engine's calls are made in the chosen segment directory and leave nothing there", {
  d <- private_dir()
  on.exit(unlink(d, recursive = TRUE), add = TRUE)
  old <- options(pyrmap.segment_dir = d)
  on.exit(options(old), add = TRUE)
  ns <- sprintf("engine-segdir-%d", Sys.getpid())
  X <- matrix(as.numeric(1:60), 6)
  registerVariables(ns, list(X = X, w = c(10, 20)))
  on.exit(try(releaseVariables(ns, c("X", "w")), silent = TRUE), add = TRUE, after = FALSE)
  shm_before <- call_files("/dev/shm")

  # X and VARS by name, and FUN's own retrieveViews(), from the workers.
  res <- memApply("X", 2, function(v, w) sum(v) * w[[1L]] + pyrmap::retrieveViews(ns, "w")$w[[2L]],
                  NAMESPACE = ns, VARS = "w", MAX.CORES = 2)
  expect_identical(res, as.list(colSums(X) * 10 + 20))

  # While a call with side data runs, its segment is in `d`, not in
  # /dev/shm. (FUN carries d, shm_before and call_files in its environment.)
  count <- local({
    d <- d
    shm_before <- shm_before
    call_files <- call_files
    function(i, z) c(length(call_files(d)), length(setdiff(call_files("/dev/shm"), shm_before)))
  })
  seen <- memLapply(1:4, count, VARS = list(z = 0), MAX.CORES = 2, FUN.VALUE = c(0, 0))
  expect_identical(seen, matrix(rep(c(1, 0), 4), 2))
  # A small call without side data goes in the engine's call area, which
  # has no name; the area (each worker's descriptor 6) is a file of `d`.
  seen <- memLapply(1:4, local({ count <- count; function(i) count(i) }), MAX.CORES = 2, FUN.VALUE = c(0, 0))
  expect_identical(seen, matrix(rep(c(0, 0), 4), 2))
  areas <- unlist(memLapply(1:2, function(i) Sys.readlink("/proc/self/fd/6"), MAX.CORES = 2))
  expect_true(all(startsWith(areas, paste0(normalizePath(d), "/"))), label = paste(areas, collapse = ", "))

  # A FUN.VALUE result too large for the call segment: a segment of its own
  # in `d`, returned as a view; removed when the call is over.
  big <- memLapply(seq_len(3e5), function(i) i + 0.5, MAX.CORES = 2, FUN.VALUE = 0)
  expect_identical(big, seq_len(3e5) + 0.5)
  expect_identical(call_files(d), character(0))
  expect_identical(setdiff(call_files("/dev/shm"), shm_before), character(0))
  rm(big)

  releaseVariables(ns, c("X", "w"))
  expect_identical(pyrmap_files(d), character(0))

  # Back to /dev/shm: the workers follow the call's directory, not the last one.
  options(pyrmap.segment_dir = NULL)
  where <- memLapply(1:2, function(i) getOption("pyrmap.segment_dir"), MAX.CORES = 2)
  expect_identical(unique(unlist(where)), pyrmap_segment_dir())
  ms_note_engine()
})

test_that("a segment directory the engine's call cannot use is an error naming it, and the engine goes on", {
  d <- private_dir()
  on.exit(unlink(d, recursive = TRUE), add = TRUE)
  Sys.chmod(d, "0777", use_umask = FALSE)  # writable by others, not sticky: refused
  old <- options(pyrmap.segment_dir = d)
  err <- tryCatch(memLapply(1:3, function(i) i, MAX.CORES = 2), error = function(e) e)
  options(old)
  expect_s3_class(err, "pyrmap_error")
  expect_match(conditionMessage(err), d, fixed = TRUE)
  expect_identical(pyrmap_files(d), character(0))
  expect_identical(memLapply(1:3, function(i) i * 2, MAX.CORES = 2), list(2, 4, 6))
  ms_note_engine()
})

test_that("the end of the file leaves no worker and no segment", {
  ms_expect_clean_end(ms_shm_at_start)
})

test_that("the call's segment directory follows PYRMAP_SEGMENT_DIR and the option from one call to the next", {
  # (memApply keeps the directory it resolved for as long as the choice is
  # the same: a changed choice must be seen at the next call.)
  d <- private_dir()
  on.exit(unlink(d, recursive = TRUE), add = TRUE)
  old <- options(pyrmap.segment_dir = NULL)
  on.exit(options(old), add = TRUE)
  where <- function() unique(unlist(memLapply(1:2, function(i) getOption("pyrmap.segment_dir"), MAX.CORES = 2)))
  first <- where()
  Sys.setenv(PYRMAP_SEGMENT_DIR = d)
  on.exit(Sys.unsetenv("PYRMAP_SEGMENT_DIR"), add = TRUE)
  expect_identical(where(), pyrmap_segment_dir())
  expect_false(identical(where(), first))
  Sys.unsetenv("PYRMAP_SEGMENT_DIR")
  expect_identical(where(), first)
  options(pyrmap.segment_dir = d)
  expect_identical(where(), pyrmap_segment_dir())
  options(pyrmap.segment_dir = NULL)
  expect_identical(where(), first)
  ms_note_engine()
})
