#' Parallel apply over shared memory
#'
#' `memApply()` applies `FUN` to the rows (`MARGIN = 1`) or columns
#' (`MARGIN = 2`) of a matrix, and `memLapply()` to the elements of a list, on
#' parallel workers that read the data — and the side data in `VARS` — as
#' views of one copy in shared memory instead of receiving copies. Names,
#' arguments and defaults are memshare's.
#'
#' `FUN`'s first argument receives the row, column or element; its other
#' arguments are matched by name to `VARS`. Work is dealt to the workers in
#' chunks that shrink as the work runs out (so that uneven tasks balance),
#' and results come back through the cluster's channel, as a list in order.
#' An error in `FUN` stops the call with an R error that names the
#' row/column/element and carries the original message (class
#' `pyrmap_fun_error`; fields `index`, `parent_message`, `parent_class`).
#' Views are released in the workers at the end of the call, and variables
#' the call registered are released in this session, however the call ends.
#'
#' Without `CLUSTER`, a PSOCK cluster of `MAX.CORES` workers is started on the
#' first call and reused by later ones (until `MAX.CORES` changes or the
#' session ends). With `CLUSTER`, any `parallel` cluster is used as it is.
#' Progress is reported through progressr when it is installed (silent
#' unless a handler is enabled; see the section Progress).
#'
#' Results are unnamed, as memshare's (`names(res) <- colnames(X)` gives
#' apply()'s names back).
#'
#' A data.frame `X` whose columns are all double, integer or logical is
#' accepted: with `MARGIN = 2` it is shared as the list of its columns, and
#' `FUN` gets each column as it is (its own type, no matrix copy of the
#' frame); with `MARGIN = 1` it goes through a matrix (`as.matrix(X)`, said
#' once per session in a message). A column of any other type or class (a
#' factor, character, Date, ...) is an error naming the first such column.
#'
#' @section Progress: Both functions report one progressr step per row,
#'   column or element done, when progressr is installed. progressr shows
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
#' @section Memory: Each worker maps the call's pages once and releases its views at
#'   the end of the call; when they mapped 64 MiB or more, the worker also
#'   collects then (a few milliseconds), so that the mappings go at once
#'   instead of waiting for R's collector, which the small view objects would
#'   never prompt. Calls over small data never pay for a collection. Views in
#'   this session follow the rule described in [run_python()] (section
#'   Memory).
#'
#' @section Interrupts: Ctrl-C in a terminal is sent to the whole foreground process
#'   group, the cluster's workers included, and parallel's workers drop a task
#'   they are interrupted in without a reply, which would leave the master
#'   waiting for ever. So every worker that pyrmap prepares leaves the
#'   terminal's process group (the default cluster's and a `CLUSTER`'s alike:
#'   Ctrl-C then reaches the master only). When the master is interrupted, it
#'   sends SIGINT to its workers that are still in `FUN` (on this host), whose
#'   interrupt is turned into a reply, and waits for those replies for 1 s at
#'   most. A worker that does not answer by then (in code that ignores
#'   interrupts) is killed if it belongs to the default cluster, which is then
#'   started anew by the next call; a `CLUSTER`'s worker is left to finish,
#'   and its late reply is recognised and skipped by the next call. The call
#'   then ends with the interrupt, and the variables it registered are
#'   released.
#'
#' @param X For `memApply()`, a double, integer, logical or raw matrix, or a
#'   data.frame of double, integer and logical columns; for
#'   `memLapply()`, a list of such vectors, matrices or arrays (or an atomic
#'   vector, taken element by element). Or the name of a variable registered
#'   in `NAMESPACE`, or a view from [retrieveViews()] (used without a copy).
#' @param MARGIN 1 for rows, 2 for columns.
#' @param FUN The function to apply.
#' @param NAMESPACE The namespace of variables given by name. When objects
#'   are given instead, the call registers them under a namespace of its own
#'   (so concurrent sessions never collide) and releases them at the end.
#' @param CLUSTER A `parallel` cluster, or `NULL` for the session's default
#'   cluster.
#' @param VARS A named list of side data for `FUN` (registered for the call),
#'   or a character vector naming variables registered in `NAMESPACE`.
#' @param MAX.CORES Workers of the default cluster: default
#'   `parallel::detectCores() - 1`, at least 1.
#' @return A list with one result per row, column or element, in order.
#' @examples
#' X <- matrix(rnorm(1e4), 100, 100)
#' y <- rnorm(100)
#' res <- memApply(X, 2, function(v, y) cor(v, y), VARS = list(y = y), MAX.CORES = 2)
#' head(unlist(res))
#' ans <- memLapply(list(1:3, 4:6), function(el, w) sum(el * w), VARS = list(w = 1:3),
#'                  MAX.CORES = 2)
#' unlist(ans)
#' @export
memApply <- function(X, MARGIN, FUN, NAMESPACE = NULL, CLUSTER = NULL, VARS = NULL,
                     MAX.CORES = NULL) {
  FUN <- match.fun(FUN)
  if (!is.numeric(MARGIN) || length(MARGIN) != 1L || !(MARGIN %in% c(1, 2)))
    .usage_error("memApply: MARGIN must be 1 (rows) or 2 (columns)")
  .mem_call("apply", X, deparse1(substitute(X)), as.integer(MARGIN), FUN, NAMESPACE, CLUSTER,
            VARS, MAX.CORES)
}

