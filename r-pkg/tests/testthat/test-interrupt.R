# Ctrl-C during a call: SIGINT to an R process waiting in run_python() stops
# the Python child, removes the call's segments and returns promptly with a
# pyrmap_interrupt condition (an interrupt, not an error).

test_that("SIGINT to R during run_python ends the child and removes the segments", {
  skip_on_os(c("windows", "mac", "solaris"))
  dir <- tempfile("interrupt")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE), add = TRUE)
  pid_file <- file.path(dir, "pid")
  out_file <- file.path(dir, "out.rds")
  code <- c(
    "library(pyrmap)",
    sprintf("writeLines(as.character(Sys.getpid()), %s)", deparse(pid_file)),
    "t0 <- Sys.time()",
    sprintf("r <- tryCatch(run_python(as.numeric(1:1e6), %s, args = '30'), condition = function(e) e)",
            deparse(py("sleep.py"))),
    "segs <- list.files('/dev/shm', sprintf('^pyrmap-[0-9]+-%d-', Sys.getpid()))",
    "out <- list(class = class(r), message = conditionMessage(r),",
    "            elapsed = as.numeric(Sys.time() - t0, units = 'secs'), segments = segs)",
    sprintf("saveRDS(out, %s)", deparse(out_file)))
  log <- rscript_bg(code, dir)
  expect_true(wait_until(function() file.exists(pid_file) && length(readLines(pid_file)) == 1L, 30))
  rpid <- as.integer(readLines(pid_file))
  kill_r <- function() if (proc_alive(rpid)) tools::pskill(rpid, tools::SIGKILL)
  on.exit(kill_r(), add = TRUE)
  # Wait until the Python child runs and the call's segments exist.
  python_pid <- NA_integer_
  started <- wait_until(function() {
    kids <- children_of(rpid)
    if (length(kids) != 1L) return(FALSE)
    python_pid <<- kids
    # meta-0 and res-0 (the data segment's name goes once Python holds it)
    length(segments_of(rpid)) >= 2L
  }, 30)
  expect_true(started, label = "the child R process started Python")
  expect_true(any(grepl("-meta-0$", segments_of(rpid))))
  Sys.sleep(0.3)  # well inside the 30 s sleep
  t_int <- Sys.time()
  tools::pskill(rpid, tools::SIGINT)
  expect_true(wait_until(function() file.exists(out_file), 20),
              label = paste("the child R process reported back; its log:",
                            paste(readLines(log), collapse = "\n")))
  returned_after <- as.numeric(Sys.time() - t_int, units = "secs")
  out <- readRDS(out_file)
  # An interrupt, not an error: try() and tryCatch(error = ) do not swallow it.
  expect_identical(out$class, c("pyrmap_interrupt", "interrupt", "condition"))
  expect_match(out$message, "interrupted")
  expect_lt(returned_after, 10)
  expect_lt(out$elapsed, 25)
  expect_identical(out$segments, character(0))          # seen by the child itself
  expect_false(proc_alive(python_pid))                   # the Python child is gone
  expect_identical(segments_of(rpid), character(0))      # and seen from outside
  expect_true(wait_until(function() !proc_alive(rpid), 20))
})
