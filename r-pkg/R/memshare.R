#' Shared-memory variables: register, retrieve, release
#'
#' The API of the CRAN package memshare on pyrmap's core: code written for
#' memshare runs after changing `library(memshare)` to `library(pyrmap)`.
#'
#' `registerVariables()` copies each object of a named list once into shared
#' memory (a *page* owned by this session), under `namespace`. Any R process
#' of the same user — cluster workers included — then gets read-only ALTREP
#' *views* of it with `retrieveViews()`, without a copy. Supported: double,
#' integer, logical and raw vectors, matrices and arrays (and
#' `bit64::integer64` vectors), lists of them, and data.frames whose columns
#' are such vectors (with automatic row names): their columns form one page,
#' and `retrieveViews()` gives back a data.frame of views (`memApply(X,
#' 2, FUN)` over it hands FUN each column as it is). Anything else
#' (character, factor, Date, a data.frame with such columns or with row
#' names, ...) is an error naming the variable (and the column).
#'
#' Views are read-only: modifying one makes an ordinary private copy (R's copy
#' on write), and C code writing through its data pointer writes into private
#' pages, never into other processes' data. A view stays valid as long as an R
#' object refers to it — after `releaseViews()`, `releaseVariables()` or the
#' owner's exit too; the memory is freed once no view remains in any process.
#' A name that was released and registered again is never served from an old
#' view: every retrieval checks the page's generation.
#'
#' `releaseViews()` forgets this session's views of the variables;
#' `releaseVariables()` removes variables this session registered. As in
#' memshare, a name that this session never retrieved is an error of
#' `releaseViews()` (class `pyrmap_not_viewed`), and a name that is not
#' registered is an error of `releaseVariables()` (class
#' `pyrmap_not_registered`; another process's variable is a
#' `pyrmap_usage_error`); the message names the namespace and the variable,
#' and nothing is released when one name is wrong. `retrieveMetadata()`
#' opens a view in memshare; here it maps nothing, but `releaseViews()`
#' accepts the names it was asked about.
#' `viewList()` and `pageList()` list this session's views and variables as
#' `"<namespace>.<variable>"`. `retrieveMetadata()` describes a variable
#' without mapping it. `memshare_gc()` releases every view and variable of a
#' namespace in this session (and in the workers of `cluster`), and removes
#' the shared memory of crashed sessions.
#'
#' Pages live in the segment directory (see [pyrmap_segment_dir()]):
#' `getOption("pyrmap.segment_dir")`, else the environment variable
#' `PYRMAP_SEGMENT_DIR`, else `/dev/shm`; every process that retrieves a
#' variable must look in the directory it was registered in (`memApply()`
#' and `memLapply()` tell their workers). A page is read-only once written.
#' Another user's file under a page's name (page names are predictable, and
#' `/dev/shm` is writable by everyone) is never served as your data: the
#' error names the file and its owner; a segment directory of your own, for
#' example `options(pyrmap.segment_dir = "DISK")`, cannot be interfered with.
#'
#' @param namespace A string: the shared-memory space.
#' @param variableList A named list of the objects to register.
#' @param variableNames,variableName Character vector of variable names.
#' @param cluster A `parallel` cluster whose workers also release, or `NULL`.
#' @return `registerVariables()`, `releaseViews()`, `releaseVariables()`:
#'   invisibly `NULL`. `retrieveViews()`: a named list of views (a list
#'   variable is a list of views, an ALTLIST on R >= 4.3).
#'   `retrieveMetadata()`: for one name, a list with `type` (`"vector"`,
#'   `"matrix"`, `"array"` or `"list"`), `mode`, and `n` (vectors, lists),
#'   `nrow`/`ncol` (matrices) or `dim` (arrays); for several names, a named
#'   list of those. `viewList()`, `pageList()`: lists of strings.
#'   `memshare_gc()`: invisibly, the names of crashed sessions' segments it
#'   removed.
#' @examples
#' ns <- "demo"
#' X <- matrix(rnorm(1e4), 100, 100)
#' registerVariables(ns, list(X = X, y = 1:100))
#' pageList()
#' retrieveMetadata(ns, "X")
#' vw <- retrieveViews(ns, c("X", "y"))
#' mean(vw$X[, 1])
#' viewList()
#' releaseViews(ns, c("X", "y"))
#' releaseVariables(ns, c("X", "y"))
#'
#' # Python can read them too (a Jupyter session next to R):
#' #   import pyrmap.registry; pyrmap.registry.get("demo", "X")
#' @name shared-variables
NULL