#' @rdname memApply
#' @export
memLapply <- function(X, FUN, NAMESPACE = NULL, CLUSTER = NULL, VARS = NULL, MAX.CORES = NULL) {
  FUN <- match.fun(FUN)
  .mem_call("lapply", X, deparse1(substitute(X)), NA_integer_, FUN, NAMESPACE, CLUSTER, VARS,
            MAX.CORES)
}

# ---- the master's side --------------------------------------------------------

.mem_call <- function(kind, X, xlabel, margin, FUN, NAMESPACE, CLUSTER, VARS, MAX.CORES) {
  what <- if (kind == "apply") "memApply" else "memLapply"
  if (!is.null(NAMESPACE)) .check_namespace(NAMESPACE)
  # The segment directory goes with the job: the workers look for the pages
  # there, and FUN's own retrieveViews() calls do too.
  job <- list(kind = kind, margin = margin, fun = .pack_fun(FUN, what),
              first = names(formals(FUN))[1L], dir = pyrmap_segment_dir())
  temp <- list(ns = sprintf(".pyrmap.%d.%d", Sys.getpid(), .next_counter()), vars = character())
  on.exit(for (v in temp$vars) try(releaseVariables(temp$ns, v), silent = TRUE), add = TRUE)

  # The data: a registered name, a view of a registered variable, or an object.
  ref <- .variable_ref(X, NAMESPACE, what, "X")
  if (ref$temp) temp$vars <- c(temp$vars, ref$var)
  if (kind == "apply" && is.null(ref$ns) && is.data.frame(X)) {
    .check_frame(X, what, xlabel)
    if (margin == 2L) {
      # Each column as it is: the frame is shared as the list of its columns.
      X <- structure(lapply(X, function(col) { attributes(col) <- NULL; col }), names = NULL)
      job$columns <- TRUE
    } else {
      if (!isTRUE(.state$said_frame_rows))
        message(sprintf("%s: MARGIN = 1 over a data.frame works on a matrix copy of it (as.matrix(X))", what))
      .state$said_frame_rows <- TRUE
      X <- as.matrix(X)
    }
  }
  if (kind == "apply" && is.null(ref$ns) && !is.matrix(X) && !isTRUE(job$columns))
    .usage_error(sprintf("%s: X must be a matrix (double, integer, logical or raw), a data.frame of numeric, integer or logical columns, or the name of a registered matrix", what))
  if (kind == "lapply" && is.null(ref$ns)) {
    if (is.atomic(X) && !is.null(X)) X <- as.list(X)
    if (!is.list(X)) .usage_error(sprintf("%s: X must be a list (or vector), or the name of a registered list", what))
  }
  if (is.null(ref$ns)) {
    info <- .register_one(temp$ns, "X", X)
    ref <- list(ns = temp$ns, var = "X", temp = TRUE, dir = info$dir)
    temp$vars <- c(temp$vars, "X")
  }
  ref$dir <- ref$dir %||% job$dir
  job$x <- ref[c("ns", "var", "dir")]
  meta <- .metadata(ref$ns, ref$var, ref$dir)
  n <- if (isTRUE(job$columns)) as.integer(meta$n) else .task_count(kind, meta, margin, what, xlabel)

  # Side data: names of registered variables, or objects to register.
  job$vars <- .side_data(VARS, NAMESPACE, temp, what, FUN)
  temp$vars <- c(temp$vars, attr(job$vars, "temp"))
  if (n == 0L) return(list())

  cl <- if (is.null(CLUSTER)) .default_cluster(MAX.CORES) else CLUSTER
  .check_cluster(cl)
  nodes <- .prepare_cluster(cl)
  id <- sprintf("%d.%d", Sys.getpid(), .next_counter())
  # `call$stuck`: nodes that did not answer after an interrupt (see .drain).
  call <- new.env(parent = emptyenv())
  call$stuck <- integer()
  on.exit(.end_call(cl, id, call, is.null(CLUSTER)), add = TRUE, after = FALSE)
  .check_nodes(.call_nodes(cl, .remote(".worker_start"), id, job), what, "could not start the call")
  .dispatch(cl, id, n, what, if (kind == "apply") c("row", "column")[margin] else "element",
            nodes, call)
}

