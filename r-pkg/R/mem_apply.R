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
#' unless a handler is enabled, e.g. `progressr::handlers(global = TRUE)`).
#'
#' @param X For `memApply()`, a double, integer, logical or raw matrix; for
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
#' \dontrun{
#' X <- matrix(rnorm(1e6), 1000, 1000)
#' y <- rnorm(1000)
#' res <- memApply(X, 2, function(v, y) cor(v, y), VARS = list(y = y))
#' ans <- memLapply(list(1:3, 4:6), function(el, w) sum(el * w), VARS = list(w = 1:3))
#' }
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
  job <- list(kind = kind, margin = margin, fun = FUN, first = names(formals(FUN))[1L])
  temp <- list(ns = sprintf(".pyrmap.%d.%d", Sys.getpid(), .next_counter()), vars = character())
  on.exit(for (v in temp$vars) try(releaseVariables(temp$ns, v), silent = TRUE), add = TRUE)

  # The data: a registered name, a view of a registered variable, or an object.
  ref <- .variable_ref(X, NAMESPACE, what, "X")
  if (ref$temp) temp$vars <- c(temp$vars, ref$var)
  if (kind == "apply" && is.null(ref$ns) && !is.matrix(X))
    .usage_error(sprintf("%s: X must be a matrix (double, integer, logical or raw), or the name of a registered matrix", what))
  if (kind == "lapply" && is.null(ref$ns)) {
    if (is.atomic(X) && !is.null(X)) X <- as.list(X)
    if (!is.list(X)) .usage_error(sprintf("%s: X must be a list (or vector), or the name of a registered list", what))
  }
  if (is.null(ref$ns)) {
    ref <- list(ns = temp$ns, var = "X", temp = TRUE)
    .register_one(temp$ns, "X", X)
    temp$vars <- c(temp$vars, "X")
  }
  job$x <- ref[c("ns", "var")]
  meta <- .metadata(ref$ns, ref$var)
  n <- .task_count(kind, meta, margin, what, xlabel)

  # Side data: names of registered variables, or objects to register.
  job$vars <- .side_data(VARS, NAMESPACE, temp, what, FUN)
  temp$vars <- c(temp$vars, attr(job$vars, "temp"))
  if (n == 0L) return(list())

  cl <- if (is.null(CLUSTER)) .default_cluster(MAX.CORES) else CLUSTER
  .check_cluster(cl)
  .prepare_cluster(cl)
  id <- sprintf("%d.%d", Sys.getpid(), .next_counter())
  parallel::clusterCall(cl, .worker_start, id, job)
  on.exit(try(parallel::clusterCall(cl, .worker_end, id), silent = TRUE), add = TRUE, after = FALSE)
  .dispatch(cl, id, n, what, if (kind == "apply") c("row", "column")[margin] else "element")
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
  if (!is.null(page)) return(list(ns = page$ns, var = page$var, temp = FALSE))
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
.side_data <- function(VARS, NAMESPACE, temp, what, FUN) {
  if (is.null(VARS)) return(structure(list(), temp = character()))
  registered <- character()
  if (is.character(VARS) && is.null(dim(VARS))) {
    if (is.null(NAMESPACE))
      .usage_error(sprintf("%s: VARS names registered variables: give their NAMESPACE", what))
    refs <- lapply(VARS, function(v) list(ns = NAMESPACE, var = v, arg = v))
  } else if (is.list(VARS) && !is.data.frame(VARS)) {
    nm <- names(VARS)
    if (length(VARS) && (is.null(nm) || anyNA(nm) || !all(nzchar(nm)) || anyDuplicated(nm)))
      .usage_error(sprintf("%s: VARS must be a list with a distinct name for every element", what))
    refs <- vector("list", length(VARS))
    for (i in seq_along(VARS)) {
      ref <- .pyrmap_view_page(VARS[[i]])  # a view of a registered variable: no copy
      if (is.null(ref)) {
        var <- paste0("VARS.", nm[[i]])
        .register_one(temp$ns, var, VARS[[i]])
        registered <- c(registered, var)
        ref <- list(ns = temp$ns, var = var)
      }
      refs[[i]] <- list(ns = ref$ns, var = ref$var, arg = nm[[i]])
    }
  } else {
    .usage_error(sprintf("%s: VARS must be a named list of objects or a character vector of registered names", what))
  }
  args <- names(formals(FUN))
  missing <- setdiff(vapply(refs, `[[`, "", "arg"), args)
  if (length(missing) && !("..." %in% args))
    .usage_error(sprintf("%s: FUN has no argument named %s (VARS names must be FUN's argument names)",
                         what, paste(sQuote(missing, FALSE), collapse = ", ")))
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
  if (!is.null(cl)) try(parallel::stopCluster(cl), silent = TRUE)
  .state$cluster <- NULL
  cl <- parallel::makePSOCKcluster(n)
  .state$cluster <- cl
  cl
}

.cluster_alive <- function(cl) {
  ok <- tryCatch(all(unlist(parallel::clusterCall(cl, function() TRUE))), error = function(e) FALSE)
  isTRUE(ok)
}

