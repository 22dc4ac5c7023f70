# The memshare API (registerVariables, retrieveViews, releaseViews,
# releaseVariables, retrieveMetadata, viewList, pageList, memshare_gc): names
# and arguments as memshare, types kept as they are, clear errors, and the
# lifetime of pages and views across processes.

ms_shm_at_start <- shm_snapshot()

test_that("the API has memshare's names, arguments and defaults", {
  sig <- function(f) as.list(formals(f))
  expect_identical(names(sig(registerVariables)), c("namespace", "variableList"))
  expect_identical(names(sig(retrieveViews)), c("namespace", "variableNames"))
  expect_identical(names(sig(releaseViews)), c("namespace", "variableNames"))
  expect_identical(names(sig(releaseVariables)), c("namespace", "variableNames"))
  expect_identical(names(sig(retrieveMetadata)), c("namespace", "variableName"))
  expect_identical(sig(viewList), list())
  expect_identical(sig(pageList), list())
  expect_identical(names(sig(memshare_gc)), c("namespace", "cluster"))
  expect_null(formals(memshare_gc)$cluster)
  # memshare's arguments in memshare's order; FUN.VALUE (pyrmap's) comes last,
  # so that calls written for memshare, by position too, mean the same.
  expect_identical(names(sig(memApply)),
                   c("X", "MARGIN", "FUN", "NAMESPACE", "CLUSTER", "VARS", "MAX.CORES", "FUN.VALUE"))
  expect_identical(names(sig(memLapply)),
                   c("X", "FUN", "NAMESPACE", "CLUSTER", "VARS", "MAX.CORES", "FUN.VALUE"))
  for (a in c("NAMESPACE", "CLUSTER", "VARS", "MAX.CORES", "FUN.VALUE")) {
    expect_null(formals(memApply)[[a]])
    expect_null(formals(memLapply)[[a]])
  }
  exports <- getNamespaceExports("pyrmap")
  expect_true(all(c("registerVariables", "retrieveViews", "releaseViews", "releaseVariables",
                    "retrieveMetadata", "viewList", "pageList", "memshare_gc", "memApply",
                    "memLapply") %in% exports))
})

test_that("every supported type comes back as it is, as views", {
  ns <- ms_ns("types")
  objs <- list(
    d = c(1.5, NA, -Inf, NaN, 0),
    i = c(1L, NA, -7L),
    l = c(TRUE, NA, FALSE),
    r = as.raw(c(0, 1, 255)),
    dm = matrix(as.numeric(1:6), 2),
    im = matrix(1:6, 3),
    lm = matrix(c(TRUE, FALSE, NA, TRUE), 2),
    rm = matrix(as.raw(1:6), 2),
    a = array(1:24, 2:4),
    lst = list(x = c(2.5, 3), y = 1:4, z = matrix(c(TRUE, NA), 1), w = as.raw(7),
               a = array(as.numeric(1:8), c(2, 2, 2))))
  registerVariables(ns, objs)
  on.exit(releaseVariables(ns, names(objs)), add = TRUE)
  expect_setequal(unlist(pageList()[grepl(ns, unlist(pageList()), fixed = TRUE)]),
                  paste0(ns, ".", names(objs)))
  v <- retrieveViews(ns, names(objs))
  on.exit(releaseViews(ns, names(objs)), add = TRUE, after = FALSE)
  expect_named(v, names(objs))
  for (nm in names(objs)) {
    expect_identical(v[[nm]], objs[[nm]], label = nm)
    expect_identical(typeof(v[[nm]]), typeof(objs[[nm]]), label = nm)
  }
  for (nm in setdiff(names(objs), "lst")) expect_false(is.null(view_info(v[[nm]])), label = nm)
  # On R < 4.3 a list variable is a plain list of views.
  expect_true(is.list(v$lst))
  for (el in v$lst) expect_false(is.null(view_info(el)))
  expect_setequal(unlist(viewList()[grepl(ns, unlist(viewList()), fixed = TRUE)]),
                  paste0(ns, ".", names(objs)))
  # A second retrieval gives the same view (cached), not a new mapping.
  again <- retrieveViews(ns, "dm")$dm
  expect_identical(view_info(again)$address, view_info(v$dm)$address)
})

