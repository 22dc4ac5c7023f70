# Simulated hosts (plain R, sourced by the multi-host tests' helper and by
# bench/r/b10.R): each "host" is a mount and IPC namespace with its own
# tmpfs on /dev/shm, so processes started there share no shared memory with
# others. Needs root, unshare and nsenter. enter-host (beside this file)
# starts a command in one, as an rsh for makePSOCKcluster().

# Makes the hosts `names` with a /dev/shm of `shm_size` under a new
# directory: list(base, holders). Each host is held by a process that
# unshared the namespaces and sleeps; its pid is in <base>/<host>/pid, where
# enter-host finds it. A holder ends by itself after an hour, should its
# maker die first. Stops (after taking down what it made) if a host does not
# start within a minute.
make_hosts <- function(names, shm_size = "2g") {
  base <- tempfile("pyrmap-hosts")
  dir.create(base)
  hosts <- list(base = base, holders = integer())
  for (h in names) {
    dir <- file.path(base, h)
    dir.create(dir)
    ready <- file.path(dir, "ready")
    inner <- paste0("mount -t tmpfs -o size=", shm_size, ",mode=1777 tmpfs /dev/shm && touch ", shQuote(ready),
                    " && exec sleep 3600")
    pid <- system2("sh", c("-c", shQuote(paste(
      "unshare --mount --ipc --propagation private sh -c", shQuote(inner),
      "</dev/null >/dev/null 2>&1 & echo $!"))), stdout = TRUE)
    hosts$holders <- c(hosts$holders, as.integer(pid))
    deadline <- Sys.time() + 60
    while (!file.exists(ready)) {
      if (Sys.time() > deadline || !file.exists(file.path("/proc", pid))) {
        drop_hosts(hosts)
        stop("simulated hosts: host ", h, " did not start (unshare --mount --ipc)")
      }
      Sys.sleep(0.05)
    }
    writeLines(pid, file.path(dir, "pid"))
  }
  hosts
}

# Takes down the hosts of make_hosts() (processes still inside keep their
# namespaces alive).
drop_hosts <- function(hosts) {
  if (length(hosts$holders)) tools::pskill(hosts$holders, tools::SIGKILL)
  unlink(hosts$base, recursive = TRUE)
}

# Runs `args` (a program and its arguments) inside host `host` of `base`.
in_host <- function(base, host, args, ...) {
  pid <- readLines(file.path(base, host, "pid"))
  system2("nsenter", c("-t", pid, "--mount", "--ipc", "--", args), ...)
}
