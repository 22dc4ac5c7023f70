# Shared-memory domains of a cluster: which workers share the master's
# shared memory, and which share each other's.
#
# A cluster may have workers on other hosts (or in other containers or IPC
# namespaces), where the master's pages do not exist. Which workers share
# memory is found by a fact, not by host names: a process makes a token
# page of random bytes, and a worker that can open that page and read the
# same bytes shares its memory. The workers are grouped into domains:
# domain 1 is the master's; every other domain has a leader (its first
# worker), which receives each variable of a call once and registers it in
# its domain's memory under the same namespace and name, where the
# domain's workers (and their retrieveViews() calls) find it. So a call
# sends (domains - 1) copies of its data, not one per worker.
#
# The grouping is cached per cluster (by its connections, which cannot move
# to another host while open) and rechecked by every call across domains:
# each worker outside the master's domain is told the token of its domain
# with the job and refuses the job if it cannot read it, after which the
# domains are found anew. (The master's own token lives only while the
# domains are found.) Variables a
# domain received are remembered with the master's generation of the page:
# a registered variable is sent again only when it changed; the copies of
# a call's temporary variables are released at the end of the call, those
# of registered ones by releaseVariables() (and, when the master dies, by
# `pyrmap gc` on that host: their owner is the leader, which ends with it).

# This process's token: a page of 32 random bytes in a namespace of its
# own, made once per process (a forked child makes its own).
.domain_token <- function() {
  tok <- .state$domain_token
  if (!is.null(tok) && identical(tok$pid, Sys.getpid())) return(tok[c("ns", "dir", "value")])
  con <- file("/dev/urandom", "rb", raw = TRUE)
  value <- tryCatch(readBin(con, "raw", 32L), finally = close(con))
  ns <- sprintf(".pyrmap-domain.%d", Sys.getpid())
  info <- .pyrmap_register(ns, "token", value)
  if (!isTRUE(info$ok)) .raise(info, .user_call())
  .state$domain_token <- list(ns = ns, dir = info$dir, value = value, pid = Sys.getpid())
  .state$domain_token[c("ns", "dir", "value")]
}

.release_domain_token <- function() {
  tok <- .state$domain_token
  if (!is.null(tok) && identical(tok$pid, Sys.getpid()))
    try(.pyrmap_release(tok$ns, "token", tok$dir), silent = TRUE)
  .state$domain_token <- NULL
}

# TRUE if this process can open the token page `tok` and reads its bytes.
.reads_token <- function(tok) {
  info <- tryCatch(.pyrmap_open(tok$ns, "token", tok$dir), error = function(e) NULL)
  isTRUE(info$ok) && identical(as.raw(info$value), tok$value)
}

# (worker) Which of `tokens` this worker reads, and where its own pages go.
.domain_probe <- function(tokens) {
  list(reads = vapply(tokens, .reads_token, logical(1)), dir = pyrmap_segment_dir(),
       pid = Sys.getpid(), host = Sys.info()[["nodename"]])
}

# The cache key of a cluster: its nodes' connections (NULL when a node has
# none, e.g. a forked node of another kind: such a cluster is not cached).
.cluster_key <- function(cl) {
  ids <- vapply(cl, function(node) {
    con <- if (is.list(node)) node$con else NULL
    id <- if (inherits(con, "connection")) attr(con, "conn_id") else NULL
    if (is.null(id)) NA_character_ else paste(as.integer(con), format(id))
  }, "")
  if (anyNA(ids)) NULL else paste(ids, collapse = " ")
}

