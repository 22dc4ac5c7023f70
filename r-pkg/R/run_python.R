#' Run Python scripts over R data in shared memory
#'
#' `run_python()` writes `data` once into a shared-memory segment, starts the
#' Python interpreter on `python_script_path`, and returns the script's result.
#' Python sees the data as a read-only 'numpy' array without a copy (an R
#' matrix arrives as a 2-D column-major array); the result comes back as an
#' ALTREP view of the result segment, also without a copy. The view stays
#' valid after the call and after [gc()], is read-only (modifying it makes an
#' ordinary private copy), and its memory is freed when R collects it.
#'
#' The scripts are the seed's: decorate a function taking the input array with
#' `@process_via_mmap` (from the Python package `pyrmap`, which is found
#' automatically) and call it with no arguments under
#' `if __name__ == "__main__":`. Alternatively name a function of the script
#' with `fun` (or write `"script.py::name"`); it is called with the array.
#'
#' @param data A numeric (double), integer, logical or raw vector, matrix or
#'   array (or a `bit64::integer64` vector); a character vector, factor,
#'   Date or POSIXct; a data.frame; or a list of any of these (see "Data
#'   frames, lists, strings, factors, dates and NA"). Views returned by
#'   pyrmap and registered variables are handed to Python without any copy.
#'   Other classed vectors (difftime, ts, ...) are refused, naming the
#'   class; `unclass()` passes their bare numbers.
#' @param python_script_path Path of the Python script.
#' @param script_paths Paths of the Python scripts.
#' @param dtype The element type Python receives: `"int32"`, `"int64"`,
#'   `"float32"`, `"float64"`, `"uint8"` or `"bool"`. By default it follows
#'   the data: double -> float64, integer -> int32, logical -> bool, raw ->
#'   uint8, integer64 -> int64. Values that the dtype cannot hold exactly
#'   (300 as uint8, 3e9 as int32, 1.5 as an integer type) are an error. `NA`
#'   arrives as NaN in float64 and float32 (and comes back as `NA`). With
#'   the default dtype, `NA` in an integer, logical or integer64 vector
#'   arrives masked (a `numpy.ma` masked array); asked for explicitly, the
#'   other dtypes cannot represent it, so `NA` there is an error naming its
#'   position. `dtype` applies to one vector; with a data.frame or list it
#'   is an error.
#' @param ... Not used; named arguments must be spelled out.
#' @param fun Name of a function in the script to call with the input instead
#'   of running the script as `__main__` (R reserves the word `function`, hence
#'   `fun`). For several scripts: one name, or one per script (`NA` for none).
#' @param timeout Seconds a script may run before it is killed (`NULL`: no
#'   limit).
#' @param python The Python interpreter (a path or a command name). Default:
#'   `getOption("pyrmap.python")`, else the environment variable
#'   `PYRMAP_PYTHON`, else `"python3"`. It must be able to import numpy.
#' @param args Character vector of extra arguments for the scripts
#'   (`sys.argv[1:]`).
#' @param jobs How many scripts run at once.
#' @param keep_intermediate Return every stage's result, not only the last.
#' @param pool A pool of warm Python workers from [python_pool()]: the call
#'   runs there, without starting an interpreter. `NULL` (default): the
#'   session pool when `options(pyrmap.pool = TRUE)` (or a number of
#'   workers) is set, else a one-shot run; `FALSE`: a one-shot run. See
#'   [python_pool()] for how scripts run in a worker.
#' @param segment_dir Where the call's shared-memory segments are made:
#'   `"RAM"` (`/dev/shm`), `"DISK"` (a private directory on a disk-backed
#'   file system, for data larger than `/dev/shm` -- a container's 64 MB
#'   `/dev/shm` -- or than RAM: `pyrmap-<uid>` in `/var/tmp`, else `$TMPDIR`,
#'   else `/tmp`, made with mode 0700), or the path of a directory that only
#'   you can write (or a sticky one such as `/tmp`). Default:
#'   `getOption("pyrmap.segment_dir")`, else the environment variable
#'   `PYRMAP_SEGMENT_DIR`, else `"RAM"`. See [pyrmap_segment_dir()]. (A
#'   pool's workers use the directory chosen when the pool was made.)
#' @param path The seed's (PyRMap's) name of `segment_dir`: `"RAM"` or
#'   `"DISK"` (or a directory). Give one of the two, not both.
#' @param pandas How data.frames reach Python: `TRUE` as `pandas.DataFrame`
#'   (an error naming the interpreter when pandas cannot be imported),
#'   `FALSE` as a `pyrmap.Frame` (a dict of numpy arrays), `NULL` (default:
#'   `getOption("pyrmap.pandas")`, else pandas when it can be imported).
#' @param python_scripts_paths,initial_data,required_intermediate_results The
#'   seed's names of `script_paths`, `data` and `keep_intermediate`, accepted
#'   so that its calls run unchanged. Giving both spellings of one argument
#'   is an error.
#'
#' @return `run_python()`: the result. Results of dtype float64, int32 and
#'   uint8 are zero-copy views; float32 and bool results become double and
#'   logical vectors; int64 results come back as double when every value is
#'   within 2^53, else as `bit64::integer64` (an error if bit64 is not
#'   installed). -2^31 in an int32 result and -2^63 in an int64 result are the
#'   NA that `data` sent when `data` held NA; otherwise they are values: such
#'   an int32 result comes back as double (exact), -2^63 as the double -2^63,
#'   and an int64 result that would need integer64 for other values is an
#'   error naming the position and the value (integer64 cannot hold -2^63).
#'   Results with two or more dimensions carry `dim`; names and dimnames of
#'   `data` are kept when the result has its shape.
#'   `run_python_shared_data()`: a list with one result per script, named
#'   after the scripts. `run_python_pipeline()`: the last stage's result, or
#'   with `keep_intermediate = TRUE` a list of every stage's result, named
#'   after the scripts.
#'
#' @section Data frames, lists, strings, factors, dates and NA: A list
#'   (or data.frame) travels as one table block: numeric, integer, logical
#'   and raw columns stay zero-copy views on both sides; strings are copied
#'   once (R keeps them in its own string cache, so Python gets `str`
#'   objects). A named list calls the function with keyword arguments
#'   (`run_python(list(X = X, y = y), "fit.py", fun = "fit")` calls
#'   `fit(X=..., y=...)`), an unnamed one with positional arguments.
#'
#'   In Python (pandas / without pandas): a data.frame is a
#'   `pandas.DataFrame` / a `pyrmap.Frame` (a dict of column name -> array,
#'   with `.index`, the row names or `None`); factor -> `Categorical` /
#'   `pyrmap.Categorical` (codes shared, levels strings, ordered kept); Date
#'   -> `datetime64[ns]` / `datetime64[D]`; POSIXct -> `datetime64[ns]` with
#'   its time zone (a POSIXct in R's local time or without a tzone comes
#'   back as it went); character -> `str`; integer64 -> int64; row and
#'   column names kept. `NA` in integer, logical and character columns is a
#'   missing value -- pandas' nullable `Int32`/`boolean` dtypes or `None`,
#'   or a `numpy.ma` mask -- never -2147483648. Doubles keep R's `NA` and
#'   `NaN` bit patterns (a column returned unchanged comes back identical);
#'   pandas' float64 cannot tell them apart (`isna()` is true for both), and
#'   what numpy computes from either is NaN or NA as the hardware propagates
#'   it (as in R's own arithmetic); a pandas `Float64` result tells them
#'   apart (masked -> `NA`, NaN stays NaN).
#'
#'   Results: a dict -> a named list, a tuple or list -> a list, a
#'   DataFrame or `pyrmap.Frame` -> a data.frame (numeric columns as views;
#'   a column returned unchanged is the input's own R vector),
#'   a Series -> a vector with names, strings -> character, Categorical ->
#'   factor, `datetime64[D]` -> Date, other `datetime64` -> POSIXct (UTC when
#'   naive), masked values and pandas' missing values -> `NA`; int64 -> double, or `bit64::integer64` when it came from one (pandas'
#'   `Int64`) or a value is beyond 2^53.
#'   Whatever cannot be exact -- an object column holding other than
#'   strings, date-times of mixed time zones, a dtype R lacks, a fraction of
#'   a day in a Date, a list column -- is an error naming the column and the
#'   type. The same holds with `pool =`, and between pipeline stages.
#'
#' @section The seed's argument names: Calls written for the seed (PyRMap),
#'   such as `run_python(data, python_script_path, dtype, path = "DISK")`,
#'   `run_python_shared_data(data = , python_scripts_paths = , dtype = , path = )`
#'   and `run_python_pipeline(initial_data = , python_scripts_paths = ,
#'   dtype = , path = , required_intermediate_results = TRUE)`, run
#'   unchanged: `path` is `segment_dir`, `python_scripts_paths` is
#'   `script_paths`, `initial_data` is `data` and
#'   `required_intermediate_results` is `keep_intermediate`.
#'
#' @section Errors: Failures are conditions of class `pyrmap_error` and one
#'   of: `pyrmap_python_error` (the script raised; the message holds the
#'   exception and the end of its traceback, the full traceback is in the
#'   field `traceback`), `pyrmap_script_error` (the script exited or was
#'   killed without a result), `pyrmap_timeout_error`,
#'   `pyrmap_script_not_found`, `pyrmap_interpreter_error` (Python missing, or
#'   without numpy), `pyrmap_usage_error` (unsupported data, unknown dtype,
#'   values that do not fit, both spellings of an argument),
#'   `pyrmap_protocol_error`, `pyrmap_system_error` (for example a segment
#'   directory too small for the data: the message names the size needed,
#'   the size free and `path = "DISK"` / `segment_dir =`). Ctrl-C during a call stops the Python
#'   process and signals a condition of class `c("pyrmap_interrupt",
#'   "interrupt")`, which `try()` does not swallow. Whatever happens, no
#'   shared-memory segment of the call is left behind.
#'
#' @section Memory: A result view holds its shared memory until R collects it.
#'   A view is a small R object, so R's own collector sees no reason to run
#'   while unreachable views pin gigabytes. pyrmap therefore counts the bytes
#'   of the mappings that live views hold (once per mapping: the column views
#'   of a matrix view share its mapping), and before it makes a view of a new
#'   mapping it collects (`R_gc()`, in the process that holds the views) when
#'   the bytes of the mappings first seen since its last collection, the new
#'   one included, would exceed a bound: the process's anonymous resident
#'   memory (`RssAnon`: R's heap, mostly), at least 64 MiB, and at most a
#'   quarter of the memory the system has available (`MemAvailable`). So a loop
#'   `for (i in 1:n) y <- run_python(x, script)` keeps at most two results
#'   mapped (the new one and the one `y` still held while the call ran), and
#'   unreachable views never pin more than about R's heap — the slack R's
#'   collector allows its own heap.
#'
#' @section Python warnings: A script's Python warnings (`warnings.warn()`)
#'   become R warnings of class `pyrmap_python_warning` once the call
#'   returns, so `suppressWarnings()`, `withCallingHandlers()` and
#'   `options(warn = )` apply to them.
#'
#' @examples
#' if (pyrmap_available()) {
#'   # Example scripts installed with the package.
#'   ex <- function(name) system.file("examples", name, package = "pyrmap")
#'   m <- matrix(as.numeric(1:6), 2)
#'   run_python(m, ex("plus_one.py"))               # a 2 x 3 view, no copy
#'   run_python(m, ex("describe.py"), fun = "spread")  # call one function
#'   run_python_shared_data(m, ex(c("stats_mean.py", "stats_max.py")), jobs = 2)
#'   run_python_pipeline(m, ex(c("scale.py", "square.py")), keep_intermediate = TRUE)
#'
#'   # A script of your own.
#'   script <- tempfile(fileext = ".py")
#'   writeLines(c("from pyrmap import process_via_mmap",
#'                "@process_via_mmap",
#'                "def process(data):",
#'                "    return data * 2",
#'                "if __name__ == '__main__':",
#'                "    process()"), script)
#'   run_python(1:3, script)
#'
#'   # Errors are classed conditions.
#'   tryCatch(run_python(m, script, dtype = "uint8", fun = "nope"),
#'            pyrmap_usage_error = function(e) conditionMessage(e))
#'   unlink(script)
#' }
#' @export
run_python <- function(data, python_script_path, dtype = NULL, ..., fun = NULL,
                       timeout = NULL, python = NULL, args = character(), pool = NULL,
                       segment_dir = NULL, path = NULL, pandas = NULL) {
  .no_dots(...)
  .check_scalar_string(python_script_path, "python_script_path")
  .run(data, python_script_path, "run", dtype, fun, timeout, python, args,
       jobs = 1L, keep_intermediate = FALSE, pool = pool,
       segment_dir = .segment_dir_arg(segment_dir, path), pandas = pandas)[[1L]]
}

