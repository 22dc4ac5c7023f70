# Simulated hosts for the multi-host tests: each "host" is a mount and IPC
# namespace with its own tmpfs on /dev/shm (unshare/nsenter, as
# root), so processes started there share no shared memory with this one.
# Workers get there through makePSOCKcluster(..., rshcmd = enter_host()).

hosts_skip_reason <- function() {
  if (Sys.info()[["sysname"]] != "Linux") return("simulated hosts need Linux namespaces")
  uid <- as.integer(system2("id", "-u", stdout = TRUE))
  if (!identical(uid, 0L)) return("simulated hosts need root (mount and IPC namespaces)")
  for (tool in c("unshare", "nsenter", "mount", "umount"))
    if (!nzchar(Sys.which(tool))) return(paste("simulated hosts need", tool))
  probe <- suppressWarnings(system2("unshare", c("--mount", "--ipc", "true"), stdout = FALSE,
                                    stderr = FALSE))
  if (!identical(probe, 0L)) return("unshare --mount --ipc is not permitted here")
  NULL
}

skip_without_hosts <- function() {
  why <- hosts_skip_reason()
  if (!is.null(why)) testthat::skip(why)
}

# The rshcmd that starts a command in a simulated host.
enter_host <- function() normalizePath(testthat::test_path("hosts", "enter-host"))

source(testthat::test_path("hosts", "hosts.R"), local = TRUE)  # make_hosts(), drop_hosts(), in_host()

# Makes the simulated hosts `names` (with a /dev/shm of `shm_size`) for the
# calling test; they are taken down when it ends. Sets PYRMAP_TEST_HOSTS
# (where enter-host finds them).
local_hosts <- function(names, shm_size = "2g", env = parent.frame()) {
  hosts <- make_hosts(names, shm_size)
  withr::defer(drop_hosts(hosts), envir = env)
  withr::local_envvar(PYRMAP_TEST_HOSTS = hosts$base, .local_envir = env)
  hosts$base
}

# The names in a simulated host's /dev/shm.
host_shm <- function(base, host) in_host(base, host, c("ls", "-A", "/dev/shm"), stdout = TRUE)