# The domains of cluster `cl`: list(domain = one per node, leaders = the
# first node of each domain (NA for the master's), tokens, dirs = each
# node's segment directory, shipped = per domain, the variables it holds).
.domains <- function(cl, what) {
  key <- .cluster_key(cl)
  if (!is.null(key) && !is.null(.state$domains[[key]])) return(.state$domains[[key]])
  p <- length(cl)
  .prepare_cluster(cl)  # the package on every worker (from the master's library)
  tokens <- list(.domain_token())
  domain <- rep(NA_integer_, p)
  dirs <- character(p)
  probe <- .check_nodes(.call_nodes(cl, .remote(".domain_probe"), tokens), what,
                        "could not look for the master's shared memory")
  dirs <- vapply(probe, `[[`, "", "dir")
  domain[vapply(probe, function(r) isTRUE(r$reads[[1L]]), logical(1))] <- 1L
  while (anyNA(domain)) {
    todo <- which(is.na(domain))
    leader <- todo[[1L]]
    tok <- .check_nodes(.call_nodes(cl[leader], .remote(".domain_token")), what,
                        "could not make a token page")[[1L]]
    reads <- .check_nodes(.call_nodes(cl[todo], .remote(".domain_probe"), list(tok)), what,
                          "could not look for another worker's shared memory")
    seen <- vapply(reads, function(r) isTRUE(r$reads[[1L]]), logical(1))
    if (!seen[[1L]])
      .raise(list(kind = "system",
                  message = sprintf("%s: worker %d of the cluster cannot read back its own shared memory (%s)",
                                    what, leader, tok$dir)), .user_call())
    tokens[[length(tokens) + 1L]] <- tok
    domain[todo[seen]] <- length(tokens)
  }
  # The master's token is needed no more: its workers cannot leave its
  # memory while their connections stay open (the others' tokens stay, for
  # the check each job makes).
  .release_domain_token()
  leaders <- c(NA_integer_, vapply(seq_along(tokens)[-1L], function(d) match(d, domain), 1L))
  entry <- list(cl = cl, domain = domain, leaders = leaders, tokens = tokens, dirs = dirs,
                shipped = rep(list(list()), length(tokens)))
  if (!is.null(key)) .state$domains[[key]] <- entry
  entry
}

.forget_domains <- function(cl) {
  key <- .cluster_key(cl)
  if (!is.null(key)) .state$domains[[key]] <- NULL
}

# The per-node jobs of a call on a cluster with workers outside the
# master's domain (NULL when all share it): the pages of `job` are sent to
# every other domain's leader (once per domain; a registered variable only
# when it changed since it was sent), and each node's job names its
# domain's token and segment directory. `temp` is the call's namespace of
# temporary variables; their copies are released by the returned
# list's `cleanup`.
.domain_jobs <- function(cl, job, temp, what) {
  doms <- .domains(cl, what)
  if (all(doms$domain == 1L)) return(NULL)
  refs <- c(list(job$x), job$vars)
  key <- .cluster_key(cl)
  made <- list()
  # (Copies that releaseVariables() released already are not asked again.)
  cleanup <- function() {
    for (m in made) {
      held <- m$vars
      if (!is.null(key) && !is.null(.state$domains[[key]])) {
        shipped <- .state$domains[[key]]$shipped[[m$domain]]
        held <- m$vars[vapply(m$vars, function(v) !is.null(shipped[[.key(m$ns, v)]]), logical(1))]
        for (v in held) .state$domains[[key]]$shipped[[m$domain]][[.key(m$ns, v)]] <- NULL
      }
      if (length(held))
        try(.call_nodes(cl[doms$leaders[[m$domain]]], .remote(".domain_release"), m$ns, held), silent = TRUE)
    }
  }
  ok <- FALSE
  on.exit(if (!ok) cleanup())
  for (d in seq_along(doms$tokens)[-1L]) {
    node <- doms$leaders[[d]]
    for (r in refs) {
      k <- .key(r$ns, r$var)
      gen <- .pyrmap_generation(r$ns, r$var, r$dir %||% job$dir)
      if (!identical(r$ns, temp$ns) && identical(doms$shipped[[d]][[k]], gen)) next
      value <- .view_of(r$ns, r$var, r$dir %||% job$dir)
      res <- .call_nodes(cl[node], .remote(".domain_receive"), r$ns, r$var, value)[[1L]]
      value <- NULL
      if (inherits(res, "error") || !isTRUE(res$ok)) {
        .forget_domains(cl)
        .raise(list(kind = "system",
                    message = sprintf("%s: worker %d of the cluster (another shared-memory domain) could not take %s: %s",
                                      what, node,
                                      if (identical(r$ns, temp$ns)) r$var
                                      else sprintf("variable '%s' of namespace '%s'", r$var, r$ns),
                                      if (inherits(res, "error")) conditionMessage(res) else res$message)),
               .user_call())
      }
      doms$shipped[[d]][[k]] <- gen
      if (!is.null(key)) .state$domains[[key]] <- doms
      if (identical(r$ns, temp$ns)) {
        made[[length(made) + 1L]] <- list(domain = d, ns = temp$ns, vars = r$var)
      }
    }
  }
  jobs <- lapply(seq_along(cl), function(i) {
    d <- doms$domain[[i]]
    j <- job
    if (d != 1L) {
      j$domain_token <- doms$tokens[[d]]
      j$dir <- doms$dirs[[doms$leaders[[d]]]]
      j$x$dir <- j$dir
      j$vars <- lapply(j$vars, function(v) { v$dir <- j$dir; v })
    }
    j
  })
  ok <- TRUE
  list(jobs = jobs, cleanup = cleanup)
}

