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

# Makes the simulated hosts `names` (with a /dev/shm of `shm_size`) for the
# calling test; they are taken
# down when it ends (processes still inside keep their namespaces alive).
# Each host is held by a process that unshared them and sleeps; its pid is
# in <base>/<host>/pid, where enter-host finds it. Sets PYRMAP_TEST_HOSTS.
local_hosts <- function(names, shm_size = "2g", env = parent.frame()) {
  base <- tempfile("pyrmap-hosts")
  dir.create(base)
  holders <- integer()
  withr::defer({
    if (length(holders)) tools::pskill(holders, tools::SIGKILL)
    unlink(base, recursive = TRUE)
  }, envir = env)
  for (h in names) {
    dir <- file.path(base, h)
    dir.create(dir)
    ready <- file.path(dir, "ready")
    # (The holder ends by itself after an hour, should this session die first.)
    inner <- paste0("mount -t tmpfs -o size=", shm_size, ",mode=1777 tmpfs /dev/shm && touch ", shQuote(ready),
                    " && exec sleep 3600")
    pid <- system2("sh", c("-c", shQuote(paste(
      "unshare --mount --ipc --propagation private sh -c", shQuote(inner),
      "</dev/null >/dev/null 2>&1 & echo $!"))), stdout = TRUE)
    holders <- c(holders, as.integer(pid))
    deadline <- Sys.time() + 60
    while (!file.exists(ready)) {
      if (Sys.time() > deadline || !file.exists(file.path("/proc", pid)))
        stop("simulated hosts: host ", h, " did not start (unshare --mount --ipc)")
      Sys.sleep(0.05)
    }
    writeLines(pid, file.path(dir, "pid"))
  }
  withr::local_envvar(PYRMAP_TEST_HOSTS = base, .local_envir = env)
  base
}

# Runs `args` (a program and its arguments) inside simulated host `host`.
in_host <- function(base, host, args, ...) {
  pid <- readLines(file.path(base, host, "pid"))
  system2("nsenter", c("-t", pid, "--mount", "--ipc", "--", args), ...)
}

# The names in a simulated host's /dev/shm.
host_shm <- function(base, host) in_host(base, host, c("ls", "-A", "/dev/shm"), stdout = TRUE)
