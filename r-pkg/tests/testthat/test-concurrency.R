# 8 R processes calling run_python at the same time each get their own
# answer, and none leaves a segment.

test_that("8 concurrent R processes each get their own answer", {
  skip_on_os(c("windows", "mac", "solaris"))
  dir <- tempfile("barrier")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE), add = TRUE)
  n <- 8L
  inputs <- lapply(seq_len(n), function(i) {
    if (i %% 2L == 0L) matrix(i * 1e6 + seq_len(1000 * i), ncol = i) else i * 1000L + seq_len(5000 + i)
  })
  # Every child's script waits at a barrier until all 8 are running, so the
  # calls overlap for sure.
  res <- parallel::mclapply(seq_len(n), function(i) {
    r <- tryCatch(run_python(inputs[[i]], py("barrier.py"), args = c(dir, n, "60")),
                  error = function(e) e)
    list(pid = Sys.getpid(), result = r,
         segments = list.files("/dev/shm", sprintf("^pyrmap-[0-9]+-%d-", Sys.getpid())))
  }, mc.cores = n, mc.preschedule = FALSE)
  pids <- vapply(res, function(r) r$pid, 1)
  expect_length(unique(pids), n)
  expect_false(Sys.getpid() %in% pids)
  for (i in seq_len(n)) {
    if (inherits(res[[i]]$result, "error"))
      fail(paste("process", i, "failed:", conditionMessage(res[[i]]$result)))
    expect_identical(res[[i]]$result, inputs[[i]] * 2L, label = paste("the result of process", i))
    expect_identical(res[[i]]$segments, character(0))
    expect_identical(segments_of(pids[[i]]), character(0))
  }
  t <- do.call(rbind, lapply(list.files(dir, "\\.times$", full.names = TRUE), function(f) scan(f, quiet = TRUE)))
  expect_equal(nrow(t), n)
  expect_lt(max(t[, 1]), min(t[, 2]))  # all 8 scripts were running at one moment
})

test_that("the processes' results stay apart under repeated concurrent calls", {
  skip_on_os(c("windows", "mac", "solaris"))
  res <- parallel::mclapply(seq_len(8), function(i) {
    ok <- logical(2)
    for (k in 1:2) {
      x <- as.numeric(i * 100 + k) + seq_len(1e5)
      ok[k] <- identical(run_python(x, py("twice.py")), x * 2)
    }
    list(pid = Sys.getpid(), ok = ok)
  }, mc.cores = 8, mc.preschedule = FALSE)
  for (r in res) {
    expect_identical(r$ok, rep(TRUE, 2))
    expect_identical(segments_of(r$pid), character(0))
  }
})
