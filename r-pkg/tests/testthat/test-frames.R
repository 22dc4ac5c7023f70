# Data frames, named lists, strings, factors, dates and NA through Python and
# back: every R column type arrives as its Python counterpart (pandas, or
# numpy without it) and comes back identical(); what cannot be exact is an
# error naming the column and the type.

frames_shm_at_start <- shm_snapshot()

frames_py <- function() py("frames.py")
have_pandas <- function() {
  system2(real_python(), c("-c", shQuote("import pandas")), stdout = FALSE, stderr = FALSE) == 0L
}
modes <- function() if (have_pandas()) list(TRUE, FALSE) else list(FALSE)
through <- function(x, pandas, ...) run_python(x, frames_py(), fun = "identity", pandas = pandas, ...)
pyev <- function(x, code, pandas = NULL, ...) {
  run_python(x, frames_py(), fun = "ev", args = code, pandas = pandas, ...)
}

every_type <- function() {
  df <- data.frame(
    dbl = c(1.5, NA, NaN, -Inf),
    int = c(1L, NA, -5L, .Machine$integer.max),
    lgl = c(TRUE, NA, FALSE, TRUE),
    chr = c("a", NA, "ünï ✓", ""),
    fct = factor(c("x", NA, "y", "x"), levels = c("x", "y", "zz")),
    ord = factor(c("lo", "hi", NA, "lo"), levels = c("lo", "hi"), ordered = TRUE),
    date = as.Date(c("2020-01-01", NA, "1900-03-01", "2262-01-01")),
    utc = as.POSIXct(c("2020-01-01 10:00:00.5", NA, "1970-01-01", "1969-12-31 23:59:59"), tz = "UTC"),
    ber = as.POSIXct(c("2020-06-01 10:00:00", "2020-12-01 10:00:00", NA, "1999-01-01"),
                     tz = "Europe/Berlin"),
    loc = as.POSIXct(c("2020-06-01 10:00:00", NA, "2001-01-01", "2001-01-02"), tz = ""),
    raw = as.raw(c(0, 1, 255, 7)),
    stringsAsFactors = FALSE)
  df$notz <- structure(c(0, NA, 1e9, 1.25), class = c("POSIXct", "POSIXt"))
  names(df)[3] <- "lögical"
  if (requireNamespace("bit64", quietly = TRUE))
    df$i64 <- bit64::as.integer64(c("1", NA, "-9007199254740993", "5"))
  df
}

test_that("every R column type goes through Python and comes back identical, with and without pandas", {
  df <- every_type()
  for (pd in modes()) {
    expect_identical(through(df, pd), df, info = paste("pandas =", pd))
    rn <- df
    row.names(rn) <- c("a", "b", "ç", "d")
    expect_identical(through(rn, pd), rn, info = paste("character row names, pandas =", pd))
    ri <- df
    attr(ri, "row.names") <- c(10L, 20L, 5L, -1L)
    expect_identical(through(ri, pd), ri, info = paste("integer row names, pandas =", pd))
  }
  expect_no_segments()
})

test_that("empty, one-row and zero-column frames come back identical", {
  df <- every_type()
  for (pd in modes()) {
    for (x in list(df[0, ], df[1, ], df[, 0], df[0, 0], data.frame(), df[2, , drop = FALSE])) {
      expect_identical(through(x, pd), x, info = sprintf("%d x %d, pandas = %s", nrow(x), ncol(x), pd))
    }
  }
})