#' @rdname run_python
#' @export
run_python_shared_data <- function(data, script_paths, dtype = NULL, ..., jobs = 1L,
                                   fun = NULL, timeout = NULL, python = NULL,
                                   args = character(), pool = NULL, segment_dir = NULL,
                                   path = NULL, python_scripts_paths, pandas = NULL) {
  .no_dots(...)
  if (!missing(python_scripts_paths)) {
    if (!missing(script_paths)) .both_spellings("script_paths", "python_scripts_paths")
    script_paths <- python_scripts_paths
  }
  if (missing(script_paths)) .usage_error("script_paths is missing: give the paths of the Python scripts")
  if (missing(data)) .usage_error("data is missing")
  res <- .run(data, script_paths, "shared", dtype, fun, timeout, python, args,
              jobs = jobs, keep_intermediate = FALSE, pool = pool,
              segment_dir = .segment_dir_arg(segment_dir, path), pandas = pandas)
  names(res) <- .result_names(script_paths)
  res
}

#' @rdname run_python
#' @export
run_python_pipeline <- function(data, script_paths, dtype = NULL, ...,
                                keep_intermediate = FALSE, fun = NULL, timeout = NULL,
                                python = NULL, args = character(), pool = NULL,
                                segment_dir = NULL, path = NULL, initial_data,
                                python_scripts_paths, required_intermediate_results,
                                pandas = NULL) {
  .no_dots(...)
  if (!missing(initial_data)) {
    if (!missing(data)) .both_spellings("data", "initial_data")
    data <- initial_data
  }
  if (!missing(python_scripts_paths)) {
    if (!missing(script_paths)) .both_spellings("script_paths", "python_scripts_paths")
    script_paths <- python_scripts_paths
  }
  if (!missing(required_intermediate_results)) {
    if (!missing(keep_intermediate)) .both_spellings("keep_intermediate", "required_intermediate_results")
    keep_intermediate <- required_intermediate_results
  }
  if (missing(data)) .usage_error("data is missing")
  if (missing(script_paths)) .usage_error("script_paths is missing: give the paths of the Python scripts")
  if (!isTRUE(keep_intermediate) && !isFALSE(keep_intermediate))
    .usage_error("keep_intermediate must be TRUE or FALSE")
  res <- .run(data, script_paths, "pipeline", dtype, fun, timeout, python, args,
              jobs = 1L, keep_intermediate = keep_intermediate, pool = pool,
              segment_dir = .segment_dir_arg(segment_dir, path), pandas = pandas)
  if (!keep_intermediate) return(res[[1L]])
  names(res) <- .result_names(script_paths)
  res
}

