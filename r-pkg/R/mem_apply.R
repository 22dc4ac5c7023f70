#' Parallel apply over shared memory
#'
#' `memApply()` applies `FUN` to the rows (`MARGIN = 1`) or columns
#' (`MARGIN = 2`) of a matrix, and `memLapply()` to the elements of a list, on
#' parallel workers that read the data — and the side data in `VARS` — from
#' one copy in shared memory instead of receiving copies. Names, arguments
#' and defaults are memshare's; `FUN.VALUE` is pyrmap's.
#'
#' `FUN`'s first argument receives the row, column or element; its other
#' arguments are matched by name to `VARS`. A call's data go into one
#' shared-memory segment (a list as one packed table, read by index); the
#' workers take chunks of tasks from a counter in it (chunks shrink as the
#' work runs out, so that uneven tasks balance), and results come back
#' through shared memory, as a list in order. An error in `FUN` stops the
#' call with an R error that names the row/column/element and carries the
#' original message (class `pyrmap_fun_error`; fields `index`,
#' `parent_message`, `parent_class`). Whatever happens, the call's segments
#' are removed and the workers let go of its data when it ends.
#'
#' Without `CLUSTER`, the work runs on pyrmap's own R workers: `MAX.CORES`
#' processes started on the first call (a fraction of a second) and kept for
#' the session (until `MAX.CORES` changes). They wait in shared memory: a
#' call reaches them without any message, and a small call costs well under
#' a millisecond. A worker that dies is started again by the next call. With
#' `CLUSTER`, any `parallel` cluster of this host is used as it is: each
#' worker gets one message per call (the job) and sends one reply at the
#' end; the data and the results travel in shared memory.
#' Progress is reported through progressr when the session has loaded it
#' (silent unless a handler is enabled; see the section Progress).
#'
#' Results are named as [apply()]'s and [lapply()]'s are: by the dimnames
#' of `X` on `MARGIN`, a data.frame's column names, a list's names. With
#' `FUN.VALUE`, a template of each result as
#' [vapply()]'s, the workers write every result straight into one shared
#' vector, and the call returns what `vapply()` returns (a vector for
#' results of length 1, else one column per task; a large one as a view of
#' shared memory, read-only like [retrieveViews()]'s). A result of another
#' type or length is an error naming its element (class `pyrmap_fun_error`,
#' parent class `pyrmap_value_error`); integer and logical results fill a
#' double template, logical ones an integer template.
#'
#' A data.frame `X` whose columns are all double, integer or logical is
#' accepted: with `MARGIN = 2` it is shared as the list of its columns, and
#' `FUN` gets each column as it is (its own type, no matrix copy of the
#' frame); with `MARGIN = 1` it goes through a matrix (`as.matrix(X)`, said
#' once per session in a message). A column of any other type or class (a
#' factor, character, Date, ...) is an error naming the first such column.
#'
#' @section Cost: Without `CLUSTER`, a call posts its job through shared
#'   memory and wakes one worker; the others are woken when the work looks
#'   long enough to be worth them. `FUN` (with its environment) is sent once
#'   per call, not per element; a `FUN` of the global environment or of a
#'   package is kept by the workers while calls repeat it. Elements of a list
#'   of 16 KiB or more, columns of a registered matrix (or of 16 KiB or
#'   more), and `VARS` reach `FUN` as views (no copy); smaller elements as
#'   ordinary vectors. A small call without `VARS` objects (its data and
#'   `FUN` within 256 KiB) goes through an area the workers keep mapped,
#'   with no shared-memory file made or removed: its elements are all
#'   ordinary vectors.
#'
#' @section Progress: Both functions report one progressr step per row,
#'   column or element done, when progressr is loaded (calling
#'   `progressr::handlers()` or `progressr::with_progress()` loads it;
#'   pyrmap does not load it by itself, which spares small calls its cost). progressr shows
#'   nothing until a handler is enabled: in an interactive session, call
#'   `progressr::handlers(global = TRUE)` once and every call shows a bar.
#'   In a script (`Rscript`, `R CMD BATCH`) progressr is also switched off
#'   until `options(progressr.enable = TRUE)`; then choose a handler that
#'   writes to the terminal or log, for example
#'   \preformatted{options(progressr.enable = TRUE)
#'   progressr::handlers(global = TRUE)
#'   progressr::handlers("txtprogressbar")   # or "progress", "cli" if installed
#'   res <- memApply(X, 2, FUN)}
#'   or, for one call only,
#'   `progressr::with_progress(res <- memApply(X, 2, FUN), enable = TRUE)`.
#'   The bar is drawn on stderr.
#'
#' @section Across hosts: When some of `CLUSTER`'s workers do not share
#'   this session's shared memory (other hosts, containers), the workers are
#'   grouped by the memory they share (each group found by a token page
#'   its workers can read), and each group other than this session's gets
#'   one copy of the call's data, which one of its workers registers there
#'   under the same names; the others map it, and `retrieveViews()` there
#'   finds it. A registered variable is sent to a group once, and again only
#'   when it was registered anew; `releaseVariables()` releases the copies
#'   too. Chunks of tasks then go one message each. pyrmap must be installed
#'   on every host.
#'
#' @section Memory: The workers map a call's data once and let go of it at
#'   the end of the call; when it mapped 64 MiB or more, a worker also
#'   collects then (a few milliseconds), so that the mappings go at once
#'   instead of waiting for R's collector, which the small view objects would
#'   never prompt. Calls over small data never pay for a collection. Views in
#'   this session follow the rule described in [run_python()] (section
#'   Memory).
#'
#' @section Interrupts: Ctrl-C in a terminal is sent to the whole foreground
#'   process group. pyrmap's own workers run in process groups of their own,
#'   and every worker of a `CLUSTER` leaves the terminal's group when it gets
#'   its first call (parallel's workers would drop an interrupted task without
#'   a reply, and the master would wait for ever): Ctrl-C reaches the master
#'   only. The interrupted master stops the call: no task starts any more,
#'   the workers still in `FUN` (on this host) get SIGINT, which ends their
#'   task, and are waited for 1 s at most. pyrmap's own workers that do not
#'   stop by then (in code that ignores interrupts) are killed and started
#'   anew by the next call; a `CLUSTER`'s are left to finish, and their late
#'   replies are recognised and skipped by the next call. The call then ends
#'   with the interrupt, its segments removed.
#'
#' @param X For `memApply()`, a double, integer, logical or raw matrix, or a
#'   data.frame of double, integer and logical columns; for
#'   `memLapply()`, a list of such vectors, matrices or arrays (or an atomic
#'   vector, taken element by element). Or the name of a variable registered
#'   in `NAMESPACE`, or a view from [retrieveViews()] (used without a copy).
#' @param MARGIN 1 for rows, 2 for columns.
#' @param FUN The function to apply.
#' @param NAMESPACE The namespace of variables given by name. Objects given
#'   instead are copied once into the call's own shared memory, which is
#'   removed when the call ends.
#' @param CLUSTER A `parallel` cluster, or `NULL` for pyrmap's own workers.
#'   Its workers may be on other hosts: see the section "Across hosts".
#' @param VARS A named list of side data for `FUN` (shared for the call), or
#'   a character vector naming variables registered in `NAMESPACE`.
#' @param MAX.CORES Workers without `CLUSTER`: default
#'   `parallel::detectCores() - 1`, at least 1.
#' @param FUN.VALUE `NULL` (results as a list), or a double, integer,
#'   logical or raw vector (or array): the template of every result, as in
#'   [vapply()].
#' @return A list with one result per row, column or element, in order; with
#'   `FUN.VALUE`, what [vapply()] returns. Named as [apply()] and [lapply()]
#'   name theirs: by the matrix's `dimnames` on `MARGIN`, the data.frame's
#'   column names, the list's or vector's names.
#' @examples
#' X <- matrix(rnorm(1e4), 100, 100)
#' y <- rnorm(100)
#' res <- memApply(X, 2, function(v, y) cor(v, y), VARS = list(y = y), MAX.CORES = 2)
#' head(unlist(res))
#' ans <- memLapply(list(1:3, 4:6), function(el, w) sum(el * w), VARS = list(w = 1:3),
#'                  MAX.CORES = 2)
#' unlist(ans)
#' r <- memApply(X, 2, function(v, y) cor(v, y), VARS = list(y = y), FUN.VALUE = 0,
#'               MAX.CORES = 2)   # a vector
#' @export
memApply <- function(X, MARGIN, FUN, NAMESPACE = NULL, CLUSTER = NULL, VARS = NULL,
                     MAX.CORES = NULL, FUN.VALUE = NULL) {
  FUN <- match.fun(FUN)
  if (!is.numeric(MARGIN) || length(MARGIN) != 1L || !(MARGIN %in% c(1, 2)))
    .usage_error("memApply: MARGIN must be 1 (rows) or 2 (columns)")
  .mem_call("apply", X, substitute(X), as.integer(MARGIN), FUN, NAMESPACE, CLUSTER, VARS, MAX.CORES,
            FUN.VALUE)
}

