# Simulated hosts for the multi-host tests: each "host" is a persistent mount
# and IPC namespace with its own tmpfs on /dev/shm (unshare/nsenter, as
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

# Makes the simulated hosts `names` for the calling test; they are taken
# down when it ends (processes still inside keep their namespace alive, but
# nothing is left mounted). Sets PYRMAP_TEST_HOSTS for enter_host().
local_hosts <- function(names, env = parent.frame()) {
  base <- tempfile("pyrmap-hosts")
  dir.create(base)
  sh <- function(...) {
    status <- system2("sh", c("-c", shQuote(paste(...))), stdout = FALSE, stderr = FALSE)
    if (!identical(status, 0L)) stop("simulated hosts: failed: ", paste(...))
  }
  # The namespace files must live on a private mount to be bind-mounted.
  sh("mount --bind", shQuote(base), shQuote(base), "&& mount --make-private", shQuote(base))
  made <- character()
  withr::defer({
    for (h in made)
      for (f in c("mnt", "ipc"))
        system2("umount", shQuote(file.path(base, h, f)), stdout = FALSE, stderr = FALSE)
    system2("umount", shQuote(base), stdout = FALSE, stderr = FALSE)
    unlink(base, recursive = TRUE)
  }, envir = env)
  for (h in names) {
    dir.create(file.path(base, h))
    file.create(file.path(base, h, c("mnt", "ipc")))
    sh("unshare", paste0("--mount=", shQuote(file.path(base, h, "mnt"))),
       paste0("--ipc=", shQuote(file.path(base, h, "ipc"))), "--propagation private",
       "sh -c 'mount -t tmpfs -o size=2g,mode=1777 tmpfs /dev/shm'")
    made <- c(made, h)
  }
  withr::local_envvar(PYRMAP_TEST_HOSTS = base, .local_envir = env)
  base
}

# Runs `args` (a program and its arguments) inside simulated host `host`.
in_host <- function(base, host, args, ...) {
  system2("nsenter", c(paste0("--mount=", file.path(base, host, "mnt")),
                       paste0("--ipc=", file.path(base, host, "ipc")), "--", args), ...)
}

# The names in a simulated host's /dev/shm.
host_shm <- function(base, host) in_host(base, host, c("ls", "-A", "/dev/shm"), stdout = TRUE)