# A data.frame can be shared when every column is a plain double, integer or
# logical vector; otherwise the error names the first column that is not.
.check_frame <- function(X, what, xlabel) {
  for (j in seq_along(X)) {
    col <- X[[j]]
    if (!(is.double(col) || is.integer(col) || is.logical(col)) || !is.null(oldClass(col))) {
      kind <- if (!is.null(oldClass(col))) paste0("of class '", class(col)[1L], "'") else paste("of type", typeof(col))
      .usage_error(sprintf("%s: column %d ('%s') of the data.frame X ('%s') is %s; only numeric, integer and logical columns can be shared",
                           what, j, names(X)[j], xlabel, kind))
    }
  }
}

# The workers release the call's views. Nodes stuck in FUN after an
# interrupt are told too, but not waited for (their replies, when they come,
# are recognised as stale by their tags); the default cluster's stuck
# workers have been killed, and that cluster is stopped: the next call starts
# a new one.
.end_call <- function(cl, id, call, is_default) {
  if (length(call$stuck) && is_default) {
    .stop_cluster(cl)
    if (identical(.state$cluster, cl)) .state$cluster <- NULL
    return(invisible(NULL))
  }
  .call_nodes(cl, .remote(".worker_end"), id, no_wait = call$stuck)
  invisible(NULL)
}

.next_counter <- function() {
  .state$counter <- .state$counter + 1L
  .state$counter
}

# What X (or a VARS element) refers to: list(ns, var, temp) for a registered
# variable or a view of one, list(ns = NULL) for an object to register.
.variable_ref <- function(x, NAMESPACE, what, label) {
  if (is.character(x) && is.null(dim(x)) && length(x) == 1L) {
    if (is.null(NAMESPACE))
      .usage_error(sprintf("%s: %s names a registered variable ('%s'): give its NAMESPACE", what, label, x))
    return(list(ns = NAMESPACE, var = x, temp = FALSE))
  }
  page <- .pyrmap_view_page(x)
  if (!is.null(page)) return(list(ns = page$ns, var = page$var, temp = FALSE, dir = page$dir))
  list(ns = NULL, temp = FALSE)
}

.task_count <- function(kind, meta, margin, what, xlabel) {
  if (kind == "apply") {
    if (meta$type != "matrix")
      .usage_error(sprintf("%s: X ('%s') must be a matrix, not a %s", what, xlabel, meta$type))
    return(as.integer(if (margin == 1L) meta$nrow else meta$ncol))
  }
  as.integer(meta$n)
}

# VARS as a list of list(ns, var, arg); attr "temp": variables registered here.
# Everything is checked before anything is registered, and what was
# registered is released again if a later element fails, so that an error
# here leaves no page behind.
.side_data <- function(VARS, NAMESPACE, temp, what, FUN) {
  if (is.null(VARS)) return(structure(list(), temp = character()))
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
      if (is.na(.pyrmap_generation(NAMESPACE, v)))
        .raise(list(kind = "not_registered",
                    message = sprintf("%s: VARS: variable '%s' of namespace '%s' is not registered",
                                      what, v, NAMESPACE)),
               .user_call())
    refs <- lapply(VARS, function(v) list(ns = NAMESPACE, var = v, arg = v))
    return(structure(refs, temp = character()))
  }
  registered <- character()
  done <- FALSE
  on.exit(if (!done) for (v in registered) try(releaseVariables(temp$ns, v), silent = TRUE))
  refs <- vector("list", length(VARS))
  for (i in seq_along(VARS)) {
    ref <- .pyrmap_view_page(VARS[[i]])  # a view of a registered variable: no copy
    if (is.null(ref)) {
      var <- paste0("VARS.", arg_names[[i]])
      info <- .register_one(temp$ns, var, VARS[[i]])
      registered <- c(registered, var)
      ref <- list(ns = temp$ns, var = var, dir = info$dir)
    }
    refs[[i]] <- list(ns = ref$ns, var = ref$var, arg = arg_names[[i]], dir = ref$dir)
  }
  done <- TRUE
  structure(refs, temp = registered)
}