#' @rdname memApply
#' @export
memLapply <- function(X, FUN, NAMESPACE = NULL, CLUSTER = NULL, VARS = NULL, MAX.CORES = NULL,
                      FUN.VALUE = NULL) {
  FUN <- match.fun(FUN)
  .mem_call("lapply", X, substitute(X), NA_integer_, FUN, NAMESPACE, CLUSTER, VARS, MAX.CORES,
            FUN.VALUE)
}

# How X is named in messages: the expression the user wrote (made only
# when a message needs it: an object given by value could be large).
.xlabel <- function(expr) {
  if (is.name(expr) || is.call(expr)) deparse1(expr, width.cutoff = 60L, nlines = 1L) else "X"
}

# ---- the master's side --------------------------------------------------------

.mem_call <- function(kind, X, xexpr, margin, FUN, NAMESPACE, CLUSTER, VARS, MAX.CORES, FUN.VALUE) {
  what <- if (kind == "apply") "memApply" else "memLapply"
  if (!is.null(NAMESPACE)) .check_namespace(NAMESPACE)
  if (!is.null(CLUSTER)) .check_cluster(CLUSTER)
  out <- .out_spec(FUN.VALUE, what)
  unit <- if (kind == "apply") c("row", "column")[margin] else "element"
  # The segment directory goes with the job: the call's segments are made
  # there, the workers look for the pages there, and FUN's own
  # retrieveViews() calls do too.
  job <- list(kind = kind, margin = margin, first = names(formals(FUN))[1L], out = out$spec,
              chunk_seconds = .chunk_seconds, dir = .call_segment_dir())
  objects <- list()
  serialized <- FALSE

  # The data: a registered name, a view of a registered variable (both used
  # where they are), or an object (packed into the call's segment).
  ref <- .variable_ref(X, NAMESPACE, what, "X")
  along <- .names_along(kind, X, margin, ref)
  if (!is.null(ref$ns)) {
    dir <- ref$dir %||% job$dir
    meta <- .metadata(ref$ns, ref$var, dir)
    if (kind == "apply" && identical(meta$type, "data.frame")) {
      # A registered data.frame: its page is the list of its columns.
      if (margin != 2L)
        .usage_error(sprintf("%s: X ('%s') is a registered data.frame: MARGIN = 2 hands each column; for rows register as.matrix() of it",
                             what, .xlabel(xexpr)))
      n <- as.integer(meta$n)
      mode <- "list"
    } else {
      n <- .task_count(kind, meta, margin, what, xexpr)
      mode <- if (kind == "apply") "matrix" else if (meta$type %in% c("list", "data.frame")) "list" else "split"
    }
    job$x <- list(src = "page", ns = ref$ns, var = ref$var, dir = dir, mode = mode)
  } else {
    mode <- NULL
    if (kind == "apply" && is.data.frame(X)) {
      .check_frame(X, what, xexpr)
      if (margin == 2L) {
        # Each column as it is: the frame is shared as the list of its columns.
        X <- structure(lapply(X, function(col) { attributes(col) <- NULL; col }), names = NULL)
        mode <- "list"
      } else {
        if (!isTRUE(.state$said_frame_rows))
          message(sprintf("%s: MARGIN = 1 over a data.frame works on a matrix copy of it (as.matrix(X))", what))
        .state$said_frame_rows <- TRUE
        X <- as.matrix(X)
      }
    }
    if (kind == "apply" && is.null(mode)) {
      if (!is.matrix(X))
        .usage_error(sprintf("%s: X must be a matrix (double, integer, logical or raw), a data.frame of numeric, integer or logical columns, or the name of a registered matrix", what))
      mode <- "matrix"
    }
    if (kind == "lapply") {
      if (is.data.frame(X)) X <- as.list(X)  # its columns, as lapply() takes them
      if (is.null(X)) X <- list()
      if (is.atomic(X)) {
        # A plain numeric, logical or raw vector is taken element by element,
        # in place; any other (character, factor, integer64, ...) as the
        # list of its elements.
        if (is.object(X) || !(typeof(X) %in% c("double", "integer", "logical", "raw"))) X <- as.list(X)
        else mode <- "split"
      }
      if (is.null(mode)) {
        if (!is.list(X)) .usage_error(sprintf("%s: X must be a list (or vector), or the name of a registered list", what))
        mode <- "list"
        # Elements the packed data cannot hold as they are (strings, names,
        # factors, lists, ...) travel serialized, each unserialized for FUN.
        if (!.Call(pyrmap_packable, X)) {
          X <- lapply(X, serialize, connection = NULL, xdr = FALSE)
          serialized <- TRUE
        }
      }
    }
    n <- if (mode == "matrix") dim(X)[margin] else length(X)
    objects[[1L]] <- list(value = X, mode = mode, label = "X")
    job$x <- list(src = "call", object = 0L, mode = mode)
  }

  # Side data: names of registered variables, or objects for the call.
  side <- .side_data(VARS, NAMESPACE, what, FUN, length(objects), job$dir)
  job$vars <- side$refs
  objects <- c(objects, side$objects)
  if (n == 0L) return(.empty_result(out))
  if (serialized) {
    f <- FUN
    FUN <- function(.pyrmap_element, ...) f(unserialize(.pyrmap_element), ...)
    job$first <- ".pyrmap_element"
  }
  job$fun <- .pack_fun(FUN, what)
  # A FUN without an environment of its own may be kept by the workers
  # from one call to the next (its unserialized copy is then reused).
  job$fun_cached <- .fun_by_reference(FUN)
  shape <- .out_shape(out, n)
  res <- if (is.null(CLUSTER)) .engine_call(job, objects, n, what, unit, shape, MAX.CORES)
         # Workers outside the master's shared memory (other hosts): see domains.R.
         else if (any(.domains(CLUSTER, what)$domain != 1L))
           .domain_call(CLUSTER, job, objects, n, what, unit, out, shape)
         else .cluster_call(CLUSTER, job, objects, n, what, unit, shape)
  .named(res, along)
}