#' @rdname pyrmap_python
#' @export
pyrmap_segment_dir <- function(segment_dir = NULL) {
  info <- .pyrmap_segment_dir(.segment_dir(segment_dir))
  if (!isTRUE(info$ok)) .raise(info, .user_call())
  info$dir
}

#' @rdname pyrmap_python
#' @export
pyrmap_command <- function() {
  path <- system.file("bin", "pyrmap", package = "pyrmap")
  if (!nzchar(path)) .usage_error("the pyrmap command is not installed with this package")
  path
}

# ---- internals --------------------------------------------------------------

.run <- function(data, scripts, mode, dtype, fun, timeout, python, args, jobs,
                 keep_intermediate, pool = NULL, segment_dir = "", pandas = NULL) {
  if (!is.character(scripts) || length(scripts) == 0L || anyNA(scripts) || !all(nzchar(scripts)))
    .usage_error("script paths must be a non-empty character vector")
  if (!is.null(dtype)) .check_scalar_string(dtype, "dtype")
  if (!is.null(timeout) && (!is.numeric(timeout) || length(timeout) != 1L || is.na(timeout) || timeout < 0))
    .usage_error("timeout must be a single non-negative number of seconds")
  if (!is.numeric(jobs) || length(jobs) != 1L || is.na(jobs) || jobs < 1)
    .usage_error("jobs must be a single number >= 1")
  if (!is.character(args)) .usage_error("args must be a character vector")
  specs <- .with_functions(scripts, fun)
  .need_rcpp()
  pool <- .pool_for(pool, python)
  info <- .pyrmap_run(data, specs, mode, if (is.null(dtype)) "" else dtype,
                      pyrmap_python(python), .python_package_dir(),
                      # 0 means "no limit" to the core; so does Inf here.
                      if (is.null(timeout) || is.infinite(timeout)) 0 else as.numeric(timeout),
                      # jobs = Inf: all scripts at once (as.integer(Inf) would be NA).
                      as.integer(min(jobs, length(scripts))),
                      keep_intermediate, args, .bit64_available(),
                      if (is.null(pool)) NULL else pool$xp, segment_dir, .tables_mode(pandas))
  .python_warnings(info$warnings, sys.call(-1L))
  if (!isTRUE(info$ok)) .raise(info, sys.call(-1L))
  res <- info$results
  if (.has_integer64(res)) loadNamespace("bit64")
  res
}