test_that("columns arrive as their Python types: pandas nullable dtypes, or numpy and masks", {
  df <- every_type()
  if (have_pandas()) {
    k <- run_python(df, frames_py(), fun = "kinds", pandas = TRUE)
    expect_match(k$dbl, "float64")
    expect_match(k$int, "IntegerArray:Int32")
    expect_match(k[["lögical"]], "BooleanArray:boolean")
    expect_match(k$chr, "object")
    expect_match(k$fct, "Categorical:category")
    expect_match(k$date, "datetime64\\[ns\\]")
    expect_match(k$ber, "datetime64\\[ns, Europe/Berlin\\]")
    expect_match(k$raw, "uint8")
    if (!is.null(df$i64)) expect_match(k$i64, "IntegerArray:Int64")
    # Without NA, integer and logical columns are plain numpy ones.
    k2 <- run_python(data.frame(i = 1:2, l = c(TRUE, FALSE)), frames_py(), fun = "kinds", pandas = TRUE)
    expect_match(k2$i, "int32")
    expect_match(k2$l, ":bool")
  }
  k <- run_python(df, frames_py(), fun = "kinds", pandas = FALSE)
  expect_match(k$int, "MaskedArray:int32")
  expect_match(k$chr, "MaskedArray:object")
  expect_match(k$fct, "Categorical")
  expect_match(k$date, "ndarray:datetime64\\[D\\]")
  expect_match(k$utc, "ndarray:datetime64\\[ns\\]")
  expect_identical(pyev(df, "type(x).__name__", pandas = FALSE), "Frame")
  expect_identical(pyev(data.frame(a = 1), "type(x).__name__", pandas = FALSE), "Frame")
})

test_that("NA is a missing value in Python, never -2147483648", {
  x <- data.frame(i = c(1L, NA), l = c(NA, TRUE), s = c(NA, "b"))
  if (have_pandas()) {
    expect_identical(pyev(x, "x.isna().to_numpy().ravel(order='F')", pandas = TRUE),
                     c(FALSE, TRUE, TRUE, FALSE, TRUE, FALSE))
    expect_identical(pyev(x, "int(x['i'].sum())", pandas = TRUE), 1)
  }
  expect_identical(pyev(x, "int(x['i'].sum())", pandas = FALSE), 1)
  expect_identical(pyev(x, "x['s'].mask.tolist()", pandas = FALSE), c(TRUE, FALSE))
  # A plain integer or logical vector with NA goes the same way (no longer an error).
  expect_identical(run_python(c(1L, NA, 3L), py("identity.py")), c(1L, NA, 3L))
  expect_identical(run_python(c(TRUE, NA), py("identity.py")), c(TRUE, NA))
  expect_identical(pyev(c(1L, NA, 3L), "int(x.sum())", pandas = FALSE), 4)
})

test_that("double NA and NaN keep their bits; pandas sees both as missing", {
  x <- data.frame(v = c(NA, NaN, 1))
  for (pd in modes()) {
    res <- through(x, pd)
    expect_identical(bits(res$v), bits(x$v))
    expect_true(is.na(res$v[1]) && !is.nan(res$v[1]) && is.nan(res$v[2]))
  }
  if (have_pandas())
    expect_identical(pyev(x, "x['v'].isna().tolist()", pandas = TRUE), c(TRUE, TRUE, FALSE))
  # A pandas Float64 column tells them apart: masked is NA, NaN stays NaN.
  if (have_pandas()) {
    res <- pyev(NULL, "pd.DataFrame({'v': pd.arrays.FloatingArray(np.array([np.nan, 2.0]), np.array([False, True]))})",
                pandas = TRUE)
    expect_true(is.nan(res$v[1]) && is.na(res$v[2]) && !is.nan(res$v[2]))
  }
})

test_that("a named list becomes keyword arguments, an unnamed list positional ones", {
  X <- cbind(1, c(1, 2, 3, 4))
  y <- c(2, 4, 6, 8)
  fit <- run_python(list(X = X, y = y), frames_py(), fun = "fit")
  expect_equal(fit$coef, c(0, 2))
  expect_equal(fit$fitted, y)
  expect_identical(run_python(list(a = 1L, b = "z"), frames_py(), fun = "kinds"),
                   list(args = list(), a = "ndarray:int32", b = "ndarray:object"))
  expect_identical(pyev(list(1, "b"), "args[::-1]"), list("b", 1))
  # Nested: lists in lists, frames in lists, NULL.
  nested <- list(df = data.frame(a = 1:2, b = c("x", "y")), inner = list(p = 1.5, q = list(TRUE)),
                 nothing = NULL)
  for (pd in modes())
    expect_identical(pyev(nested, "kw", pandas = pd), nested)
  expect_pyrmap_error(run_python(list(a = 1, 2), frames_py(), fun = "kinds"), "pyrmap_usage_error",
                      "element 2 of the data has no name")
})