# (leader) Registers a variable sent by the master in this domain, in
# place of an earlier copy of it.
.domain_receive <- function(ns, var, value) {
  if (!is.null(.state$pages[[.key(ns, var)]])) try(releaseVariables(ns, var), silent = TRUE)
  info <- .pyrmap_register(ns, var, value)
  if (!isTRUE(info$ok)) return(info)
  .state$pages[[.key(ns, var)]] <- list(ns = ns, var = var, generation = info$generation, dir = info$dir)
  list(ok = TRUE)
}

# (leader) Releases copies this domain received.
.domain_release <- function(ns, vars) {
  for (v in vars)
    if (!is.null(.state$pages[[.key(ns, v)]])) try(releaseVariables(ns, v), silent = TRUE)
  invisible(TRUE)
}

# releaseVariables() in the master: the copies other domains received of
# the released variables go too.
.domain_forget_variables <- function(ns, vars) {
  for (key in names(.state$domains)) {
    doms <- .state$domains[[key]]
    for (d in seq_along(doms$shipped)[-1L]) {
      held <- intersect(vapply(vars, function(v) .key(ns, v), ""), names(doms$shipped[[d]]))
      if (!length(held)) next
      doms$shipped[[d]][held] <- NULL
      try(.call_nodes(doms$cl[doms$leaders[[d]]], .remote(".domain_release"), ns, vars), silent = TRUE)
    }
    .state$domains[[key]] <- doms
  }
}

# ---- a call on a cluster of several domains -----------------------------------
#
# The call's objects are registered as pages in a temporary namespace (the
# engine's call segment exists in the master's domain only), sent to the
# other domains, and mapped by every worker in its own domain; chunks of
# tasks are dealt one message each, and results come back as messages.

.domain_call <- function(cl, job, objects, n, what, unit, out, shape) {
  temp <- list(ns = sprintf(".pyrmap.%d.%d", Sys.getpid(), .next_counter()), vars = character())
  on.exit(for (v in temp$vars) try(releaseVariables(temp$ns, v), silent = TRUE), add = TRUE)
  as_page <- function(ref) {
    if (!identical(ref$src, "call")) return(ref)
    var <- objects[[ref$object + 1L]]$label   # "X", "VARS 'y'": how messages name it
    value <- objects[[ref$object + 1L]]$value
    # What a page cannot hold as it is (a list of strings, say) goes
    # serialized, and each worker unserializes it.
    serialized <- !.page_can_hold(value)
    if (!(var %in% temp$vars)) {
      .register_one(temp$ns, var, if (serialized) serialize(value, NULL, xdr = FALSE) else value)
      temp$vars <<- c(temp$vars, var)
    }
    c(list(src = "page", ns = temp$ns, var = var, dir = .state$pages[[.key(temp$ns, var)]]$dir,
           serialized = serialized), ref[intersect(names(ref), c("mode", "arg"))])
  }
  job$x <- as_page(job$x)
  job$vars <- lapply(job$vars, as_page)
  id <- sprintf("%d.%d", Sys.getpid(), .next_counter())
  call <- new.env(parent = emptyenv())
  call$stuck <- integer()
  on.exit(.call_nodes(cl, .remote(".domain_end"), id, no_wait = call$stuck), add = TRUE, after = FALSE)
  for (attempt in 1:2) {
    dj <- .domain_jobs(cl, job, temp, what)
    if (!is.null(dj)) on.exit(dj$cleanup(), add = TRUE)
    each <- lapply(seq_along(cl), function(i) list(id, if (is.null(dj)) job else dj$jobs[[i]]))
    started <- .call_nodes(cl, .remote(".domain_start"), each = each)
    moved <- vapply(started, inherits, logical(1), "pyrmap_domain_changed")
    if (!any(moved) || attempt == 2L) break
    .forget_domains(cl)  # a worker no longer shares what it did: look again
  }
  .check_nodes(started, what, "could not start the call")
  results <- .domain_dispatch(cl, id, n, what, unit, call)
  if (is.null(out$spec)) return(results)
  v <- vapply(results, identity, out$template, USE.NAMES = FALSE)
  if (!is.null(shape$dim)) dim(v) <- shape$dim
  if (!is.null(shape$dimnames)) dimnames(v) <- shape$dimnames
  v
}