# Whether x (or an element of x, at any depth) is an integer64.
.has_integer64 <- function(x) {
  if (inherits(x, "integer64")) return(TRUE)
  if (is.list(x)) for (el in x) if (.has_integer64(el)) return(TRUE)
  FALSE
}

# How data frames reach Python: `pandas` (TRUE, FALSE or NULL), else
# getOption("pyrmap.pandas"), else NULL = auto (pandas when it can be
# imported). The header's codes: 0 auto, 1 pandas, 2 numpy only.
.tables_mode <- function(pandas) {
  if (is.null(pandas)) pandas <- getOption("pyrmap.pandas")
  if (is.null(pandas)) return(0L)
  if (!is.logical(pandas) || length(pandas) != 1L)
    .usage_error("pandas must be TRUE (data frames as pandas.DataFrame), FALSE (dicts of numpy arrays) or NULL (pandas when it can be imported)")
  if (is.na(pandas)) 0L else if (pandas) 1L else 2L
}

# "script.py" + fun "f" -> "script.py::f".
.with_functions <- function(scripts, fun) {
  if (is.null(fun)) return(scripts)
  # A bare NA (logical) means "no function", as NA_character_ does.
  if (is.logical(fun) && length(fun) > 0L && all(is.na(fun))) fun <- as.character(fun)
  if (!is.character(fun) || !(length(fun) %in% c(1L, length(scripts))))
    .usage_error("fun must be one function name, or one per script")
  fun <- rep_len(fun, length(scripts))
  has <- !is.na(fun) & nzchar(fun)
  if (any(has & grepl("::", scripts, fixed = TRUE)))
    .usage_error("give the function either in fun or as 'script.py::name', not both")
  ifelse(has, paste0(scripts, "::", fun), scripts)
}

