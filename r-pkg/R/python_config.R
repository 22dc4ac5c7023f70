#' The Python interpreter pyrmap uses, its configuration, the segment directory, and the pyrmap command
#'
#' pyrmap starts Python itself, so it needs an interpreter that can import
#' numpy. `pyrmap_python()` names the one that the run functions and
#' [python_pool()] use; the first of these wins:
#'
#' 1. the `python` argument (of [run_python()] and family, [python_pool()]);
#' 2. `options(pyrmap.python = )`;
#' 3. the environment variable `PYRMAP_PYTHON`;
#' 4. the first of `python3` (on the `PATH`), `/usr/bin/python3`,
#'    `/usr/local/bin/python3` and `python` that can import numpy. pyrmap
#'    tries them in this order once per session (each try starts the
#'    interpreter: a fraction of a second) and remembers the one it found.
#'
#' An explicit choice (1 to 3) is used as it is: when it cannot import
#' numpy, a run fails with an error that says so (class
#' `pyrmap_interpreter_error`), rather than quietly using another
#' interpreter. When no candidate of 4 imports numpy, `"python3"` is used,
#' and the error of a run lists what was tried.
#'
#' `pyrmap_available()` says whether pyrmap can run Python scripts here:
#' `TRUE` when the interpreter `pyrmap_python()` names can import numpy.
#' It never fails, so examples and vignettes use it as their guard (as
#' reticulate's examples use `py_available()`).
#'
#' `pyrmap_config()` looks again (it forgets what was found earlier in the
#' session) and reports, like reticulate's `py_config()`: the interpreter
#' and why it was chosen, its version, numpy's version, the candidates
#' tried, the segment directory and its free space, and the `pyrmap`
#' command. Its `print()` method shows them.
#'
#' `pyrmap_segment_dir()` resolves the segment directory as the run
#' functions and the shared-variable functions do: `segment_dir` (`"RAM"`,
#' `"DISK"` or a path), else `getOption("pyrmap.segment_dir")`, else the
#' environment variable `PYRMAP_SEGMENT_DIR`, else `/dev/shm`; it makes the
#' `"DISK"` directory if needed, checks that no other user can replace files
#' in it, and returns its path. `pyrmap_command()` is the path of the
#' `pyrmap` command installed with this package (the same core, for the
#' shell: `pyrmap run`, `pyrmap ls`, `pyrmap gc`, ...).
#'
#' @param python An explicit choice of interpreter (a path or a command
#'   name), or `NULL`.
#' @param segment_dir An explicit choice of segment directory, or `NULL`.
#' @param x A `pyrmap_config` object.
#' @param ... Not used.
#' @return `pyrmap_python()`, `pyrmap_segment_dir()`, `pyrmap_command()`:
#'   a string. `pyrmap_available()`: `TRUE` or `FALSE`. `pyrmap_config()`: a
#'   list of class `pyrmap_config` with `python`, `chosen_by`,
#'   `python_version`, `numpy_version` (`NA` when numpy cannot be imported,
#'   with the reason in `problem`), `tried` (the candidates tried, and what
#'   became of each), `segment_dir`, `segment_dir_free` and
#'   `segment_dir_size` (bytes), `command` and `version` (this package's).
#' @examples
#' pyrmap_python()
#' pyrmap_available()
#' pyrmap_config()
#' pyrmap_segment_dir()
#' @export
pyrmap_python <- function(python = NULL) .choose_python(python)$python

#' @rdname pyrmap_python
#' @export
pyrmap_available <- function() {
  tryCatch(.imports_numpy(.choose_python(NULL)$python), error = function(e) FALSE)
}

#' @rdname pyrmap_python
#' @export
pyrmap_config <- function(python = NULL, segment_dir = NULL) {
  .forget_python()
  chosen <- .choose_python(python)
  path <- .python_path(chosen$python)
  out <- list(python = chosen$python, chosen_by = chosen$by, python_path = path,
              python_version = NA_character_, numpy_version = NA_character_, problem = "",
              tried = .python_state$tried %||% character(), segment_dir = NA_character_,
              segment_dir_free = NA_real_, segment_dir_size = NA_real_, segment_dir_problem = "",
              command = tryCatch(pyrmap_command(), error = function(e) NA_character_),
              version = as.character(utils::packageVersion("pyrmap")))
  if (!nzchar(path)) {
    out$problem <- sprintf("'%s' is not found", chosen$python)
  } else {
    probe <- paste("import sys; print(sys.version.split()[0])",
                   "import numpy; print(numpy.__version__)", sep = "\n")
    text <- suppressWarnings(tryCatch(
      system2(path, c("-c", shQuote(probe)), stdout = TRUE, stderr = TRUE, timeout = 60),
      error = function(e) conditionMessage(e)))
    status <- attr(text, "status") %||% 0L
    if (length(text) >= 1L && grepl("^[0-9]+\\.[0-9]+", text[[1L]])) out$python_version <- text[[1L]]
    if (identical(as.integer(status), 0L) && length(text) >= 2L) {
      out$numpy_version <- text[[2L]]
    } else {
      out$problem <- paste0("cannot import numpy: ", utils::tail(text, 1L) %||% "")
    }
  }
  dir <- tryCatch(pyrmap_segment_dir(segment_dir), error = function(e) e)
  if (inherits(dir, "error")) {
    out$segment_dir_problem <- conditionMessage(dir)
  } else {
    out$segment_dir <- dir
    space <- .dir_space(dir)
    out$segment_dir_free <- space[["free"]]
    out$segment_dir_size <- space[["size"]]
  }
  structure(out, class = "pyrmap_config")
}