# The segment directory of a call: pyrmap_segment_dir(), kept for as long
# as the choice is the same (the option, PYRMAP_SEGMENT_DIR, and the working
# directory, against which a relative path resolves). A call that makes
# segments there opens and checks the directory again (pyrmap_call_new).
.call_segment_dir <- function() {
  key <- c(.segment_dir(), Sys.getenv("PYRMAP_SEGMENT_DIR"), getwd())
  hit <- .state$call_dir
  if (!is.null(hit) && identical(hit$key, key)) return(hit$dir)
  dir <- pyrmap_segment_dir()
  .state$call_dir <- list(key = key, dir = dir)
  dir
}

# The names of X along the tasks, as apply() and lapply() give them to
# their results: a matrix's dimnames on MARGIN, a data.frame's column names
# (its row names, if it has its own, for MARGIN = 1), a list's or vector's
# names. A registered variable given by name is looked at through a view.
.names_along <- function(kind, X, margin, ref) {
  if (!is.null(ref$ns) && is.character(X)) {
    info <- .pyrmap_open(ref$ns, ref$var, ref$dir %||% .segment_dir())
    if (!isTRUE(info$ok)) return(NULL)
    X <- info$value
  }
  if (kind == "lapply") return(names(X))
  if (is.data.frame(X))
    return(if (margin == 2L) names(X) else if (.row_names_info(X) > 0L) row.names(X))
  dimnames(X)[[margin]]
}