# The scripts' Python warnings as R warnings (class pyrmap_python_warning),
# so that suppressWarnings() and options(warn = ) apply to them.
.python_warnings <- function(texts, call) {
  if (length(texts)) call <- .user_call(call)
  for (text in texts)
    warning(structure(class = c("pyrmap_python_warning", "warning", "condition"),
                      list(message = text, call = call)))
}

.result_names <- function(scripts) make.unique(basename(scripts))

# The segment directory choice for the core: `choice` when given, else
# getOption("pyrmap.segment_dir"), else "" (the core then reads
# PYRMAP_SEGMENT_DIR, else uses /dev/shm).
.segment_dir <- function(choice = NULL) {
  if (is.null(choice)) {
    choice <- getOption("pyrmap.segment_dir")
    if (is.null(choice)) return("")
    .check_scalar_string(choice, "options(pyrmap.segment_dir)")
    return(choice)
  }
  .check_scalar_string(choice, "segment_dir")
  choice
}

# segment_dir, or the seed's spelling `path`; not both.
.segment_dir_arg <- function(segment_dir, path) {
  if (!is.null(segment_dir) && !is.null(path)) .both_spellings("segment_dir", "path")
  if (!is.null(path)) {
    .check_scalar_string(path, "path")
    return(path)
  }
  .segment_dir(segment_dir)
}