#' @rdname pyrmap_python
#' @export
print.pyrmap_config <- function(x, ...) {
  row <- function(label, value) cat(sprintf("%-16s%s\n", paste0(label, ":"), value))
  row("pyrmap", x$version)
  row("python", if (identical(x$python_path, x$python) || !nzchar(x$python_path)) x$python
                else sprintf("%s (%s)", x$python, x$python_path))
  row("chosen by", x$chosen_by)
  if (length(x$tried)) row("also tried", paste(x$tried, collapse = "; "))
  row("python version", if (is.na(x$python_version)) "unknown" else x$python_version)
  row("numpy", if (is.na(x$numpy_version)) paste("NOT AVAILABLE:", x$problem) else x$numpy_version)
  row("segment dir", if (is.na(x$segment_dir)) paste("unusable:", x$segment_dir_problem)
                     else if (is.na(x$segment_dir_free)) x$segment_dir
                     else sprintf("%s (%s free of %s)", x$segment_dir, .human_bytes(x$segment_dir_free),
                                  .human_bytes(x$segment_dir_size)))
  row("command", if (is.na(x$command)) "not installed" else x$command)
  invisible(x)
}

# ---- internals --------------------------------------------------------------

# What this session found: `found` (the probed interpreter's path, NA when
# none; NULL before the first look), `tried` (what the look found of each
# candidate it passed over), `works` (path -> can it import numpy).
.python_state <- new.env(parent = emptyenv())
.python_state$works <- list()

.python_candidates <- c("python3", "/usr/bin/python3", "/usr/local/bin/python3", "python")

.forget_python <- function() {
  .python_state$found <- NULL
  .python_state$tried <- NULL
  .python_state$works <- list()
}

# The interpreter and what chose it (see ?pyrmap_python).
.choose_python <- function(python) {
  if (!is.null(python)) {
    .check_scalar_string(python, "python")
    return(list(python = python, by = "the python argument"))
  }
  opt <- getOption("pyrmap.python")
  if (!is.null(opt)) {
    .check_scalar_string(opt, "options(pyrmap.python)")
    return(list(python = opt, by = "options(pyrmap.python)"))
  }
  env <- Sys.getenv("PYRMAP_PYTHON")
  if (nzchar(env)) return(list(python = env, by = "the environment variable PYRMAP_PYTHON"))
  found <- .found_python()
  if (is.na(found))
    return(list(python = "python3", by = sprintf("none of %s imports numpy",
                                                 paste(.python_candidates, collapse = ", "))))
  list(python = found, by = sprintf("the first of %s that imports numpy",
                                    paste(.python_candidates, collapse = ", ")))
}

# The path of `python` (a path, or a name looked up on PATH); "" if none.
.python_path <- function(python) {
  path <- if (grepl("/", python, fixed = TRUE)) python else unname(Sys.which(python))
  if (nzchar(path) && file.exists(path)) path else ""
}

# Whether `python` starts and imports numpy (remembered for the session).
.imports_numpy <- function(python) {
  known <- .python_state$works[[python]]
  if (!is.null(known)) return(known)
  path <- .python_path(python)
  ok <- nzchar(path) && identical(as.integer(suppressWarnings(tryCatch(
    system2(path, c("-c", shQuote("import numpy")), stdout = FALSE, stderr = FALSE, timeout = 60),
    error = function(e) 1L))), 0L)
  .python_state$works[[python]] <- ok
  ok
}

# The first candidate that imports numpy (its path), NA if none; looked for
# once per session.
.found_python <- function() {
  if (!is.null(.python_state$found)) return(.python_state$found)
  tried <- character()
  seen <- character()
  found <- NA_character_
  for (cand in .python_candidates) {
    path <- .python_path(cand)
    if (!nzchar(path)) {
      tried <- c(tried, sprintf("%s: not found", cand))
      next
    }
    real <- normalizePath(path, mustWork = FALSE)
    if (real %in% seen) next
    seen <- c(seen, real)
    if (.imports_numpy(path)) {
      found <- path
      break
    }
    tried <- c(tried, sprintf("%s: cannot import numpy", if (identical(cand, path)) cand
                                                        else sprintf("%s (%s)", cand, path)))
  }
  .python_state$found <- found
  .python_state$tried <- tried
  found
}

# The interpreter error's advice: how to choose, and what the look found.
.interpreter_advice <- function() {
  msg <- paste0("Choose the interpreter with python = , options(pyrmap.python = ) ",
                "or the environment variable PYRMAP_PYTHON (see ?pyrmap_python).")
  found <- .python_state$found
  if (!is.null(found) && is.na(found) && length(.python_state$tried))
    msg <- paste0(msg, "\npyrmap looked for an interpreter that imports numpy: ",
                  paste(.python_state$tried, collapse = "; "), ".")
  msg
}

# Free and total bytes of the file system holding `dir` (POSIX df).
.dir_space <- function(dir) {
  out <- suppressWarnings(tryCatch(system2("df", c("-Pk", shQuote(dir)), stdout = TRUE, stderr = FALSE),
                                   error = function(e) character()))
  fields <- if (length(out) >= 2L) strsplit(trimws(out[[length(out)]]), "[[:space:]]+")[[1L]] else character()
  if (length(fields) < 4L) return(c(free = NA_real_, size = NA_real_))
  c(free = as.numeric(fields[[4L]]) * 1024, size = as.numeric(fields[[2L]]) * 1024)
}

.human_bytes <- function(n) {
  units <- c("B", "KiB", "MiB", "GiB", "TiB")
  u <- 1L
  while (n >= 1024 && u < length(units)) {
    n <- n / 1024
    u <- u + 1L
  }
  if (u == 1L) sprintf("%.0f B", n) else sprintf("%.1f %s", n, units[[u]])
}