test_that("Python results come back as R types: dict, tuple, DataFrame, Series, strings, categories, dates", {
  expect_identical(pyev(NULL, "{'a': np.arange(3), 'b': ('x', None)}"),
                   list(a = c(0, 1, 2), b = list("x", NULL)))
  expect_identical(pyev(NULL, "np.array(['a', 'é'])"), c("a", "é"))
  expect_identical(pyev(NULL, "np.array(['2020-01-02', 'NaT'], dtype='M8[D]')"),
                   as.Date(c("2020-01-02", NA)))
  expect_identical(pyev(NULL, "np.array(['2020-01-02T03:04:05'], dtype='M8[s]')"),
                   as.POSIXct("2020-01-02 03:04:05", tz = "UTC"))
  expect_identical(pyev(NULL, "pyrmap.Categorical(np.array([1, 0, -1]), ['a', 'b'])"),
                   factor(c("b", "a", NA)))
  expect_identical(pyev(NULL, "pyrmap.Frame({'x': np.array([1.0, 2.0])}, index=np.array(['r', 's']))"),
                   data.frame(x = c(1, 2), row.names = c("r", "s")))
  expect_identical(pyev(NULL, "np.ma.MaskedArray(np.array([1, 2], np.int32), mask=[True, False])"),
                   c(NA, 2L))
  skip_if_not(have_pandas())
  expect_identical(pyev(NULL, "pd.Series([1.0, 2.0], index=['a', 'b'])"), c(a = 1, b = 2))
  expect_identical(pyev(NULL, "pd.Series([1.0, 2.0])"), c(1, 2))
  df <- pyev(NULL, "pd.DataFrame({'n': [1, 2], 's': ['a', None], 'c': pd.Categorical(['u', 'v'], ordered=True), 't': pd.to_datetime(['2020-01-01', None]).tz_localize('Asia/Tokyo')})")
  expect_identical(df$n, c(1, 2))  # pandas' int64 is a double in R (integer64 only beyond 2^53)
  expect_identical(df$s, c("a", NA))
  expect_identical(df$c, factor(c("u", "v"), ordered = TRUE))
  expect_identical(attr(df$t, "tzone"), "Asia/Tokyo")
  expect_identical(format(df$t[1], tz = "UTC"), "2019-12-31 15:00:00")
  expect_identical(.row_names_info(df), -2L)  # automatic row names
})

# Whether a and b are the same R object (not only equal).
same_object <- function(a, b) identical(.Internal(address(a)), .Internal(address(b)))

test_that("columns returned unchanged are the input's own R vectors; new numeric ones are views", {
  df <- data.frame(a = as.numeric(1:1000), b = 1:1000, s = rep("x", 1000))
  for (pd in modes()) {
    res <- through(df, pd)
    expect_identical(res, df)
    expect_true(same_object(res$a, df$a) && same_object(res$b, df$b), info = paste("pandas =", pd))
    expect_false(is_view(res$a) || is_view(res$b))
    expect_false(same_object(res$s, df$s))  # strings are decoded and made again
    changed <- pyev(df, "x.assign(a=x['a'] * 2) if hasattr(x, 'assign') else pyrmap.Frame({**x, 'a': x['a'] * 2})",
                    pandas = pd)
    expect_identical(changed$a, df$a * 2)
    expect_true(is_view(changed$a))
    # (pandas' assign() copies the other columns: b is then a view of that copy)
    expect_true(if (isTRUE(pd)) is_view(changed$b) else same_object(changed$b, df$b))
    # R's copy-on-modify covers both holders: changing one leaves the other
    res$a[1] <- -1
    res$b[2] <- -2L
    expect_identical(df$a[1:2], c(1, 2))
    expect_identical(df$b[1:2], 1:2)
  }
})

