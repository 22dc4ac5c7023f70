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
# to another host while open) and rechecked by every call: each worker is
# told the token of its domain with the job and refuses the job if it
# cannot read it, after which the domains are found anew. Variables a
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
                    message = sprintf("%s: worker %d of the cluster (another shared-memory domain) could not take variable '%s' of namespace '%s': %s",
                                      what, node, r$var, r$ns,
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
    j$domain_token <- doms$tokens[[d]]
    if (d != 1L) {
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