# `res` with the names of its tasks: a list's or vector's names, or the
# dimnames of its last dimension (FUN.VALUE of length > 1).
.named <- function(res, along) {
  if (is.null(along)) return(res)
  d <- dim(res)
  if (is.null(d)) {
    names(res) <- along
  } else {
    dn <- dimnames(res) %||% vector("list", length(d))
    dn[[length(d)]] <- along
    dimnames(res) <- dn
  }
  res
}

# The chunks a worker claims: at most what takes about .chunk_seconds at
# the cost per task it measured on its last chunk, and at most a share of
# what is left (guided self-scheduling: chunks shrink towards the end); a
# worker's first chunk, of unknown cost, is one task. So a few expensive
# tasks never land in one chunk, while cheap tasks go in large chunks.
.chunk_seconds <- 0.1

# The call on pyrmap's own workers: posted through shared memory, awaited
# on the engine (a worker that dies is seen at once), read back at the end.
.engine_call <- function(job, objects, n, what, unit, shape, max_cores) {
  e <- .engine(max_cores, job$dir)
  # Without side data objects (whose views FUN could keep), a small call
  # may go in the engine's call area (see pyrmap_call_new).
  area <- length(objects) == as.integer(identical(job$x$src, "call"))
  call <- .new_call(objects, serialize(job, NULL, xdr = FALSE), n, .state$engine_workers, job$out, 0L, what,
                    job$dir, engine = e, area = area)
  on.exit(.Call(pyrmap_call_close, call$call), add = TRUE)
  seq <- .checked(.Call(pyrmap_call_post, e, call$call))
  # Until the call is over, leaving (an error, an interrupt) ends it: the
  # workers still in FUN are interrupted, those that do not stop within
  # .drain_seconds are killed (and started anew by the next call).
  over <- FALSE
  on.exit(if (!over) .Call(pyrmap_call_cancel, e, call$call, .drain_seconds), add = TRUE, after = FALSE)
  progress <- .progressor(n)
  reported <- 0
  repeat {
    st <- .checked(.Call(pyrmap_call_wait, e, call$call, seq, 0.25))
    if (!is.null(progress) && st$done > reported) {
      progress(amount = st$done - reported)
      reported <- st$done
    }
    if (!identical(st$state, "running")) break
  }
  if (identical(st$state, "stuck"))
    .raise(list(kind = "system", message = sprintf("%s: no worker of the engine could take part in the call", what)),
           .user_call())
  if (identical(st$state, "died"))
    .raise(list(kind = "system",
                message = sprintf("%s: lost a worker: R worker %d of the engine (pid %d) %s%s%s", what, st$slot,
                                  st$pid, st$how,
                                  if (is.na(st$task)) "" else sprintf(" while running FUN on %s %d", unit, st$task),
                                  if (nzchar(st$stderr)) paste0("; it said:\n", st$stderr) else "")),
           .user_call())
  over <- TRUE
  .gathered(.Call(pyrmap_call_gather, e, call$call, shape$dim, shape$dimnames), what, unit)
}