# Deals chunks of 1..n to the workers as they become free, collects the
# results in order, and stops at the first error in FUN. Chunks are sized
# as the engine's workers size theirs (.chunk_seconds): one task first,
# then at most a share of what is left and what takes about .chunk_seconds
# at the cost per task last measured.
.domain_dispatch <- function(cl, id, n, what, unit, call) {
  send_call <- utils::getFromNamespace("sendCall", "parallel")
  recv_one <- utils::getFromNamespace("recvOneResult", "parallel")
  p <- length(cl)
  results <- vector("list", n)
  next_i <- 1L
  pending <- vector("list", p)  # the chunk each node works on (NULL: none)
  failure <- NULL
  progress <- .progressor(n)
  cost <- NA_real_
  sent_at <- numeric(p)
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
  chunk <- .remote(".domain_chunk")
  send <- function(node, idx) {
    sent_at[node] <<- now()
    pending[node] <<- list(idx)
    send_call(cl[[node]], chunk, list(id, idx), tag = list(id = id, idx = idx))
  }
  busy <- function() !vapply(pending, is.null, logical(1))
  # Chunks still out when the loop is left early (an interrupt, a lost
  # worker) are awaited for .drain_seconds; nodes that do not answer by
  # then are not waited for at the end of the call.
  on.exit(call$stuck <- .domain_drain(cl, id, pending))
  for (node in seq_len(min(p, n))) send(node, take())
  while (any(busy())) {
    d <- tryCatch(recv_one(cl), error = function(e) e)
    if (inherits(d, "error"))
      .raise(list(kind = "system", message = sprintf("%s: lost a worker of the cluster (%s)", what,
                                                     conditionMessage(d))), .user_call())
    node <- d$node
    tag <- d$tag
    if (!is.list(tag) || !identical(tag$id, id) || !identical(tag$idx, pending[[node]])) next  # not ours
    pending[node] <- list(NULL)
    cost <- (now() - sent_at[node]) / length(tag$idx)
    value <- d$value
    if (inherits(value, "try-error")) {
      failure <- failure %||% list(index = NA_integer_, message = as.character(value), class = "error")
    } else if (inherits(value, "pyrmap_task_error")) {
      if (is.null(failure) || is.na(failure$index) || value$index < failure$index) failure <- value
      results[value$done] <- value$values
    } else if (is.null(failure)) {
      results[tag$idx] <- value
      if (!is.null(progress)) progress(amount = length(tag$idx))
    }
    if (is.null(failure) && next_i <= n) send(node, take())
  }
  if (!is.null(failure)) {
    if (identical(failure$message, "interrupted") && "interrupt" %in% failure$class)
      .raise(list(kind = "interrupt", message = sprintf("%s: interrupted", what)), .user_call())
    .raise_fun_error(failure, what, unit)
  }
  results
}