test_that("every kind of column returned unchanged comes back as itself, with its NA", {
  n <- 2000
  df <- data.frame(
    dbl = c(NA, NaN, runif(n - 2)),
    int = c(NA, sample(n - 1)),
    lgl = c(NA, rep(c(TRUE, FALSE), length.out = n - 1)),
    fct = factor(c(NA, sample(letters, n - 1, TRUE)), levels = letters),
    ord = factor(sample(c("lo", "hi"), n, TRUE), levels = c("lo", "hi"), ordered = TRUE),
    date = as.Date("2000-01-01") + c(NA, seq_len(n - 1)),
    utc = as.POSIXct("2020-01-01", tz = "UTC") + c(NA, seq_len(n - 1)))
  if (requireNamespace("bit64", quietly = TRUE))
    df$i64 <- bit64::as.integer64(c(NA, seq_len(n - 1)))
  for (pd in modes()) {
    res <- through(df, pd)
    expect_identical(res, df, info = paste("pandas =", pd))
    # pandas holds dates and times in nanoseconds (a conversion): those come
    # back equal, made again; numpy keeps them as they came
    itself <- if (isTRUE(pd)) setdiff(names(df), c("date", "utc")) else names(df)
    for (col in itself)
      expect_true(same_object(res[[col]], df[[col]]), info = paste(col, "pandas =", pd))
  }
  # a top-level vector (a table because of its NA) too
  x <- c(NA, 1:5000)
  expect_true(same_object(run_python(x, frames_py(), fun = "identity"), x))
})

test_that("a column whose input memory comes back with another meaning is not the input vector", {
  df <- data.frame(a = as.numeric(1:2000), f = factor(rep(c("u", "v"), 1000)), i = c(NA, 2:2000))
  for (pd in modes()) {
    # the same buffer as a 2-d array (in a list: a table): a view of the
    # input block, reshaped
    m <- pyev(df, "{'m': np.asarray(x['a']).reshape(50, 40, order='F')}", pandas = pd)$m
    expect_identical(m, matrix(df$a, 50, 40))
    expect_true(is_view(m))
    # the same codes under other levels
    ren <- pyev(df, paste("x['f'].cat.rename_categories(['U', 'V']) if hasattr(x, 'assign') else",
                          "pyrmap.Categorical(x['f'].codes, ['U', 'V'])"), pandas = pd)
    expect_identical(ren, factor(rep(c("U", "V"), 1000)), info = paste("pandas =", pd))
    # the integer column's data with another mask
    # (data: the input's; mask: new: the odd values and R's NA, or R's NA
    # alone, found again)
    for (m in c("(d % 2 == 1) | (d == -2**31)", "d == -2**31")) {
      masked <- pyev(df, sprintf(paste("(lambda d: pd.arrays.IntegerArray(d, %s))(x['i'].array._data)",
                                       "if hasattr(x, 'assign') else",
                                       "(lambda d: np.ma.MaskedArray(d, %s))(np.ma.getdata(x['i']))"), m, m),
                     pandas = pd)
      want <- if (grepl("%", m)) ifelse(df$i %% 2 == 1, NA, df$i) else df$i
      expect_identical(masked, want, info = paste(m, "pandas =", pd))
      expect_false(same_object(masked, df$i))
    }
  }
})

test_that("a pool gives what a one-shot call gives", {
  pool <- python_pool(workers = 1)
  on.exit(close(pool))
  df <- every_type()
  big <- data.frame(x = runif(2e5), f = factor(sample(letters, 2e5, TRUE)))
  for (pd in modes()) {
    expect_identical(run_python(df, frames_py(), fun = "identity", pool = pool, pandas = pd), df)
    expect_identical(run_python(big, frames_py(), fun = "identity", pool = pool, pandas = pd), big)
    expect_identical(run_python(list(X = cbind(1, 1:4), y = 2 * (1:4)), frames_py(), fun = "fit", pool = pool),
                     run_python(list(X = cbind(1, 1:4), y = 2 * (1:4)), frames_py(), fun = "fit"))
  }
  res <- run_python(big, frames_py(), fun = "identity", pool = pool)
  expect_true(same_object(res$x, big$x) && same_object(res$f, big$f))
})