# The call on a user's cluster: one message per worker (the job and the
# names of the call's segments), one reply each at the end; the results in
# shared memory.
.cluster_call <- function(cl, job, objects, n, what, unit, shape) {
  p <- length(cl)
  call <- .new_call(objects, NULL, n, p, job$out, p, what, job$dir)
  on.exit(.Call(pyrmap_call_close, call$call), add = TRUE)
  send_call <- utils::getFromNamespace("sendCall", "parallel")
  recv_data <- utils::getFromNamespace("recvData", "parallel")
  id <- sprintf("%d.%d", Sys.getpid(), .next_counter())
  lib <- dirname(system.file(package = "pyrmap"))
  runner <- .cluster_runner()
  job$call <- call$name
  lost <- function(e) .raise(list(kind = "system", message = sprintf("%s: lost a worker of the cluster (%s)", what,
                                                                      trimws(conditionMessage(e)))), .user_call())
  pending <- integer()
  # Leaving early (an interrupt, a lost worker) ends the call: see .end_cluster_call.
  on.exit(if (length(pending)) .end_cluster_call(cl, id, call$call, pending), add = TRUE, after = FALSE)
  for (k in seq_len(p)) {
    job$slot <- k - 1L
    job$results <- call$results[[k]]
    tryCatch(send_call(cl[[k]], runner, list(lib, job), tag = list(id = id, k = k)), error = lost)
    pending <- c(pending, k)
  }
  replies <- vector("list", p)
  progress <- .progressor(n)
  reported <- 0
  while (length(pending)) {
    ready <- tryCatch(socketSelect(lapply(cl[pending], `[[`, "con"), FALSE, 0.25),
                      error = function(e) rep(TRUE, length(pending)))
    for (k in pending[ready]) {
      msg <- tryCatch(recv_data(cl[[k]]), error = lost)
      # A reply left over from an interrupted earlier call is skipped.
      if (!is.list(msg$tag) || !identical(msg$tag$id, id)) next
      replies[k] <- list(msg$value)
      pending <- setdiff(pending, k)
    }
    if (!is.null(progress)) {
      done <- .checked(.Call(pyrmap_call_progress, call$call))
      if (done > reported) {
        progress(amount = done - reported)
        reported <- done
      }
    }
  }
  for (r in replies) {
    if (inherits(r, "try-error") || !is.list(r))
      .raise(list(kind = "system", message = sprintf("%s: a worker of the cluster could not start the call: %s",
                                                     what, trimws(as.character(r)))), .user_call())
    if (identical(r$outcome, "no_pyrmap"))
      .raise(list(kind = "system", message = sprintf("%s: the cluster's workers cannot load pyrmap from '%s'", what, lib)),
             .user_call())
    if (identical(r$outcome, "not_started") && !is.null(r$message))
      .raise(list(kind = "system", message = sprintf("%s: a worker of the cluster could not start the call: %s",
                                                     what, r$message)), .user_call())
  }
  .gathered(.Call(pyrmap_call_gather, NULL, call$call, shape$dim, shape$dimnames), what, unit)
}

# What a user cluster's worker is sent: a small function of the global
# environment (sent as it is, a package function would travel with its
# byte code), which finds this package where the master found it and runs
# .cluster_worker().
.cluster_runner <- function() {
  f <- function(lib, job) {
    if (!(lib %in% .libPaths())) .libPaths(c(lib, .libPaths()))
    if (!requireNamespace("pyrmap", quietly = TRUE)) return(list(outcome = "no_pyrmap"))
    utils::getFromNamespace(".cluster_worker", "pyrmap")(job)
  }
  environment(f) <- globalenv()
  f
}

# Ends a user cluster's call that was left early, typically by an interrupt
# (Ctrl-C reaches the master only: the workers left the terminal's process
# group). No task is started any more; the workers still in FUN (on this
# host: they share its memory) are sent SIGINT, which the task loop turns
# into a reply; the replies are awaited for .drain_seconds at most. A worker
# that does not answer by then (in code that ignores interrupts) is left to
# finish; its late reply is recognised by its tag and skipped by the next
# call.
.drain_seconds <- 1

.end_cluster_call <- function(cl, id, call, pending) {
  .Call(pyrmap_call_cancel, NULL, call, 0)
  pids <- .Call(pyrmap_call_pids, call)
  if (is.numeric(pids))
    for (k in pending) if (pids[k] > 0) try(tools::pskill(pids[k], tools::SIGINT), silent = TRUE)
  invisible(.await_replies(cl, id, pending))
}

# Waits up to `seconds` for a reply tagged `id` from each worker `pending`
# (indices into `cl`), skipping older replies; a worker whose connection
# fails counts as answered. Returns those that did not answer.
.await_replies <- function(cl, id, pending, seconds = .drain_seconds) {
  recv_data <- utils::getFromNamespace("recvData", "parallel")
  deadline <- proc.time()[[3L]] + seconds
  while (length(pending)) {
    wait <- deadline - proc.time()[[3L]]
    if (wait <= 0) break
    ready <- tryCatch(socketSelect(lapply(cl[pending], `[[`, "con"), FALSE, wait),
                      error = function(e) rep(TRUE, length(pending)))
    for (k in pending[ready]) {
      msg <- tryCatch(recv_data(cl[[k]]), error = function(e) NULL)
      # A dead worker, or the reply to this call: done with it.
      if (is.null(msg) || (is.list(msg$tag) && identical(msg$tag$id, id))) pending <- setdiff(pending, k)
    }
  }
  pending
}