# Awaits, for .drain_seconds at most, the chunks still out on the nodes of
# `pending` (the workers of other hosts cannot be interrupted from here; a
# worker of this host is sent SIGINT, which .domain_chunk turns into a
# reply). Returns the nodes that did not answer.
.domain_drain <- function(cl, id, pending) {
  left <- which(!vapply(pending, is.null, logical(1)))
  if (!length(left)) return(integer())
  .await_replies(cl, id, left)
}

# TRUE if a registry page holds `x` as it is: an atomic vector, matrix or
# array of double, integer, logical or raw (with no attributes but its
# dimensions), or a list of them.
.page_can_hold <- function(x) {
  if (is.list(x) && !is.object(x)) return(length(x) > 0L && .Call(pyrmap_packable, x))
  is.atomic(x) && !is.null(x) && typeof(x) %in% c("double", "integer", "logical", "raw") &&
    all(names(attributes(x)) %in% c("dim", "dimnames"))
}

# (worker) Takes a call's job: maps its pages in this worker's domain and
# keeps FUN, so that chunks carry only indices. A job naming a domain token
# this worker cannot read is refused (class pyrmap_domain_changed).
.domain_start <- function(id, job) {
  .Call(pyrmap_leave_process_group)
  for (old in setdiff(names(.state$domain_jobs), id)) .domain_end(old)
  if (!is.null(job$domain_token) && !.reads_token(job$domain_token))
    return(structure(class = c("pyrmap_domain_changed", "error", "condition"),
                     list(message = "this worker no longer shares the memory of its domain", call = NULL)))
  job$old_options <- options(pyrmap.segment_dir = job$dir)
  ok <- FALSE
  on.exit(if (!ok) .domain_release_views(job))
  value_of <- function(v) {
    x <- .view_of(v$ns, v$var, v$dir %||% job$dir)
    if (isTRUE(v$serialized)) unserialize(x) else x
  }
  job$x_value <- value_of(job$x)
  args <- lapply(job$vars, value_of)
  names(args) <- vapply(job$vars, `[[`, "", "arg")
  job$args <- args
  job$is_view <- !is.null(.pyrmap_view_info(job$x_value))
  job$fun <- unserialize(job$fun)
  .state$domain_jobs[[id]] <- job
  ok <- TRUE
  invisible(TRUE)
}

.domain_release_views <- function(job) {
  if ("old_options" %in% names(job)) options(job$old_options)
  .forget_view(.key(job$x$ns, job$x$var))
  for (v in job$vars) .forget_view(.key(v$ns, v$var))
}

# (worker) The end of a call: its views go (and the mappings with them).
.domain_end <- function(id) {
  job <- .state$domain_jobs[[id]]
  .state$domain_jobs[[id]] <- NULL
  if (!is.null(job)) {
    .domain_release_views(job)
    job <- NULL
    invisible(gc(verbose = FALSE))
  }
  invisible(TRUE)
}

# (worker) FUN over tasks `idx`; on an error, the results so far and where
# it failed (class pyrmap_task_error).
.domain_chunk <- function(id, idx) {
  k <- 0L
  out <- vector("list", length(idx))
  failed <- function(message, class) {
    structure(list(index = if (k >= 1L) idx[[k]] else idx[[1L]], message = message, class = class,
                   done = idx[seq_len(max(k - 1L, 0L))], values = out[seq_len(max(k - 1L, 0L))]),
              class = "pyrmap_task_error")
  }
  tryCatch({
    job <- .state$domain_jobs[[id]]
    if (is.null(job)) stop("pyrmap: this worker has no job ", id)
    x <- job$x_value
    for (k in seq_along(idx)) {
      i <- idx[[k]]
      el <- if (job$x$mode != "matrix") x[[i]]
            else if (job$is_view) .pyrmap_slice(x, job$margin, i)
            else if (job$margin == 1L) x[i, ] else x[, i]
      args <- if (is.null(job$first)) c(list(el), job$args)
              else c(structure(list(el), names = job$first), job$args)
      r <- do.call(job$fun, args, quote = TRUE)
      if (!is.null(r)) out[[k]] <- r
    }
    out
  }, error = function(e) failed(conditionMessage(e), class(e)),
  interrupt = function(e) failed("interrupted", class(e)))
}