.check_cluster <- function(cl) {
  if (!inherits(cl, "cluster") || length(cl) < 1L)
    .usage_error("CLUSTER must be a cluster made by the parallel package")
}

# The session's cluster of MAX.CORES workers, started once and reused.
.default_cluster <- function(max_cores) {
  n <- if (is.null(max_cores)) parallel::detectCores() - 1L else max_cores
  if (!is.numeric(n) || length(n) != 1L || is.na(n) || n < 1) n <- 1L
  n <- as.integer(n)
  cl <- .state$cluster
  if (!is.null(cl) && length(cl) == n && .cluster_alive(cl)) return(cl)
  if (!is.null(cl)) .stop_cluster(cl)
  .state$cluster <- NULL
  # TCP_NODELAY on both ends of the workers' sockets (R >= 4.1 reads the
  # option "socketOptions" when it opens them). Without it, a message that
  # serialize() writes in more than one piece (any reply beyond R's ~8 KB
  # connection buffer, e.g. a chunk of results) waits ~40 ms for a delayed
  # ACK: a fixed cost per chunk.
  old <- options(socketOptions = "no-delay")
  on.exit(options(old))
  cl <- parallel::makePSOCKcluster(n, rscript_args = c("-e", shQuote("options(socketOptions = 'no-delay')")))
  .state$cluster <- cl
  cl
}

# Stops every worker that can still be reached (stopCluster() gives up at
# the first dead one, leaving the others running) and closes the
# connections of the others.
.stop_cluster <- function(cl) {
  for (i in seq_along(cl))
    tryCatch(parallel::stopCluster(cl[i]),
             error = function(e) try(close(cl[[i]]$con), silent = TRUE))
}

