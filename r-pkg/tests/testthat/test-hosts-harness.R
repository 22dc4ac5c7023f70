# The simulated hosts the multi-host tests use keep their shared memory
# apart, and PSOCK workers started in them connect back to this session.

test_that("simulated hosts have a /dev/shm of their own and run PSOCK workers", {
  skip_without_hosts()
  base <- local_hosts(c("h1", "h2"))
  in_host(base, "h1", c("touch", "/dev/shm/pyrmap-harness-probe"))
  expect_identical(host_shm(base, "h1"), "pyrmap-harness-probe")
  expect_identical(host_shm(base, "h2"), character(0))
  expect_false(file.exists("/dev/shm/pyrmap-harness-probe"))
  cl <- parallel::makePSOCKcluster(c("h1", "h2"), rshcmd = enter_host(), master = "127.0.0.1",
                                   homogeneous = TRUE)
  on.exit(parallel::stopCluster(cl), add = TRUE)
  seen <- parallel::clusterCall(cl, function() list.files("/dev/shm", "^pyrmap-harness"))
  expect_identical(seen, list("pyrmap-harness-probe", character(0)))
})