test_that("bit64::integer64 vectors are shared as they are", {
  skip_if_not_installed("bit64")
  ns <- ms_ns("i64")
  x <- bit64::as.integer64(c("9007199254740993", "-5", NA))
  registerVariables(ns, list(x = x))
  on.exit(releaseVariables(ns, "x"))
  v <- retrieveViews(ns, "x")$x
  on.exit(releaseViews(ns, "x"), add = TRUE, after = FALSE)
  expect_s3_class(v, "integer64")
  expect_identical(as.character(v), as.character(x))
})

test_that("retrieveMetadata describes variables without retrieving a view", {
  ns <- ms_ns("meta")
  registerVariables(ns, list(v = c(1, 2, 3), m = matrix(1:6, 2), a = array(as.raw(1:24), 2:4),
                             l = list(1, 2:3)))
  on.exit(releaseVariables(ns, c("v", "m", "a", "l")))
  views_before <- viewList()
  expect_identical(retrieveMetadata(ns, "v"), list(type = "vector", mode = "double", n = 3))
  expect_identical(retrieveMetadata(ns, "m"),
                   list(type = "matrix", mode = "integer", nrow = 2, ncol = 3))
  expect_identical(retrieveMetadata(ns, "a"), list(type = "array", mode = "raw", dim = c(2, 3, 4)))
  expect_identical(retrieveMetadata(ns, "l"), list(type = "list", mode = "list", n = 2))
  both <- retrieveMetadata(ns, c("v", "m"))
  expect_named(both, c("v", "m"))
  expect_identical(both$m$ncol, 3)
  expect_identical(viewList(), views_before)
  expect_error(retrieveMetadata(ns, "nope"), class = "pyrmap_not_registered")
})

test_that("unsupported objects are a pyrmap_usage_error and leave nothing behind", {
  ns <- ms_ns("bad")
  before <- shm_snapshot()
  pages <- pageList()
  bad <- list(chr = letters, fac = factor(c("a", "b")), df = data.frame(a = 1:2, s = c("x", "y")),
              cplx = complex(real = 1, imaginary = 2), fun = mean,
              lst_chr = list(1, "a"), lst_df = list(data.frame(a = 1)),
              nested = list(list(1)), date = Sys.Date())
  for (nm in names(bad)) {
    expect_error(registerVariables(ns, setNames(list(bad[[nm]]), nm)), class = "pyrmap_usage_error",
                 label = nm)
  }
  e <- expect_error(registerVariables(ns, list(f = factor("a"))), class = "pyrmap_usage_error")
  expect_match(conditionMessage(e), "factor")
  e <- expect_error(registerVariables(ns, list(df = data.frame(a = 1, f = factor("a")))),
                    class = "pyrmap_usage_error")
  expect_match(conditionMessage(e), "column 'f' of data.frame 'df'")
  # Not a named list.
  expect_error(registerVariables(ns, 1:3), class = "pyrmap_usage_error")
  expect_error(registerVariables(ns, data.frame(a = 1:3)), class = "pyrmap_usage_error")
  expect_error(registerVariables(ns, list(1:3)), class = "pyrmap_usage_error")
  expect_error(registerVariables(ns, list(a = 1, a = 2)), class = "pyrmap_usage_error")
  expect_error(registerVariables(c("a", "b"), list(a = 1)), class = "pyrmap_usage_error")
  expect_error(registerVariables("", list(a = 1)), class = "pyrmap_usage_error")
  expect_error(retrieveViews(ns, 1), class = "pyrmap_usage_error")
  # A good variable before a bad one in the same call is registered (and
  # released here); the bad one leaves nothing.
  expect_error(registerVariables(ns, list(ok = 1:3, no = letters)), class = "pyrmap_usage_error")
  releaseVariables(ns, "ok")
  expect_identical(pageList(), pages)
  expect_identical(ms_leftovers(before), character(0))
})