# Makes sure every worker can load this package from where it is installed.
# (The function is given the global environment, so that sending it does
# not itself require the package on the worker.)
.prepare_cluster <- function(cl) {
  lib <- dirname(system.file(package = "pyrmap"))
  add_lib <- function(lib) {
    if (!(lib %in% .libPaths())) .libPaths(c(lib, .libPaths()))
    requireNamespace("pyrmap", quietly = TRUE)
  }
  environment(add_lib) <- globalenv()
  ok <- unlist(parallel::clusterCall(cl, add_lib, lib))
  if (!all(ok))
    .raise(list(kind = "system", message = sprintf("the cluster's workers cannot load pyrmap from '%s'", lib)),
           sys.call(-1L))
}

# Deals chunks of 1..n to the workers as they become free (guided
# self-scheduling: each chunk is a share of what is left, so chunks shrink
# towards the end and uneven tasks balance), collects the results in order,
# and stops at the first error in FUN.
.dispatch <- function(cl, id, n, what, unit) {
  send_call <- utils::getFromNamespace("sendCall", "parallel")
  recv_one <- utils::getFromNamespace("recvOneResult", "parallel")
  p <- length(cl)
  results <- vector("list", n)
  next_i <- 1L
  outstanding <- 0L
  failure <- NULL
  progress <- .progressor(n)
  take <- function() {
    left <- n - next_i + 1L
    size <- max(1L, ceiling(left / (2L * p)))
    idx <- seq.int(next_i, length.out = min(size, left))
    next_i <<- next_i + length(idx)
    idx
  }
  # Outstanding chunks are always collected, even when interrupted: a reply
  # left in a worker's socket would be read as the answer to the next call.
  on.exit(while (outstanding > 0L) {
    recv_one(cl)
    outstanding <- outstanding - 1L
  })
  for (node in seq_len(min(p, n))) {
    idx <- take()
    send_call(cl[[node]], .worker_chunk, list(id, idx), tag = idx)
    outstanding <- outstanding + 1L
  }
  while (outstanding > 0L) {
    d <- recv_one(cl)
    outstanding <- outstanding - 1L
    value <- d$value
    if (inherits(value, "try-error")) {
      failure <- failure %||% list(index = NA_integer_, message = as.character(value), class = "error")
    } else if (inherits(value, "pyrmap_task_error")) {
      failure <- failure %||% value
      results[value$done] <- value$values
    } else if (is.null(failure)) {
      results[d$tag] <- value
      if (!is.null(progress)) progress(amount = length(d$tag))
    }
    if (is.null(failure) && next_i <= n) {
      idx <- take()
      send_call(cl[[d$node]], .worker_chunk, list(id, idx), tag = idx)
      outstanding <- outstanding + 1L
    }
  }
  if (!is.null(failure)) .raise_fun_error(failure, what, unit)
  results
}

.progressor <- function(n) {
  if (n < 2L || !requireNamespace("progressr", quietly = TRUE)) return(NULL)
  progressr::progressor(steps = n)
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

# ---- the workers' side ----------------------------------------------------------

# Receives a call's job: maps its pages (views cached by generation) and
# keeps FUN, so that chunks carry only indices.
.worker_start <- function(id, job) {
  job$x_value <- .view_of(job$x$ns, job$x$var)
  args <- lapply(job$vars, function(v) .view_of(v$ns, v$var))
  names(args) <- vapply(job$vars, `[[`, "", "arg")
  job$args <- args
  job$is_view <- !is.null(.pyrmap_view_info(job$x_value))
  .state$jobs[[id]] <- job
  invisible(TRUE)
}

# Releases the call's views in this worker.
.worker_end <- function(id) {
  job <- .state$jobs[[id]]
  .state$jobs[[id]] <- NULL
  if (!is.null(job)) {
    releaseViews(job$x$ns, job$x$var)
    for (v in job$vars) releaseViews(v$ns, v$var)
  }
  invisible(TRUE)
}

# FUN over elements `idx`; on an error, the results so far and where it
# failed (class pyrmap_task_error).
.worker_chunk <- function(id, idx) {
  job <- .state$jobs[[id]]
  if (is.null(job)) stop("pyrmap: this worker has no job ", id)
  x <- job$x_value
  out <- vector("list", length(idx))
  k <- 0L
  value <- tryCatch({
    for (k in seq_along(idx)) {
      i <- idx[[k]]
      el <- if (job$kind == "lapply") x[[i]]
            else if (job$is_view) .pyrmap_slice(x, job$margin, i)
            else if (job$margin == 1L) x[i, ] else x[, i]
      args <- if (is.null(job$first)) c(list(el), job$args)
              else c(structure(list(el), names = job$first), job$args)
      r <- do.call(job$fun, args, quote = TRUE)
      if (!is.null(r)) out[[k]] <- r
    }
    out
  }, error = function(e) {
    structure(list(index = idx[[k]], message = conditionMessage(e), class = class(e),
                   done = idx[seq_len(k - 1L)], values = out[seq_len(k - 1L)]),
              class = "pyrmap_task_error")
  })
  value
}

.worker_gc <- function(namespace) {
  .gc_namespace(namespace)
  invisible(TRUE)
}
