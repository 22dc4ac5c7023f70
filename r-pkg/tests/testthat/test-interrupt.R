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

# Ctrl-C during memApply(): a terminal sends SIGINT to its whole foreground
# process group, the PSOCK workers included. The call must end promptly with
# an interrupt, leave no page behind, and leave a cluster that works (the
# user's own, or the default one, restarted if need be).

# Runs `code` (which writes its pid to `dir`/pid) in an Rscript that leads a
# process group of its own (setsid), as a shell's job does; returns the log.
rscript_own_group <- function(code, dir) {
  file <- file.path(dir, "child.R")
  log <- file.path(dir, "child.log")
  writeLines(code, file)
  env <- c(sprintf("R_LIBS=%s", shQuote(paste(.libPaths(), collapse = ":"))),
           sprintf("PYRMAP_PYTHON=%s", shQuote(real_python())))
  system2("setsid", c(shQuote(file.path(R.home("bin"), "Rscript")), shQuote(file)), env = env,
          stdout = log, stderr = log, wait = FALSE)
  log
}

interrupt_mem_apply <- function(cluster) {
  skip_on_os(c("windows", "mac", "solaris"))
  skip_if(!nzchar(Sys.which("setsid")), "no setsid")
  dir <- tempfile("interrupt-mem")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE), add = TRUE)
  pid_file <- file.path(dir, "pid")
  started <- file.path(dir, "started")
  out_file <- file.path(dir, "out.rds")
  code <- c(
    "library(pyrmap)",
    sprintf("cl <- %s", if (cluster == "user") "parallel::makePSOCKcluster(2)" else "NULL"),
    "X <- matrix(as.numeric(1:40), 10)",
    # FUN says when it runs, then takes far longer than the test waits.
    sprintf("f <- local({ m <- %s; function(v) { file.create(m); Sys.sleep(120); sum(v) } })", deparse(started)),
    sprintf("writeLines(as.character(Sys.getpid()), %s)", deparse(pid_file)),
    "at <- NA",
    "r <- tryCatch(memApply(X, 2, f, CLUSTER = cl, MAX.CORES = 2),",
    "              interrupt = function(e) { at <<- Sys.time(); e })",
    "pages <- grep('^[.]pyrmap[.]', as.character(unlist(pageList())), value = TRUE)",
    "again <- tryCatch(unlist(memApply(X, 2, function(v) sum(v), CLUSTER = cl, MAX.CORES = 2)),",
    "                  error = function(e) conditionMessage(e))",
    sprintf("saveRDS(list(class = class(r), at = at, pages = pages, again = again), %s)", deparse(out_file)),
    "if (!is.null(cl)) parallel::stopCluster(cl)")
  shm0 <- shm_snapshot()
  log <- rscript_own_group(code, dir)
  expect_true(wait_until(function() file.exists(pid_file) && length(readLines(pid_file)) == 1L, 60))
  rpid <- as.integer(readLines(pid_file))
  kill_group <- function() if (proc_alive(rpid)) system2("kill", c("-s", "KILL", "--", paste0("-", rpid)))
  on.exit(kill_group(), add = TRUE)
  expect_true(wait_until(function() file.exists(started), 60),
              label = paste("FUN started; the child's log:", paste(readLines(log), collapse = "\n")))
  Sys.sleep(0.3)  # both workers are in FUN (each was dealt a column at once)
  t_int <- Sys.time()
  system2("kill", c("-s", "INT", "--", paste0("-", rpid)))  # the whole group, as a terminal does
  reported <- wait_until(function() file.exists(out_file), 60)
  expect_true(reported, label = paste("the child reported back; its log:", paste(readLines(log), collapse = "\n")))
  if (!reported) return(invisible())
  out <- readRDS(out_file)
  expect_true("interrupt" %in% out$class)
  # Within a second normally; ten times that for a loaded machine.
  expect_lt(as.numeric(out$at - t_int, units = "secs"), 10)
  expect_identical(out$pages, character(0))
  expect_identical(out$again, c(55, 155, 255, 355))
  expect_true(wait_until(function() !proc_alive(rpid), 30))
  left <- character()
  wait_until(function() {
    left <<- ms_leftovers(shm0, rpid)
    length(left) == 0L
  }, timeout = 10)
  expect_identical(left, character(0))
}

test_that("Ctrl-C during memApply on the user's cluster ends the call, which then works again", {
  interrupt_mem_apply("user")
})

test_that("Ctrl-C during memApply on the default cluster ends the call, which then works again", {
  interrupt_mem_apply("default")
})