test_that("an unregistered name is a classed error, and a taken name cannot be registered twice", {
  ns <- ms_ns("names")
  expect_error(retrieveViews(ns, "X"), class = "pyrmap_not_registered")
  registerVariables(ns, list(X = 1:3))
  e <- expect_error(registerVariables(ns, list(X = 4:6)), class = "pyrmap_usage_error")
  expect_match(conditionMessage(e), "already registered")
  expect_identical(retrieveViews(ns, "X")$X, 1:3)
  releaseViews(ns, "X")
  releaseVariables(ns, "X")
  expect_error(retrieveViews(ns, "X"), class = "pyrmap_not_registered")
  # Releasing what is not registered (any more), or a view this session
  # does not hold, is an error naming the namespace and the variable, as in
  # memshare (whose own tests rely on it).
  e <- expect_error(releaseVariables(ns, "X"), class = "pyrmap_not_registered")
  expect_s3_class(e, "pyrmap_error")
  expect_match(conditionMessage(e), sprintf("variable 'X' of namespace '%s'", ns), fixed = TRUE)
  e <- expect_error(releaseViews(ns, "X"), class = "pyrmap_not_viewed")
  expect_s3_class(e, "pyrmap_error")
  expect_match(conditionMessage(e), sprintf("variable 'X' of namespace '%s'", ns), fixed = TRUE)
  expect_error(releaseViews(ns, "typo"), class = "pyrmap_not_viewed")
  # A typo among good names releases nothing.
  registerVariables(ns, list(Y = 1:3))
  invisible(retrieveViews(ns, "Y"))
  expect_error(releaseViews(ns, c("Y", "typo")), class = "pyrmap_not_viewed")
  expect_true(paste0(ns, ".Y") %in% unlist(viewList()))
  expect_error(releaseVariables(ns, c("Y", "typo")), "'typo'", class = "pyrmap_not_registered")
  expect_true(paste0(ns, ".Y") %in% unlist(pageList()))
  releaseViews(ns, "Y")
  releaseVariables(ns, "Y")
  # After retrieveMetadata() (which opens a view in memshare), releaseViews()
  # is accepted; no view is listed or mapped.
  registerVariables(ns, list(Z = 1:3))
  expect_identical(retrieveMetadata(ns, "Z")$n, 3)
  expect_false(paste0(ns, ".Z") %in% unlist(viewList()))
  expect_silent(releaseViews(ns, "Z"))
  expect_error(releaseViews(ns, "Z"), class = "pyrmap_not_viewed")
  releaseVariables(ns, "Z")
})

test_that("namespaces and names containing dots never mix up variables", {
  ns <- ms_ns("dots")
  registerVariables(ns, list(b.c = 1:3))
  registerVariables(paste0(ns, ".b"), list(c = 4:6))
  shown <- paste0(ns, ".b.c")
  expect_identical(sum(unlist(pageList()) == shown), 2L)
  expect_identical(retrieveViews(ns, "b.c")$b.c, 1:3)
  expect_identical(retrieveViews(paste0(ns, ".b"), "c")$c, 4:6)
  expect_identical(sum(unlist(viewList()) == shown), 2L)
  releaseViews(ns, "b.c")
  expect_identical(sum(unlist(viewList()) == shown), 1L)
  releaseVariables(ns, "b.c")
  # The other one is still registered, listed, and released at the end.
  expect_identical(sum(unlist(pageList()) == shown), 1L)
  expect_identical(retrieveViews(paste0(ns, ".b"), "c")$c, 4:6)
  memshare_gc(paste0(ns, ".b"))
  expect_false(shown %in% unlist(c(pageList(), viewList())))
  expect_error(retrieveViews(paste0(ns, ".b"), "c"), class = "pyrmap_not_registered")
  # Names the core cannot store are a usage error.
  expect_error(registerVariables(ns, setNames(list(1), strrep("v", 300))), class = "pyrmap_usage_error")
  expect_error(registerVariables(strrep("n", 300), list(a = 1)), class = "pyrmap_usage_error")
})

test_that("zero-length vectors and zero-row / zero-column matrices work", {
  ns <- ms_ns("empty")
  objs <- list(d = numeric(0), i = integer(0), l = logical(0), r = raw(0),
               m0r = matrix(numeric(0), 0, 3), m0c = matrix(integer(0), 4, 0),
               m00 = matrix(logical(0), 0, 0), lst = list(numeric(0), 1:2, raw(0)), empty = list())
  registerVariables(ns, objs)
  on.exit(releaseVariables(ns, names(objs)))
  v <- retrieveViews(ns, names(objs))
  on.exit(releaseViews(ns, names(objs)), add = TRUE, after = FALSE)
  for (nm in names(objs)) expect_identical(v[[nm]], objs[[nm]], label = nm)
  expect_identical(retrieveMetadata(ns, "m0r"), list(type = "matrix", mode = "double", nrow = 0, ncol = 3))
  expect_identical(retrieveMetadata(ns, "d")$n, 0)
  expect_identical(retrieveMetadata(ns, "empty")$n, 0)
})