.both_spellings <- function(ours, seeds) {
  .usage_error(sprintf("give either %s or %s (the seed's name for it), not both", ours, seeds))
}

# (Looked up once: system.file() reads the package's metadata each time,
# which costs more than a warm pool's whole call.)
.python_package_dir <- local({
  dir <- NULL
  function() {
    if (is.null(dir)) dir <<- system.file("python", package = "pyrmap")
    dir
  }
})

.bit64_available <- local({
  known <- NULL
  function() {
    if (is.null(known)) known <<- nzchar(system.file(package = "bit64"))
    known
  }
})

.no_dots <- function(...) {
  if (...length() > 0L) {
    nm <- names(list(...))
    what <- if (is.null(nm) || !all(nzchar(nm))) "unnamed arguments" else paste(sQuote(nm), collapse = ", ")
    .usage_error(paste("unused argument(s):", what))
  }
}

.check_scalar_string <- function(x, what) {
  if (!is.character(x) || length(x) != 1L || is.na(x) || !nzchar(x))
    .usage_error(sprintf("%s must be a single non-empty string", what))
}

.usage_error <- function(message) {
  caller <- sys.call(-1L)
  .raise(list(kind = "usage", message = message), .user_call(caller))
}

# The call of the outermost exported function of this package on the stack
# (what the user typed), so that a condition names run_python(...) rather
# than the helper that checked an argument; `default` if there is none.
.user_call <- function(default = NULL) {
  ns <- environment(.user_call)
  exported <- mget(getNamespaceExports(ns), envir = ns, mode = "function",
                   ifnotfound = list(NULL))
  for (i in seq_len(sys.nframe() - 1L)) {
    f <- sys.function(i)
    for (e in exported) if (identical(f, e)) return(sys.call(i))
  }
  default
}

.condition_class <- function(info) {
  switch(info$kind,
    usage = "pyrmap_usage_error",
    not_found = "pyrmap_script_not_found",
    script = if (nzchar(info$python_type %||% "")) "pyrmap_python_error" else "pyrmap_script_error",
    timeout = "pyrmap_timeout_error",
    protocol = "pyrmap_protocol_error",
    system = "pyrmap_system_error",
    interpreter = "pyrmap_interpreter_error",
    interrupt = "pyrmap_interrupt",
    not_registered = "pyrmap_not_registered",
    "pyrmap_other_error")
}

# Signals the core's error `info` as a classed condition. Its call is the
# outermost call of an exported function on the stack -- what the user
# typed, run_python(...) or memApply(...), never a helper of ours -- and
# `call` only when there is none.
.raise <- function(info, call = NULL) {
  call <- .user_call(call)
  msg <- .valid_utf8(info$message)
  if (identical(info$kind, "interpreter")) msg <- paste0(msg, "\n", .interpreter_advice())
  # An interrupt stays an interrupt (caught by tryCatch(interrupt = ), not
  # by try() or tryCatch(error = )), after the core has cleaned up.
  base <- if (identical(info$kind, "interrupt")) c("interrupt", "condition")
          else c("pyrmap_error", "error", "condition")
  cond <- structure(
    class = c(.condition_class(info), base),
    list(message = msg, call = call, script = info$script %||% "",
         python_type = info$python_type %||% "", traceback = .valid_utf8(info$traceback %||% ""),
         exit_status = info$exit_status %||% NA_integer_, signal = info$signal %||% NA_integer_))
  stop(cond)
}

# Text that R's string functions accept: invalid UTF-8 bytes become <xx>,
# and the result is marked UTF-8.
.valid_utf8 <- function(x) {
  x <- enc2utf8(as.character(x))
  bad <- !is.na(x) & !validUTF8(x)
  if (any(bad)) x[bad] <- iconv(x[bad], "UTF-8", "UTF-8", sub = "byte")
  Encoding(x) <- "UTF-8"
  x
}

`%||%` <- function(a, b) if (is.null(a)) b else a