test_that("shared and pipeline runs carry tables", {
  df <- every_type()
  two <- c(frames_py(), frames_py())
  got <- run_python_shared_data(df, two, fun = "identity")
  expect_identical(got[[1]], df)
  expect_identical(got[[2]], df)
  expect_identical(run_python_pipeline(df, two, fun = "identity"), df)
  kept <- run_python_pipeline(df, two, fun = "identity", keep_intermediate = TRUE)
  expect_identical(kept[[1]], df)
  expect_equal(run_python_pipeline(list(X = cbind(1, 1:3), y = c(1, 2, 3)),
                                   c(frames_py(), frames_py()), fun = c("fit", "ev"),
                                   args = "kw['coef']"), c(0, 1))
})

test_that("what cannot be exact is an error naming the column and the type", {
  bad <- list(
    list(data.frame(d = as.Date(18000.5, origin = "1970-01-01")), "column 'd' of the data\\[1\\] = 18000.5 is not a whole day"),
    list(data.frame(t = as.POSIXct(0.1 + 1e-12, origin = "1970-01-01", tz = "UTC")), "column 't'.*fraction of a nanosecond"),
    list(data.frame(t = as.POSIXct(1e10, origin = "1970-01-01", tz = "UTC")), "column 't'.*beyond what datetime64\\[ns\\] holds"),
    list(data.frame(f = addNA(factor("a"))), "column 'f'.*NA among its levels"),
    list(data.frame(z = complex(real = 1, imaginary = 1)), "column 'z'.*type 'complex'"),
    list(data.frame(dt = as.difftime(1, units = "secs")), "column 'dt'.*class 'difftime'"),
    list(list(m = lm(y ~ x, data.frame(x = 1:3, y = c(2, 4, 7)))), "element 'm'.*class 'lm'"))
  for (b in bad) expect_pyrmap_error(through(b[[1]], FALSE), "pyrmap_usage_error", b[[2]])
  lc <- data.frame(a = 1:2)
  lc$l <- list(1, 2)
  expect_pyrmap_error(through(lc, FALSE), "pyrmap_usage_error", "column 'l' of the data is a list column")
  # Python's side: an object column, a column of mixed time zones, a dtype R lacks.
  expect_pyrmap_error(pyev(NULL, "pyrmap.Frame({'o': np.array([{'a': 1}], dtype=object)})"),
                      "pyrmap_python_error", "column 'o' of the result: it is an object column holding a Python dict")
  expect_pyrmap_error(pyev(NULL, "{'d': np.array([1], dtype='m8[s]')}"), "pyrmap_python_error",
                      "element 'd' of the result: numpy dtype timedelta64\\[s\\] is not supported")
  skip_if_not(have_pandas())
  expect_pyrmap_error(pyev(NULL, "pd.DataFrame({'t': [pd.Timestamp('2020-01-01', tz='UTC'), pd.Timestamp('2020-01-01', tz='Europe/Berlin')]})"),
                      "pyrmap_python_error", "column 't' of the result.*mixed time zones")
  # Duplicated column names need pandas; a dict cannot hold them.
  dup <- data.frame(a = 1, a = 2, check.names = FALSE)
  expect_identical(through(dup, TRUE), dup)
  expect_pyrmap_error(through(dup, FALSE), "pyrmap_python_error", "two columns named 'a'")
})

test_that("dtype is refused for tables, pandas = TRUE without pandas is an error naming the interpreter", {
  expect_pyrmap_error(run_python(data.frame(a = 1), frames_py(), "float64", fun = "identity"),
                      "pyrmap_usage_error", "dtype = 'float64' applies to one numeric vector")
  expect_pyrmap_error(run_python(1, frames_py(), fun = "identity", pandas = "yes"), "pyrmap_usage_error",
                      "pandas must be TRUE")
  nopd <- tempfile(fileext = ".py")
  writeLines(c("import sys", "sys.modules['pandas'] = None", "def f(x):", "    return x"), nopd)
  on.exit(unlink(nopd))
  expect_pyrmap_error(run_python(data.frame(a = 1), nopd, fun = "f", pandas = TRUE), "pyrmap_python_error",
                      "pandas was asked for")
})

test_that("this file leaves no segment in /dev/shm", {
  expect_identical(shm_leftovers(frames_shm_at_start), character(0))
})
