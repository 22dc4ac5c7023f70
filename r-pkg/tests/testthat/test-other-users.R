# What another local user can do to this user's shared variables: plant a
# file under a page's name (squat) or forge a page. Neither is ever served,
# reclaimed or removed as ours, and a squatter cannot block a user for good.
# Runs as root with a throw-away second user (skipped otherwise).

shm_at_start <- shm_snapshot()

test_that("a squatted page name fails registration with the file, its owner and a way around it", {
  user <- test_user()
  on.exit(drop_user(user), add = TRUE)
  ns <- sprintf("squat-%d", Sys.getpid())
  name <- page_name_of(ns, "X")
  path <- file.path(shm_dir, name)
  on.exit(unlink(path), add = TRUE)
  expect_identical(as_user(user, "touch", path), 0L)
  e <- expect_error(registerVariables(ns, list(X = 1:3)), class = "pyrmap_system_error")
  msg <- conditionMessage(e)
  expect_match(msg, "cannot register variable 'X'", fixed = TRUE)
  expect_match(msg, path, fixed = TRUE)
  expect_match(msg, sprintf("owned by %s (uid %s)", user$name, user$uid), fixed = TRUE)
  expect_match(msg, "mode 0644", fixed = TRUE)
  expect_match(msg, "segment_dir", fixed = TRUE)
  expect_false(paste0(ns, ".X") %in% unlist(pageList()))
  e <- expect_error(retrieveViews(ns, "X"), class = "pyrmap_system_error")
  expect_match(conditionMessage(e), user$name, fixed = TRUE)
  # The way around it: a segment directory of one's own.
  d <- private_dir()
  on.exit(unlink(d, recursive = TRUE), add = TRUE)
  old <- options(pyrmap.segment_dir = d)
  on.exit(options(old), add = TRUE)
  registerVariables(ns, list(X = 1:3))
  expect_identical(retrieveViews(ns, "X")$X, 1:3)
  releaseViews(ns, "X")
  releaseVariables(ns, "X")
  expect_true(file.exists(path))  # not ours to remove
})

test_that("a page forged by another user is never served as the victim's data", {
  user <- test_user()
  on.exit(drop_user(user), add = TRUE)
  ns <- sprintf("forge-%d", Sys.getpid())
  name <- page_name_of(ns, "X")
  registerVariables(ns, list(X = c(1, 2, 3)))
  path <- file.path(shm_dir, name)
  bytes <- readBin(path, "raw", file.size(path))
  releaseVariables(ns, "X")
  # The same page with other values, planted by the other user.
  want <- writeBin(c(1, 2, 3), raw(), endian = "little")
  at <- Filter(function(i) identical(bytes[i:(i + 23L)], want), seq_len(length(bytes) - 23L))
  expect_length(at, 1L)
  bytes[at:(at + 7L)] <- writeBin(666, raw(), endian = "little")
  src <- tempfile(tmpdir = "/tmp")
  on.exit(unlink(c(src, path)), add = TRUE)
  writeBin(bytes, src)
  Sys.chmod(src, "0644", use_umask = FALSE)
  expect_identical(as_user(user, "cp", c(src, path)), 0L)
  e <- expect_error(retrieveViews(ns, "X"), class = "pyrmap_system_error")
  expect_match(conditionMessage(e), sprintf("owned by %s", user$name), fixed = TRUE)
  expect_error(retrieveMetadata(ns, "X"), class = "pyrmap_system_error")
  expect_error(registerVariables(ns, list(X = 4)), class = "pyrmap_system_error")
  expect_error(run_python(1, py("identity.py")), NA)  # runs are not affected
})

test_that("the end of the file leaves no segment", {
  expect_identical(shm_leftovers(shm_at_start), character(0))
})
