# Python reads the variables R registered: pyrmap.registry.get() gives
# read-only numpy views of R's pages (no copy), with R's types and dims.

# Runs Python `code` with this package's Python side; returns its stdout
# lines (stops with its stderr on failure).
python_lines <- function(code, env = character()) {
  file <- tempfile("api-", fileext = ".py")
  on.exit(unlink(file))
  writeLines(code, file)
  env <- c(sprintf("PYTHONPATH=%s", system.file("python", package = "pyrmap")),
           "PYTHONDONTWRITEBYTECODE=1", env)
  out <- suppressWarnings(system2(pyrmap_python(), shQuote(file), env = env, stdout = TRUE,
                                  stderr = TRUE))
  status <- attr(out, "status") %||% 0L
  if (status != 0L) stop("python failed (", status, "):\n", paste(out, collapse = "\n"))
  out
}
`%||%` <- function(a, b) if (is.null(a)) b else a

test_that("Python gets R's variables as read-only, zero-copy views of the pages", {
  ns <- paste0("pyapi", Sys.getpid())
  m <- matrix(c(1.5, NA, -Inf, 4, 5, 6), 2, 3)
  ints <- c(1L, NA, -7L)
  lgl <- c(TRUE, NA, FALSE)
  raw <- as.raw(c(0, 255, 7))
  arr <- array(1:24, c(2, 3, 4))
  registerVariables(ns, list(m = m, ints = ints, lgl = lgl, raw = raw, arr = arr,
                             cols = list(a = 1:2, b = c(0.5, 1))))
  on.exit(memshare_gc(ns))
  out <- python_lines(c(
    "import os, numpy as np",
    "from pyrmap import registry",
    sprintf("ns = '%s'", ns),
    "m = registry.get(ns, 'm')",
    "print(m.shape, m.dtype, m.flags.f_contiguous, m.flags.writeable)",
    "print(repr(m.tolist()))",
    "print(registry.get(ns, 'ints').tolist(), registry.get(ns, 'ints').dtype)",
    "print(registry.get(ns, 'lgl').tolist())",
    "print(registry.get(ns, 'raw').tolist(), registry.get(ns, 'raw').dtype)",
    "a = registry.get(ns, 'arr'); print(a.shape, int(a[1, 2, 3]), int(a[0, 1, 0]))",
    "c = registry.get(ns, 'cols'); print(sorted(c), c['a'].tolist(), c['b'].tolist())",
    "print(registry.info(ns, 'lgl').r_types, registry.info(ns, 'm').owner_pid)",
    # Zero copy: m's memory lies in a mapping of the page file.
    "addr = m.__array_interface__['data'][0]",
    "maps = [l.split() for l in open('/proc/self/maps') if l.rstrip().endswith(registry.page_name(ns, 'm'))]",
    "print(any(int(l[0].split('-')[0], 16) <= addr < int(l[0].split('-')[1], 16) for l in maps))",
    "print(sorted(n for s, n in registry.variables() if s == ns))"))
  expect_identical(out[[1L]], "(2, 3) float64 True False")
  expect_identical(out[[2L]], "[[1.5, -inf, 5.0], [nan, 4.0, 6.0]]")
  expect_identical(out[[3L]], "[1, -2147483648, -7] int32")
  expect_identical(out[[4L]], "[1, -2147483648, 0]")
  expect_identical(out[[5L]], "[0, 255, 7] uint8")
  expect_identical(out[[6L]], sprintf("(2, 3, 4) %d %d", arr[2, 3, 4], arr[1, 2, 1]))
  expect_identical(out[[7L]], "['a', 'b'] [1, 2] [0.5, 1.0]")
  expect_identical(out[[8L]], sprintf("('logical',) %d", Sys.getpid()))
  expect_identical(out[[9L]], "True")
  expect_identical(out[[10L]], "['arr', 'cols', 'ints', 'lgl', 'm', 'raw']")
})

test_that("a view in Python outlives the variable's release in R", {
  ns <- paste0("pyapi2", Sys.getpid())
  registerVariables(ns, list(x = as.numeric(1:5)))
  on.exit(memshare_gc(ns))
  dir <- tempfile("api-")
  dir.create(dir)
  go <- file.path(dir, "go")
  # Python maps x, says so, waits until R released it, reads again, then
  # asks for it once more.
  code <- c(
    "import os, sys, time",
    "from pyrmap import registry, NotRegisteredError",
    sprintf("x = registry.get('%s', 'x')", ns),
    sprintf("open('%s', 'w').write('mapped')", file.path(dir, "mapped")),
    sprintf("while not os.path.exists('%s'): time.sleep(0.01)", go),
    "print(x.tolist())",
    "try:",
    sprintf("    registry.get('%s', 'x')", ns),
    "except NotRegisteredError as e:",
    "    print(e)")
  file <- file.path(dir, "a.py")
  writeLines(code, file)
  out_file <- file.path(dir, "out")
  system2(pyrmap_python(), shQuote(file), wait = FALSE, stdout = out_file, stderr = out_file,
          env = sprintf("PYTHONPATH=%s", system.file("python", package = "pyrmap")))
  deadline <- Sys.time() + 60
  while (!file.exists(file.path(dir, "mapped")) && Sys.time() < deadline) Sys.sleep(0.02)
  expect_true(file.exists(file.path(dir, "mapped")))
  releaseVariables(ns, "x")
  file.create(go)
  deadline <- Sys.time() + 60
  repeat {
    out <- if (file.exists(out_file)) readLines(out_file) else character()
    if (length(out) >= 2L || Sys.time() > deadline) break
    Sys.sleep(0.02)
  }
  expect_identical(out[[1L]], "[1.0, 2.0, 3.0, 4.0, 5.0]")
  expect_identical(out[[2L]], sprintf("variable 'x' of namespace '%s' is not registered", ns))
})

test_that("the segment directory R used is where Python looks", {
  dir <- tempfile("api-segs-")
  dir.create(dir, mode = "0700")
  old <- options(pyrmap.segment_dir = dir)
  on.exit({ memshare_gc(ns); options(old); unlink(dir, recursive = TRUE) })
  ns <- paste0("pyapi3", Sys.getpid())
  registerVariables(ns, list(v = 1:3))
  out <- python_lines(c("from pyrmap import registry",
                        sprintf("print(registry.get('%s', 'v', segment_dir='%s').tolist())", ns, dir),
                        "import os",
                        sprintf("print(registry.get('%s', 'v').tolist())", ns)),
                      env = sprintf("PYRMAP_SEGMENT_DIR=%s", dir))
  expect_identical(out, c("[1, 2, 3]", "[1, 2, 3]"))
})