#' @rdname shared-variables
#' @export
registerVariables <- function(namespace, variableList) {
  .check_namespace(namespace)
  if (!is.list(variableList) || is.data.frame(variableList))
    .usage_error("variableList must be a named list of the objects to register")
  nm <- names(variableList)
  if (length(variableList) && (is.null(nm) || anyNA(nm) || !all(nzchar(nm)) || anyDuplicated(nm)))
    .usage_error("every element of variableList needs a distinct, non-empty name")
  for (i in seq_along(variableList)) .register_one(namespace, nm[[i]], variableList[[i]])
  invisible(NULL)
}

#' @rdname shared-variables
#' @export
retrieveViews <- function(namespace, variableNames) {
  .check_namespace(namespace)
  .check_names(variableNames)
  out <- lapply(variableNames, function(v) .view_of(namespace, v))
  names(out) <- variableNames
  out
}

#' @rdname shared-variables
#' @export
releaseViews <- function(namespace, variableNames) {
  .check_namespace(namespace)
  .check_names(variableNames)
  for (v in variableNames)
    if (is.null(.state$views[[.key(namespace, v)]]) && is.null(.state$asked[[.key(namespace, v)]]))
      .memshare_error("pyrmap_not_viewed",
                      sprintf("releaseViews: this session holds no view of variable '%s' of namespace '%s' (not previously allocated by retrieveViews())",
                              v, namespace))
  for (v in variableNames) {
    .forget_view(.key(namespace, v))
    .state$asked[[.key(namespace, v)]] <- NULL
  }
  invisible(NULL)
}

#' @rdname shared-variables
#' @export
releaseVariables <- function(namespace, variableNames) {
  .check_namespace(namespace)
  .check_names(variableNames)
  # Names this session did not register: another process's page is the
  # core's ownership error (below); no page at all is an error here.
  for (v in variableNames)
    if (is.null(.state$pages[[.key(namespace, v)]]) && is.na(.pyrmap_generation(namespace, v)))
      .memshare_error("pyrmap_not_registered",
                      sprintf("releaseVariables: variable '%s' of namespace '%s' is not registered by this session (not previously allocated by registerVariables())",
                              v, namespace))
  for (v in variableNames) {
    key <- .key(namespace, v)
    info <- .pyrmap_release(namespace, v, .state$pages[[key]]$dir %||% .segment_dir())
    if (!isTRUE(info$ok)) .raise(info, sys.call())
    .forget_view(key)
    .state$pages[[key]] <- NULL
  }
  if (length(.state$domains)) .domain_forget_variables(namespace, variableNames)
  invisible(NULL)
}

#' @rdname shared-variables
#' @export
retrieveMetadata <- function(namespace, variableName) {
  .check_namespace(namespace)
  .check_names(variableName)
  meta <- lapply(variableName, function(v) .metadata(namespace, v))
  # In memshare, asking opens a view that releaseViews() then releases;
  # here nothing is mapped, but releaseViews() accepts the names all the same.
  for (v in variableName) .state$asked[[.key(namespace, v)]] <- TRUE
  if (length(meta) == 1L) return(meta[[1L]])
  names(meta) <- variableName
  meta
}

#' @rdname shared-variables
#' @export
viewList <- function() .shown_names(.state$views)

#' @rdname shared-variables
#' @export
pageList <- function() .shown_names(.state$pages)

#' @rdname shared-variables
#' @export
memshare_gc <- function(namespace, cluster = NULL) {
  .check_namespace(namespace)
  .gc_namespace(namespace)
  if (!is.null(cluster)) {
    .check_cluster(cluster)
    .prepare_cluster(cluster)
    .check_nodes(.call_nodes(cluster, .remote(".worker_gc"), namespace), "memshare_gc", "failed")
  }
  invisible(.pyrmap_collect_garbage())
}

# ---- session state ------------------------------------------------------------

# Pages this session owns ("ns.var" -> list(ns, var, generation)), views it
# holds ("ns.var" -> list(ns, var, generation, value)), and the engine of
# memApply()'s own workers (engine.R).
.state <- new.env(parent = emptyenv())
.state$pages <- list()
.state$views <- list()
.state$asked <- list()  # "ns.var" keys given to retrieveMetadata()
.state$counter <- 0L
.state$engine <- NULL
.state$domains <- list()      # clusters' shared-memory domains (domains.R)
.state$domain_token <- NULL
.state$domain_jobs <- list()  # (worker) jobs of calls across domains