test_that("a view stays valid after releaseViews, releaseVariables and gc()", {
  ns <- ms_ns("valid")
  x <- matrix(rnorm(20000), 200)
  registerVariables(ns, list(X = x, L = list(a = 1:10, b = c(0.5, 1))))
  v <- retrieveViews(ns, c("X", "L"))
  releaseViews(ns, c("X", "L"))
  releaseVariables(ns, c("X", "L"))
  expect_false(any(grepl(ns, unlist(c(viewList(), pageList())), fixed = TRUE)))
  for (k in 1:3) {
    invisible(gc(full = TRUE))
    junk <- lapply(1:50, function(i) runif(1000))
  }
  expect_identical(v$X, x)
  expect_identical(sum(v$X), sum(x))
  expect_identical(v$L, list(a = 1:10, b = c(0.5, 1)))
  # The name is free again.
  registerVariables(ns, list(X = 1:2))
  expect_identical(retrieveViews(ns, "X")$X, 1:2)
  expect_identical(v$X, x)
  releaseViews(ns, "X")
  releaseVariables(ns, "X")
})

test_that("assigning into a view makes a private copy: the shared data never changes", {
  cl <- ms_cluster(2)
  ns <- ms_ns("cow")
  x <- as.numeric(1:10)
  registerVariables(ns, list(X = x, M = matrix(1:6, 2)))
  on.exit(releaseVariables(ns, c("X", "M")))
  v <- retrieveViews(ns, "X")$X
  v[1] <- 99
  expect_identical(v[1:2], c(99, 2))
  expect_null(view_info(v))
  m <- retrieveViews(ns, "M")$M
  m[2, 3] <- -1L
  dim(m) <- NULL
  # A fresh retrieval in this process, and another process, see the original.
  releaseViews(ns, c("X", "M"))
  expect_identical(retrieveViews(ns, "X")$X, x)
  expect_identical(retrieveViews(ns, "M")$M, matrix(1:6, 2))
  releaseViews(ns, c("X", "M"))
  seen <- parallel::clusterCall(cl, function(ns) {
    w <- pyrmap::retrieveViews(ns, "X")$X
    w[2] <- -5       # a private copy in the worker
    w2 <- pyrmap::retrieveViews(ns, "X")$X
    pyrmap::releaseViews(ns, "X")
    list(w[1:2], w2)
  }, ns)
  for (s in seen) {
    expect_identical(s[[1]], c(1, -5))
    expect_identical(s[[2]], x)
  }
  expect_identical(retrieveViews(ns, "X")$X, x)
  releaseViews(ns, "X")
})

test_that("C code writing through a view's pointer never changes other processes' data", {
  lib <- ms_poke_lib()
  dyn.load(lib)
  on.exit(dyn.unload(lib), add = TRUE)
  cl <- ms_cluster(2)
  ns <- ms_ns("poke")
  x <- as.numeric(1:1000)
  registerVariables(ns, list(X = x))
  on.exit(releaseVariables(ns, "X"), add = TRUE)
  parallel::clusterCall(cl, dyn.load, lib)
  # Both workers map X; worker 1 writes 42 through REAL(view).
  parallel::clusterCall(cl, function(ns) { assign(".ms_v", pyrmap::retrieveViews(ns, "X")$X, globalenv()); TRUE }, ns)
  poked <- parallel::clusterCall(cl[1], function() {
    .Call("ms_poke", .ms_v, 42)
    .ms_v[1:3]
  })[[1]]
  # The writer sees its write: its own private copy of that page.
  expect_identical(poked, c(42, 2, 3))
  other <- parallel::clusterCall(cl[2], function(ns) {
    list(cached = .ms_v[1:3], fresh = { pyrmap::releaseViews(ns, "X"); pyrmap::retrieveViews(ns, "X")$X[1:3] })
  }, ns)[[1]]
  expect_identical(other$cached, c(1, 2, 3))
  expect_identical(other$fresh, c(1, 2, 3))
  expect_identical(retrieveViews(ns, "X")$X, x)
  # The same from this process: a write here is not seen by the workers.
  mine <- retrieveViews(ns, "X")$X
  .Call("ms_poke", mine, -1)
  expect_identical(mine[1], -1)
  expect_identical(parallel::clusterCall(cl[2], function() .ms_v[1])[[1]], 1)
  expect_identical(parallel::clusterCall(cl[2], function(ns) {
    pyrmap::releaseViews(ns, "X")
    pyrmap::retrieveViews(ns, "X")$X[1]
  }, ns)[[1]], 1)
  # The registered object itself is untouched.
  expect_identical(x[1], 1)
  releaseViews(ns, "X")
  parallel::clusterCall(cl, function(ns) { rm(".ms_v", envir = globalenv()); pyrmap::releaseViews(ns, "X"); gc(); TRUE }, ns)
})