# Makes the call's segments in the segment directory `dir` (see
# pyrmap_call_new in r-pkg/src/engine_r.cpp).
.new_call <- function(objects, job_bytes, n, workers, out, result_files, what, dir, engine = NULL,
                      area = FALSE) {
  info <- .Call(pyrmap_call_new, objects, job_bytes, as.numeric(n), as.integer(workers), out,
                as.integer(result_files), what, dir, engine, area)
  if (!isTRUE(info$ok)) .raise(info, .user_call())
  info
}

.checked <- function(x) {
  if (is.list(x) && identical(x$ok, FALSE)) .raise(x, .user_call())
  x
}

# The value of a gathered call, or the error of its first failure.
.gathered <- function(res, what, unit) {
  res <- .checked(res)
  f <- res$failure
  if (is.null(f)) return(res$value)
  if (isTRUE(f$setup))
    .raise(list(kind = "system", message = sprintf("%s: a worker could not start the call: %s", what, f$message)),
           .user_call())
  if (identical(f$message, "interrupted") && "interrupt" %in% f$class)
    .raise(list(kind = "interrupt", message = sprintf("%s: interrupted", what)), .user_call())
  .raise_fun_error(list(index = as.integer(f$index), message = f$message, class = f$class), what, unit)
}

# FUN.VALUE: a template for each result (as vapply's), or NULL.
.out_spec <- function(FUN.VALUE, what) {
  if (is.null(FUN.VALUE)) return(list(spec = NULL))
  if (!is.atomic(FUN.VALUE) || !(typeof(FUN.VALUE) %in% c("double", "integer", "logical", "raw")) ||
      is.object(FUN.VALUE))
    .usage_error(sprintf("%s: FUN.VALUE must be a double, integer, logical or raw vector (a template of each result, as vapply's), not %s",
                         what, if (is.object(FUN.VALUE)) paste("an object of class", class(FUN.VALUE)[1L])
                               else paste("of type", typeof(FUN.VALUE))))
  list(spec = list(type = typeof(FUN.VALUE), len = length(FUN.VALUE)), template = FUN.VALUE)
}

# The shape of the result for n tasks: vapply's (a vector for results of
# length 1, else one column per task, or the template's dims and one more).
.out_shape <- function(out, n) {
  if (is.null(out$spec)) return(list(dim = NULL, dimnames = NULL))
  t <- out$template
  if (!is.null(dim(t)))
    return(list(dim = c(dim(t), as.integer(n)), dimnames = if (!is.null(dimnames(t))) c(dimnames(t), list(NULL))))
  if (length(t) == 1L) return(list(dim = NULL, dimnames = NULL))
  list(dim = c(length(t), as.integer(n)), dimnames = if (!is.null(names(t))) list(names(t), NULL))
}

.empty_result <- function(out) {
  if (is.null(out$spec)) return(list())
  v <- vector(out$spec$type, 0L)
  shape <- .out_shape(out, 0L)
  if (!is.null(shape$dim)) dim(v) <- shape$dim
  if (!is.null(shape$dimnames)) dimnames(v) <- shape$dimnames
  v
}

# A data.frame can be shared when every column is a plain double, integer or
# logical vector; otherwise the error names the first column that is not.
.check_frame <- function(X, what, xexpr) {
  for (j in seq_along(X)) {
    col <- X[[j]]
    if (!(is.double(col) || is.integer(col) || is.logical(col)) || !is.null(oldClass(col))) {
      kind <- if (!is.null(oldClass(col))) paste0("of class '", class(col)[1L], "'") else paste("of type", typeof(col))
      .usage_error(sprintf("%s: column %d ('%s') of the data.frame X ('%s') is %s; only numeric, integer and logical columns can be shared",
                           what, j, names(X)[j], .xlabel(xexpr), kind))
    }
  }
}

.next_counter <- function() {
  .state$counter <- .state$counter + 1L
  .state$counter
}

# What X (or a VARS element) refers to: list(ns, var) for a registered
# variable or a view of one, list(ns = NULL) for an object.
.variable_ref <- function(x, NAMESPACE, what, label) {
  if (is.character(x) && is.null(dim(x)) && length(x) == 1L) {
    if (is.null(NAMESPACE))
      .usage_error(sprintf("%s: %s names a registered variable ('%s'): give its NAMESPACE", what, label, x))
    return(list(ns = NAMESPACE, var = x))
  }
  if (!.view_candidate(x)) return(list(ns = NULL))
  page <- .pyrmap_view_page(x)
  if (!is.null(page)) return(list(ns = page$ns, var = page$var, dir = page$dir))
  list(ns = NULL)
}

# Only an atomic vector can be a view of a page (lists and others need no look).
.view_candidate <- function(x) is.atomic(x) && !is.null(x)

.task_count <- function(kind, meta, margin, what, xexpr) {
  if (kind == "apply") {
    if (meta$type != "matrix")
      .usage_error(sprintf("%s: X ('%s') must be a matrix, not a %s", what, .xlabel(xexpr), meta$type))
    return(as.integer(if (margin == 1L) meta$nrow else meta$ncol))
  }
  as.integer(meta$n)
}