# Entries are keyed without ambiguity ("a" + "b.c" and "a.b" + "c" are two
# variables); viewList() and pageList() show them as memshare does,
# "<namespace>.<variable>".
.key <- function(ns, var) paste0(nchar(ns, "bytes"), ":", ns, ".", var)
.shown_names <- function(entries) lapply(unname(entries), function(e) paste0(e$ns, ".", e$var))

.register_one <- function(ns, var, x) {
  # A data.frame page keeps its columns; row names other than the automatic
  # ones would be lost, so they are refused.
  if (is.data.frame(x) && .row_names_info(x) > 0L)
    .usage_error(sprintf("data.frame '%s' has row names, which a page cannot keep; register it without them (rownames(x) <- NULL) or register them separately",
                         var))
  info <- .pyrmap_register(ns, var, x)
  if (!isTRUE(info$ok)) .raise(info, sys.call(-1L))
  .state$pages[[.key(ns, var)]] <- list(ns = ns, var = var, generation = info$generation,
                                        dir = info$dir)
  invisible(info)
}

# A view of (ns, var) in segment directory `dir`, from this session's cache
# when the page under that name is still the one it was made from.
.view_of <- function(ns, var, dir = .segment_dir()) {
  key <- .key(ns, var)
  current <- .pyrmap_generation(ns, var, dir)
  if (is.na(current)) .forget_view(key)
  cached <- .state$views[[key]]
  if (!is.na(current) && !is.null(cached) && identical(cached$generation, current))
    return(cached$value)
  # Not registered, not readable, or not cached: opening says which.
  info <- .pyrmap_open(ns, var, dir)
  if (!isTRUE(info$ok)) .raise(info, sys.call(-1L))
  .state$views[[key]] <- list(ns = ns, var = var, generation = info$generation, value = info$value)
  info$value
}

.forget_view <- function(key) .state$views[[key]] <- NULL

.metadata <- function(ns, var, dir = .segment_dir()) {
  info <- .pyrmap_page_info(ns, var, dir)
  if (!isTRUE(info$ok)) .raise(info, sys.call(-1L))
  if (isTRUE(info$is_frame))
    return(list(type = "data.frame", mode = "list", n = as.numeric(length(info$arrays)),
                nrow = info$arrays[[1L]]$length, ncol = length(info$arrays)))
  if (info$is_list)
    return(list(type = "list", mode = "list", n = as.numeric(length(info$arrays))))
  a <- info$arrays[[1L]]
  if (!a$has_dim) return(list(type = "vector", mode = a$type, n = a$length))
  if (length(a$dim) == 2L)
    return(list(type = "matrix", mode = a$type, nrow = a$dim[[1L]], ncol = a$dim[[2L]]))
  list(type = "array", mode = a$type, dim = a$dim)
}

.gc_namespace <- function(ns) {
  prefix <- .key(ns, "")
  .state$asked <- .state$asked[!startsWith(names(.state$asked) %||% character(), prefix)]
  for (key in names(.state$views))
    if (identical(.state$views[[key]]$ns, ns)) .forget_view(key)
  for (key in names(.state$pages)) {
    p <- .state$pages[[key]]
    if (identical(p$ns, ns)) releaseVariables(ns, p$var)
  }
}

# Removes every page this session still owns (at unload and at exit).
.release_all_pages <- function() {
  for (p in .state$pages) try(.pyrmap_release(p$ns, p$var, p$dir), silent = TRUE)
  .state$pages <- list()
  .state$views <- list()
  .state$asked <- list()
  .release_domain_token()
}

# Stops with a condition of class `class` (a pyrmap_error) naming the
# exported function the user called.
.memshare_error <- function(class, message) {
  stop(structure(class = c(class, "pyrmap_error", "error", "condition"),
                 list(message = message, call = .user_call())))
}

.check_namespace <- function(namespace) {
  if (!is.character(namespace) || length(namespace) != 1L || is.na(namespace) || !nzchar(namespace))
    .usage_error("namespace must be a single non-empty string")
}

.check_names <- function(x) {
  if (!is.character(x) || anyNA(x) || !all(nzchar(x)))
    .usage_error("variable names must be a character vector of non-empty names")
}