test_that("memory is freed once no view remains, in any process", {
  cl <- ms_cluster(2)
  ns <- ms_ns("free")
  x <- rnorm(1e5)
  registerVariables(ns, list(X = x))
  seg <- ms_segment_of(ns, "X")
  expect_true(file.exists(file.path("/dev/shm", seg)))
  mapped <- function(seg) any(grepl(seg, readLines("/proc/self/maps"), fixed = TRUE))
  # A worker holds a view; this session releases the variable.
  expect_identical(parallel::clusterCall(cl[1], function(ns) {
    assign(".ms_keep", pyrmap::retrieveViews(ns, "X")$X, globalenv())
    sum(.ms_keep)
  }, ns)[[1]], sum(x))
  releaseVariables(ns, "X")
  expect_false(file.exists(file.path("/dev/shm", seg)))
  expect_false(any(grepl(ns, unlist(pageList()), fixed = TRUE)))
  invisible(gc(full = TRUE))
  expect_false(mapped(seg))
  # The worker's view is still valid and still mapped (the name is gone).
  st <- parallel::clusterCall(cl[1], function(seg, mapped) {
    invisible(gc(full = TRUE))
    list(sum = sum(.ms_keep), mapped = mapped(seg))
  }, seg, mapped)[[1]]
  expect_identical(st$sum, sum(x))
  expect_true(st$mapped)
  # Released and collected there too: no mapping remains anywhere.
  gone <- parallel::clusterCall(cl[1], function(ns, seg, mapped) {
    pyrmap::releaseViews(ns, "X")
    rm(".ms_keep", envir = globalenv())
    invisible(gc(full = TRUE))
    mapped(seg)
  }, ns, seg, mapped)[[1]]
  expect_false(gone)
  expect_identical(unlist(parallel::clusterCall(cl, function() length(pyrmap::viewList()))), c(0L, 0L))
})

test_that("a name released and registered again is never served stale", {
  cl <- ms_cluster(2)
  ns <- ms_ns("stale")
  registerVariables(ns, list(X = 1:5))
  keep <- function(ns) { assign(".ms_old", pyrmap::retrieveViews(ns, "X")$X, globalenv()); .ms_old }
  expect_identical(parallel::clusterCall(cl, keep, ns), list(1:5, 1:5))
  first <- retrieveViews(ns, "X")$X
  releaseVariables(ns, "X")
  registerVariables(ns, list(X = 6:10))
  on.exit(releaseVariables(ns, "X"))
  # The workers' cached views are replaced by the new page's...
  got <- parallel::clusterCall(cl, function(ns) pyrmap::retrieveViews(ns, "X")$X, ns)
  expect_identical(got, list(6:10, 6:10))
  expect_identical(retrieveViews(ns, "X")$X, 6:10)
  # ...while a view kept from the old one still reads the old values.
  expect_identical(first, 1:5)
  expect_identical(parallel::clusterCall(cl, function() .ms_old), list(1:5, 1:5))
  # A different type and shape under the same name.
  releaseViews(ns, "X")
  releaseVariables(ns, "X")
  registerVariables(ns, list(X = matrix(c(0.5, 1.5), 1)))
  expect_identical(parallel::clusterCall(cl, function(ns) pyrmap::retrieveViews(ns, "X")$X, ns),
                   rep(list(matrix(c(0.5, 1.5), 1)), 2))
  expect_identical(retrieveMetadata(ns, "X")$mode, "double")
  parallel::clusterCall(cl, function(ns) { rm(".ms_old", envir = globalenv()); pyrmap::releaseViews(ns, "X") }, ns)
  releaseViews(ns, "X")
})

test_that("a worker's variables are its own: this session reads them but cannot release them", {
  cl <- ms_cluster(2)
  ns <- ms_ns("owner")
  parallel::clusterCall(cl[1], function(ns) pyrmap::registerVariables(ns, list(W = c(3, 4))), ns)
  expect_identical(retrieveViews(ns, "W")$W, c(3, 4))
  releaseViews(ns, "W")
  expect_error(releaseVariables(ns, "W"), class = "pyrmap_usage_error")
  expect_identical(retrieveViews(ns, "W")$W, c(3, 4))
  releaseViews(ns, "W")
  parallel::clusterCall(cl[1], function(ns) pyrmap::releaseVariables(ns, "W"), ns)
  expect_error(retrieveViews(ns, "W"), class = "pyrmap_not_registered")
})