# VARS as list(refs, objects): refs is a list of list(arg, src = "page", ns,
# var, dir) (registered variables, used where they are; `dir` is their
# segment directory, the call's unless a view says otherwise) or list(arg,
# src = "call", object, mode) (objects, packed into the call's segment as
# objects `first_object`, ...). Everything is checked here, before any
# segment is made.
.side_data <- function(VARS, NAMESPACE, what, FUN, first_object, dir) {
  if (is.null(VARS)) return(list(refs = list(), objects = list()))
  if (is.character(VARS) && is.null(dim(VARS))) {
    if (is.null(NAMESPACE))
      .usage_error(sprintf("%s: VARS names registered variables: give their NAMESPACE", what))
    .check_names(VARS)
    arg_names <- VARS
  } else if (is.list(VARS) && !is.data.frame(VARS)) {
    arg_names <- names(VARS)
    if (length(VARS) && (is.null(arg_names) || anyNA(arg_names) || !all(nzchar(arg_names)) ||
                         anyDuplicated(arg_names)))
      .usage_error(sprintf("%s: VARS must be a list with a distinct name for every element", what))
  } else {
    .usage_error(sprintf("%s: VARS must be a named list of objects or a character vector of registered names", what))
  }
  args <- names(formals(FUN))
  missing <- setdiff(arg_names, args)
  if (length(missing) && !("..." %in% args))
    .usage_error(sprintf("%s: FUN has no argument named %s (VARS names must be FUN's argument names)",
                         what, paste(sQuote(missing, FALSE), collapse = ", ")))
  if (is.character(VARS)) {
    for (v in VARS)
      if (is.na(.pyrmap_generation(NAMESPACE, v, dir)))
        .raise(list(kind = "not_registered",
                    message = sprintf("%s: VARS: variable '%s' of namespace '%s' is not registered",
                                      what, v, NAMESPACE)),
               .user_call())
    refs <- lapply(VARS, function(v) list(arg = v, src = "page", ns = NAMESPACE, var = v, dir = dir))
    return(list(refs = refs, objects = list()))
  }
  refs <- vector("list", length(VARS))
  objects <- list()
  for (i in seq_along(VARS)) {
    x <- VARS[[i]]
    page <- if (.view_candidate(x)) .pyrmap_view_page(x)  # a view of a registered variable: no copy
    if (!is.null(page)) {
      refs[[i]] <- list(arg = arg_names[[i]], src = "page", ns = page$ns, var = page$var,
                        dir = page$dir %||% dir)
    } else {
      mode <- if (is.list(x) && !is.data.frame(x)) "list" else "single"
      objects[[length(objects) + 1L]] <- list(value = x, mode = mode, label = sprintf("VARS '%s'", arg_names[[i]]))
      refs[[i]] <- list(arg = arg_names[[i]], src = "call", object = first_object + length(objects) - 1L,
                        mode = mode)
    }
  }
  list(refs = refs, objects = objects)
}

.check_cluster <- function(cl) {
  if (!inherits(cl, "cluster") || length(cl) < 1L)
    .usage_error("CLUSTER must be a cluster made by the parallel package")
}

# Makes sure every worker can load this package from where it is installed,
# and takes the workers out of the terminal's process group (see
# .worker_hello). Returns, per node, list(pid, host) of its worker process.
# (The function is given the global environment, so that sending it does
# not itself require the package on the worker.)
.prepare_cluster <- function(cl) {
  lib <- dirname(system.file(package = "pyrmap"))
  add_lib <- function(lib) {
    if (!(lib %in% .libPaths())) .libPaths(c(lib, .libPaths()))
    if (!requireNamespace("pyrmap", quietly = TRUE)) return(FALSE)
    utils::getFromNamespace(".worker_hello", "pyrmap")()
  }
  environment(add_lib) <- globalenv()
  ok <- .call_nodes(cl, add_lib, lib)
  .check_nodes(ok, "", "failed")
  if (!all(vapply(ok, is.list, logical(1))))
    .raise(list(kind = "system", message = sprintf("the cluster's workers cannot load pyrmap from '%s'", lib)),
           sys.call(-1L))
  ok
}

# fun(...) on every node of `cl`. Unlike clusterCall(), a node that cannot be
# reached or fails never leaves another node's reply unread, and each call
# carries a tag of its own, so a stale reply still due from an interrupted
# call is skipped, not taken for this call's. Returns one value per node, or
# the error (a condition) for nodes that failed; the nodes in `no_wait` are
# sent the call but their replies are not awaited (NULL). With `each` (a
# list of argument lists, one per node), node i is sent each[[i]] instead.
.call_nodes <- function(cl, fun, ..., no_wait = integer(), each = NULL) {
  send_call <- utils::getFromNamespace("sendCall", "parallel")
  recv_data <- utils::getFromNamespace("recvData", "parallel")
  args <- list(...)
  tag <- list(nodes_call = .next_counter(), pid = Sys.getpid())
  sent <- lapply(seq_along(cl), function(i) {
    tryCatch({
      send_call(cl[[i]], fun, if (is.null(each)) args else each[[i]], tag = tag)
      TRUE
    }, error = function(e) e)
  })
  lapply(seq_along(cl), function(i) {
    if (!isTRUE(sent[[i]])) return(sent[[i]])
    if (i %in% no_wait) return(NULL)
    tryCatch({
      repeat {
        msg <- recv_data(cl[[i]])
        if (identical(msg$tag, tag)) break
      }
      v <- msg$value
      if (inherits(v, "try-error")) simpleError(as.character(v)) else v
    }, error = function(e) e)
  })
}