.cluster_alive <- function(cl) {
  ok <- .call_nodes(cl, function() TRUE)
  all(vapply(ok, isTRUE, logical(1)))
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

# Deals chunks of 1..n to the workers as they become free, collects the
# results in order, and stops at the first error in FUN. A chunk is at most
# a share of what is left (guided self-scheduling: chunks shrink towards the
# end), and at most what takes about .chunk_seconds at the cost per task
# measured on the last chunk; the first chunks, of unknown cost, are single
# tasks. So a few expensive tasks never land in one chunk (with only the
# guided bound, the first chunk of 20 tasks is 5 of them), while cheap tasks
# still travel in large chunks.
.chunk_seconds <- 0.1

.dispatch <- function(cl, id, n, what, unit, nodes, call) {
  send_call <- utils::getFromNamespace("sendCall", "parallel")
  recv_one <- utils::getFromNamespace("recvOneResult", "parallel")
  p <- length(cl)
  results <- vector("list", n)
  next_i <- 1L
  pending <- vector("list", p)  # the chunk each node works on (NULL: none)
  failure <- NULL
  progress <- .progressor(n)
  cost <- NA_real_       # seconds per task, measured on the last chunk
  sent_at <- numeric(p)  # when each node was sent its chunk
  now <- function() proc.time()[[3L]]
  take <- function() {
    left <- n - next_i + 1L
    size <- max(1L, ceiling(left / (2L * p)))
    if (is.na(cost)) size <- 1L
    else if (cost > 0) size <- max(1L, min(size, floor(.chunk_seconds / cost)))
    idx <- seq.int(next_i, length.out = min(size, left))
    next_i <<- next_i + length(idx)
    idx
  }
  chunk <- .remote(".worker_chunk")
  send <- function(node, idx) {
    sent_at[node] <<- now()
    pending[node] <<- list(idx)
    # The tag carries the call's id: a reply is matched to its chunk exactly.
    send_call(cl[[node]], chunk, list(id, idx), tag = list(id = id, idx = idx))
  }
  busy <- function() !vapply(pending, is.null, logical(1))
  # Outstanding chunks are collected when the loop is left early (an
  # interrupt, a lost worker): see .drain.
  on.exit(call$stuck <- .drain(cl, id, pending, nodes))
  for (node in seq_len(min(p, n))) send(node, take())
  while (any(busy())) {
    d <- tryCatch(recv_one(cl), error = function(e) e)
    if (inherits(d, "error"))
      .raise(list(kind = "system",
                  message = sprintf("%s: lost a worker of the cluster (%s)", what, conditionMessage(d))),
             .user_call())
    node <- d$node
    tag <- d$tag
    if (!is.list(tag) || !identical(tag$id, id) || !identical(tag$idx, pending[[node]])) next  # not ours
    pending[node] <- list(NULL)
    cost <- (now() - sent_at[node]) / length(tag$idx)
    value <- d$value
    if (inherits(value, "try-error")) {
      failure <- failure %||% list(index = NA_integer_, message = as.character(value), class = "error")
    } else if (inherits(value, "pyrmap_task_error")) {
      # Of the failures seen, report the first element in order.
      if (is.null(failure) || is.na(failure$index) || value$index < failure$index) failure <- value
      results[value$done] <- value$values
    } else if (is.null(failure)) {
      results[tag$idx] <- value
      if (!is.null(progress)) progress(amount = length(tag$idx))
    }
    if (is.null(failure) && next_i <= n) send(node, take())
  }
  if (!is.null(failure)) .raise_fun_error(failure, what, unit)
  results
}

# Ends the chunks still running on the nodes of `pending` (non-NULL
# entries) when the dispatch loop was left early, typically by an interrupt
# (Ctrl-C reaches the master only: the workers left the terminal's process
# group). Local workers are sent SIGINT, which .worker_chunk turns into a
# reply; the replies are awaited for .drain_seconds at most. Returns the
# nodes that did not answer by then (stuck in code that ignores interrupts,
# or remote); those of the default cluster are killed. A worker that died is
# not waited for.
.drain_seconds <- 1

.drain <- function(cl, id, pending, nodes) {
  left <- which(!vapply(pending, is.null, logical(1)))
  if (!length(left)) return(integer())
  here <- Sys.info()[["nodename"]]
  local <- function(i) is.list(nodes[[i]]) && identical(nodes[[i]]$host, here)
  for (i in left) if (local(i)) try(tools::pskill(nodes[[i]]$pid, tools::SIGINT), silent = TRUE)
  recv_data <- utils::getFromNamespace("recvData", "parallel")
  deadline <- proc.time()[[3L]] + .drain_seconds
  while (length(left)) {
    wait <- deadline - proc.time()[[3L]]
    if (wait <= 0) break
    ready <- tryCatch(socketSelect(lapply(cl[left], `[[`, "con"), FALSE, wait),
                      error = function(e) rep(TRUE, length(left)))
    for (i in left[ready]) {
      msg <- tryCatch(recv_data(cl[[i]]), error = function(e) NULL)
      # A dead worker, or the reply to this node's chunk: done with it. (A
      # stale reply of an earlier call is skipped.)
      if (is.null(msg) || (is.list(msg$tag) && identical(msg$tag$id, id)))
        left <- setdiff(left, i)
    }
  }
  if (length(left) && identical(.state$cluster, cl))
    for (i in left) if (local(i)) try(tools::pskill(nodes[[i]]$pid, tools::SIGKILL), silent = TRUE)
  left
}

# fun(...) on every node of `cl`. Unlike clusterCall(), a node that cannot be
# reached or fails never leaves another node's reply unread, and each call
# carries a tag of its own, so a stale reply still due from an interrupted
# call is skipped, not taken for this call's. Returns one value per node, or
# the error (a condition) for nodes that failed; the nodes in `no_wait` are
# sent the call but their replies are not awaited (NULL).
.call_nodes <- function(cl, fun, ..., no_wait = integer()) {
  send_call <- utils::getFromNamespace("sendCall", "parallel")
  recv_data <- utils::getFromNamespace("recvData", "parallel")
  args <- list(...)
  tag <- list(nodes_call = .next_counter(), pid = Sys.getpid())
  sent <- lapply(seq_along(cl), function(i) {
    tryCatch({
      send_call(cl[[i]], fun, args, tag = tag)
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
  if (n < 2L || !requireNamespace("progressr", quietly = TRUE)) return(NULL)
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
# (~11 KB for .worker_chunk), which serialize() writes to the socket in many
# small pieces; on a PSOCK connection (no TCP_NODELAY) that costs a ~40 ms
# delayed-ACK stall per message, i.e. per chunk. The stand-in is a few
# hundred bytes and looks the function up in the worker's copy of the
# package.
.remote <- function(name) {
  eval(bquote(function(...) utils::getFromNamespace(.(name), "pyrmap")(...)), globalenv())
}

# FUN, serialized once for all workers. FUN travels with its enclosing
# environment: one defined inside a function carries that function's local
# variables along, copied into every worker. Big ones are reported, since
# the remedy (passing them in VARS) is easy and the cost is not visible.
.fun_warn_bytes <- 64 * 1024^2

.pack_fun <- function(FUN, what) {
  bytes <- serialize(FUN, NULL)
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

# Receives a call's job: maps its pages (views cached by generation) and
# keeps FUN, so that chunks carry only indices. Jobs of earlier calls that
# were never ended (an interrupted master) are released first.
.worker_start <- function(id, job) {
  for (old in setdiff(names(.state$jobs), id)) .worker_end(old)
  ok <- FALSE
  on.exit(if (!ok) .release_job_views(job))  # e.g. a variable released meanwhile
  job$old_options <- options(pyrmap.segment_dir = job$dir)
  job$x_value <- .view_of(job$x$ns, job$x$var, job$x$dir)
  args <- lapply(job$vars, function(v) .view_of(v$ns, v$var, v$dir %||% job$dir))
  names(args) <- vapply(job$vars, `[[`, "", "arg")
  job$args <- args
  job$is_view <- !is.null(.pyrmap_view_info(job$x_value))
  job$mapped <- .pyrmap_mapping_bytes(job$x_value) + sum(vapply(args, .pyrmap_mapping_bytes, 0))
  job$fun <- unserialize(job$fun)
  .state$jobs[[id]] <- job
  ok <- TRUE
  invisible(TRUE)
}

.release_job_views <- function(job) {
  if ("old_options" %in% names(job)) options(job$old_options)
  .forget_view(.key(job$x$ns, job$x$var))
  for (v in job$vars) .forget_view(.key(v$ns, v$var))
}

# Releases the call's views in this worker. When they mapped at least
# .end_collect_bytes, a collection follows, so that the mappings go now:
# nothing else in the worker would prompt R to collect the small view
# objects (and the chunks' column views) that hold them. A collection costs
# a few milliseconds in a worker; calls over small data never pay it.
.end_collect_bytes <- 64 * 1024^2

.worker_end <- function(id) {
  job <- .state$jobs[[id]]
  .state$jobs[[id]] <- NULL
  if (!is.null(job)) {
    .release_job_views(job)
    if (isTRUE(job$mapped >= .end_collect_bytes)) {
      job <- NULL
      invisible(gc(verbose = FALSE))
    }
  }
  invisible(TRUE)
}

# FUN over elements `idx`; on an error, the results so far and where it
# failed (class pyrmap_task_error).
.worker_chunk <- function(id, idx) {
  k <- 0L
  out <- vector("list", length(idx))
  failed <- function(message, class) {
    structure(list(index = if (k >= 1L) idx[[k]] else idx[[1L]], message = message, class = class,
                   done = idx[seq_len(max(k - 1L, 0L))], values = out[seq_len(max(k - 1L, 0L))]),
              class = "pyrmap_task_error")
  }
  tryCatch({
    job <- .state$jobs[[id]]
    if (is.null(job)) stop("pyrmap: this worker has no job ", id)
    x <- job$x_value
    for (k in seq_along(idx)) {
      i <- idx[[k]]
      el <- if (job$kind == "lapply" || isTRUE(job$columns)) x[[i]]
            else if (job$is_view) .pyrmap_slice(x, job$margin, i)
            else if (job$margin == 1L) x[i, ] else x[, i]
      args <- if (is.null(job$first)) c(list(el), job$args)
              else c(structure(list(el), names = job$first), job$args)
      r <- do.call(job$fun, args, quote = TRUE)
      if (!is.null(r)) out[[k]] <- r
    }
    out
  }, error = function(e) failed(conditionMessage(e), class(e)),
  # An interrupt (the master's, when it was interrupted itself) becomes a
  # reply too: parallel's worker would drop the task without one.
  interrupt = function(e) failed("interrupted", class(e)))
}

.worker_gc <- function(namespace) {
  .gc_namespace(namespace)
  invisible(TRUE)
}