test_that("memshare_gc releases a namespace's views and variables here and in the workers", {
  cl <- ms_cluster(2)
  ns <- ms_ns("gc")
  other <- ms_ns("gc-other")
  registerVariables(ns, list(A = 1:3, B = c(1, 2)))
  registerVariables(other, list(C = 1:2))
  on.exit(releaseVariables(other, "C"))
  segs <- c(ms_segment_of(ns, "A"), ms_segment_of(ns, "B"))
  invisible(retrieveViews(ns, c("A", "B")))
  invisible(retrieveViews(other, "C"))
  parallel::clusterCall(cl, function(ns) { pyrmap::retrieveViews(ns, c("A", "B")); TRUE }, ns)
  expect_length(unlist(parallel::clusterCall(cl, pyrmap::viewList)), 4L)
  memshare_gc(ns, cl)
  expect_identical(parallel::clusterCall(cl, pyrmap::viewList), list(list(), list()))
  expect_false(any(startsWith(unlist(c(viewList(), pageList())), paste0(ns, "."))))
  expect_false(any(file.exists(file.path("/dev/shm", segs))))
  # Another namespace is untouched.
  expect_true(paste0(other, ".C") %in% unlist(pageList()))
  expect_true(paste0(other, ".C") %in% unlist(viewList()))
  expect_identical(retrieveViews(other, "C")$C, 1:2)
  releaseViews(other, "C")
})

test_that("a crashed session's pages are reclaimed, and removed by memshare_gc() and pyrmap gc", {
  ns <- ms_ns("crash")
  crash <- function(vars) {
    out <- ms_rscript(c(
      "library(pyrmap)",
      sprintf("registerVariables(%s, list(%s))", deparse(ns),
              paste(sprintf("%s = c(1, 2, 3)", vars), collapse = ", ")),
      "cat('PID', Sys.getpid(), '\\n')",
      "tools::pskill(Sys.getpid(), tools::SIGKILL)",
      "Sys.sleep(10)"))
    pid <- as.integer(sub("^PID ([0-9]+).*", "\\1", grep("^PID", out, value = TRUE)))
    expect_length(pid, 1L)
    expect_true(wait_until(function() !proc_alive(pid)))
    pid
  }
  pid <- crash(c("A", "B"))
  segA <- file.path("/dev/shm", pyrmap:::.pyrmap_view_info(retrieveViews(ns, "A")$A)$segment)
  releaseViews(ns, "A")
  segB <- file.path("/dev/shm", ms_segment_of(ns, "B"))
  expect_true(all(file.exists(c(segA, segB))))
  expect_identical(ms_page_header(basename(segB))$owner_pid, as.numeric(pid))
  # The dead session's data is still readable...
  expect_identical(retrieveViews(ns, "B")$B, c(1, 2, 3))
  releaseViews(ns, "B")
  # ...its name can be registered again (the dead page is reclaimed)...
  registerVariables(ns, list(A = 7:9))
  expect_identical(retrieveViews(ns, "A")$A, 7:9)
  releaseViews(ns, "A")
  expect_identical(ms_page_header(basename(segA))$owner_pid, as.numeric(Sys.getpid()))
  # ...and memshare_gc() removes the rest (and not what a live session owns).
  removed <- memshare_gc(ns)
  expect_true(basename(segB) %in% removed)
  expect_false(file.exists(segB))
  expect_false(paste0(ns, ".A") %in% unlist(pageList()))  # gc released this session's A too
  expect_false(file.exists(segA))
  # The pyrmap command's gc does the same.
  crash("C")
  segC <- file.path("/dev/shm", ms_segment_of(ns, "C"))
  expect_true(file.exists(segC))
  out <- suppressWarnings(system2(pyrmap_command(), "gc", stdout = TRUE, stderr = TRUE))
  expect_null(attr(out, "status"))
  expect_false(file.exists(segC))
  expect_error(retrieveViews(ns, "C"), class = "pyrmap_not_registered")
})

test_that("the end of the file leaves no worker and no segment", {
  ms_expect_clean_end(ms_shm_at_start)
})
