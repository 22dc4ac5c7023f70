# Helpers for the tests of segment directories and of other users' reach.

# A fresh directory of ours (mode 0700); the caller removes it
# (on.exit(unlink(d, recursive = TRUE), add = TRUE)).
private_dir <- function() {
  d <- tempfile("pyrmap-segdir-")
  dir.create(d, mode = "0700")
  Sys.chmod(d, "0700", use_umask = FALSE)
  normalizePath(d)
}

# pyrmap files (names starting "pyrmap-") in directory `d`.
pyrmap_files <- function(d) list.files(d, "^pyrmap-", all.files = TRUE)

# A throw-away second local user, or a skip: useradd now; the caller removes
# it with on.exit(drop_user(user), add = TRUE), so that it goes pass or fail.
# Needs root, and setpriv to act as it.
test_user <- function() {
  if (!identical(my_uid(), "0")) testthat::skip("not root: cannot add a second user")
  useradd <- Sys.which("useradd")[[1L]]
  if (!nzchar(useradd)) useradd <- "/usr/sbin/useradd"
  if (!file.exists(useradd) || !nzchar(Sys.which("setpriv")[[1L]]))
    testthat::skip("useradd or setpriv is not installed")
  name <- sprintf("pyrmapr%d", Sys.getpid())
  made <- FALSE
  for (i in 1:50) {
    rc <- suppressWarnings(system2(useradd, c("--system", "--no-create-home", "--shell",
                                              "/usr/sbin/nologin", name),
                                   stdout = FALSE, stderr = FALSE))
    if (rc == 0L) { made <- TRUE; break }
    Sys.sleep(0.1)
  }
  if (!made) testthat::skip(sprintf("useradd %s failed", name))
  ids <- strsplit(system2("id", c("-u", name), stdout = TRUE), " ")[[1L]]
  gid <- system2("id", c("-g", name), stdout = TRUE)
  list(name = name, uid = ids[[1L]], gid = gid)
}

drop_user <- function(user) {
  for (i in 1:50) {
    if (suppressWarnings(system2("userdel", user$name, stdout = FALSE, stderr = FALSE)) == 0L) break
    Sys.sleep(0.1)
  }
}

# Runs a command as `user` (no supplementary groups); returns its exit status.
as_user <- function(user, cmd, args = character()) {
  suppressWarnings(system2("setpriv", c("--reuid", user$uid, "--regid", user$gid, "--clear-groups",
                                        cmd, args), stdout = FALSE, stderr = FALSE))
}

# The name of the page of (ns, var) for this user (as the core names it):
# found by registering a throw-away value and releasing it again.
page_name_of <- function(ns, var) {
  before <- list.files(shm_dir, "-ns-")
  registerVariables(ns, stats::setNames(list(1), var))
  name <- setdiff(list.files(shm_dir, "-ns-"), before)
  releaseVariables(ns, var)
  name
}