# Raises a pyrmap_system_error if a node of .call_nodes() failed.
.check_nodes <- function(values, what, doing) {
  bad <- Filter(function(v) inherits(v, "error"), values)
  if (length(bad))
    .raise(list(kind = "system",
                message = sprintf("%s%s of %d worker(s) of the cluster %s: %s",
                                  if (nzchar(what)) paste0(what, ": ") else "", length(bad),
                                  length(values), doing, trimws(conditionMessage(bad[[1L]])))),
           .user_call())
  invisible(values)
}

# A progressr progressor of n steps tied to the caller's frame (`envir`):
# progressr finishes a progressor when the frame it was made for exits, so
# made for this helper's own frame it would be finished before the first
# step.
.progressor <- function(n, envir = parent.frame()) {
  # Progress is reported to a session that uses progressr (with_progress(),
  # handlers(global = TRUE)): its namespace is loaded then. Not loading it
  # here keeps small calls free of its cost (~20 us a call).
  if (n < 2L || !isNamespaceLoaded("progressr")) return(NULL)
  progressr::progressor(steps = n, envir = envir)
}

.raise_fun_error <- function(f, what, unit) {
  where <- if (is.na(f$index)) "a worker" else sprintf("%s %d", unit, f$index)
  msg <- sprintf("%s: FUN failed on %s: %s", what, where, f$message)
  cond <- structure(
    class = c("pyrmap_fun_error", "pyrmap_error", "error", "condition"),
    list(message = msg, call = NULL, index = f$index, parent_message = f$message,
         parent_class = f$class))
  stop(cond)
}

# A small stand-in, for sending to workers, for this package's function
# `name`. Sent as it is, a package function travels with its byte code
# (kilobytes), which serialize() writes to the socket in many small pieces;
# on a PSOCK connection (no TCP_NODELAY) that can cost a ~40 ms delayed-ACK
# stall per message. The stand-in is a few hundred bytes and looks the
# function up in the worker's copy of the package.
.remote <- function(name) {
  eval(bquote(function(...) utils::getFromNamespace(.(name), "pyrmap")(...)), globalenv())
}

# FUN, serialized once for all workers. FUN travels with its enclosing
# environment: one defined inside a function carries that function's local
# variables along, copied into every worker. Big ones are reported, since
# the remedy (passing them in VARS) is easy and the cost is not visible.
.fun_warn_bytes <- 64 * 1024^2

# Whether FUN's environment is serialized as a reference (the global
# environment, a namespace, base) rather than with its contents: such a
# FUN's bytes change only with FUN itself.
.fun_by_reference <- function(FUN) {
  if (is.primitive(FUN)) return(TRUE)
  env <- environment(FUN)
  is.environment(env) && (identical(env, globalenv()) || isNamespace(env) || identical(env, baseenv()))
}

.pack_fun <- function(FUN, what) {
  # A FUN whose environment travels as a reference (see .fun_by_reference)
  # serializes to the same bytes as long as it is the same function: the
  # last one's bytes are kept for the next call.
  by_ref <- .fun_by_reference(FUN)
  last <- .state$packed_fun
  if (by_ref && !is.null(last) && identical(last$fun, FUN, ignore.srcref = FALSE)) return(last$bytes)
  orig <- FUN
  # Without its source references: kept (as in an interactive session or a
  # sourced file), they hold the whole source file's text.
  if (is.function(FUN) && !is.primitive(FUN)) FUN <- utils::removeSource(FUN)
  bytes <- serialize(FUN, NULL)
  if (by_ref) .state$packed_fun <- list(fun = orig, bytes = bytes)
  if (length(bytes) > .fun_warn_bytes)
    warning(sprintf(paste("%s: FUN takes %.0f MB with its environment, copied to every worker;",
                          "pass big objects in VARS (shared) instead of through FUN's environment"),
                    what, length(bytes) / 1024^2), call. = FALSE)
  bytes
}

# ---- the workers' side ----------------------------------------------------------

# The first thing a worker does for a call: leave the terminal's process
# group, so that Ctrl-C in the master's terminal reaches the master alone
# (parallel's worker would drop its task without a reply, and the master
# would wait for ever); the master interrupts its busy workers itself. Returns
# list(pid, host).
.worker_hello <- function() {
  .Call(pyrmap_leave_process_group)
  list(pid = Sys.getpid(), host = Sys.info()[["nodename"]])
}

.worker_gc <- function(namespace) {
  .gc_namespace(namespace)
  invisible(TRUE)
}
