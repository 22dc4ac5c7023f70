#include "spawn.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

using namespace pyrmap;

namespace {

Process Sh(const std::string& script, std::vector<std::pair<std::string, std::string>> env = {}) {
  SpawnOptions o;
  o.argv = {"sh", "-c", script};
  o.env = std::move(env);
  o.capture_stdout = true;
  return Process::Spawn(o);
}

double Seconds() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

}  // namespace

TEST_CASE("a program that does not exist is an error naming it, not exit 127") {
  SpawnOptions o;
  o.argv = {"no-such-python-here", "-c", "pass"};
  o.what = "Python interpreter";
  try {
    Process::Spawn(o);
    FAIL("spawned a missing program");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kSystem);
    CHECK(e.sys_errno() == ENOENT);
    CHECK(std::string(e.what()) ==
          "start Python interpreter 'no-such-python-here': not found on PATH "
          "(execve: 2, No such file or directory)");
  }
  o.argv = {"/etc/hostname"};
  CHECK_THROWS_AS(Process::Spawn(o), Error);  // not executable
}

TEST_CASE("exit status, signals, output and the end of stderr are reported") {
  std::string out;
  WaitOptions w;
  w.on_stdout = [&](std::string_view s) { out += s; };
  w.on_stderr = [](std::string_view) {};
  Process p = Sh("echo hello; echo $GREETING; echo oops >&2; exit 3", {{"GREETING", "hi there"}});
  ExitStatus st = p.Wait(w);
  CHECK(st.exited);
  CHECK(st.code == 3);
  CHECK(st.Describe() == "exited with status 3");
  CHECK(out == "hello\nhi there\n");
  CHECK(p.stderr_tail() == "oops\n");

  Process k = Sh("kill -9 $$");
  ExitStatus ks = k.Wait(w);
  CHECK_FALSE(ks.exited);
  CHECK(ks.signal == SIGKILL);
  CHECK(ks.Describe().find("signal 9 (SIGKILL") != std::string::npos);
}

TEST_CASE("a timeout kills the whole process group promptly") {
  WaitOptions w;
  w.timeout_seconds = 0.3;
  w.on_stderr = [](std::string_view) {};
  double t0 = Seconds();
  Process p = Sh("sleep 30 & sleep 30; echo never");
  bool timed_out = false;
  ExitStatus st = p.Wait(w, &timed_out);
  CHECK(timed_out);
  CHECK(st.signal == SIGKILL);
  CHECK(Seconds() - t0 < 20);  // far below the sleeps' 30 s, whatever the load
}

TEST_CASE("an interrupt while waiting kills the child and propagates") {
  WaitOptions w;
  int calls = 0;
  w.poll_interval_ms = 20;
  w.check_interrupt = [&] {
    if (++calls == 3) throw Error(ErrorKind::kInterrupt, "stop");
  };
  Process p = Sh("sleep 30");
  pid_t pid = p.pid();
  CHECK_THROWS_AS(p.Wait(w), Error);
  CHECK(kill(pid, 0) != 0);  // reaped: no such process
}

TEST_CASE("descriptors listed in fds reach the child under their new number") {
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  int high = fcntl(fds[1], F_DUPFD_CLOEXEC, 20);
  close(fds[1]);
  SpawnOptions o;
  o.argv = {"sh", "-c", "echo through >&3"};
  o.fds = {{high, 3}};
  Process p = Process::Spawn(o);
  close(high);
  WaitOptions w;
  CHECK(p.Wait(w).ok());
  char buf[32] = {};
  CHECK(read(fds[0], buf, sizeof buf) == 8);
  CHECK(std::string(buf) == "through\n");
  close(fds[0]);
}

TEST_CASE("descriptors are passed whatever their numbers, even onto each other's targets") {
  // Parent fds 3 and 4 passed crosswise (3 -> 4, 4 -> 3), and one onto its
  // own number: each must arrive intact.
  int a[2], b[2];
  REQUIRE(pipe2(a, O_CLOEXEC) == 0);
  REQUIRE(pipe2(b, O_CLOEXEC) == 0);
  int keep3 = fcntl(3, F_DUPFD_CLOEXEC, 30), keep4 = fcntl(4, F_DUPFD_CLOEXEC, 30);
  REQUIRE(dup3(a[1], 3, O_CLOEXEC) == 3);
  REQUIRE(dup3(b[1], 4, O_CLOEXEC) == 4);
  SpawnOptions o;
  o.argv = {"sh", "-c", "echo to-a >&4; echo to-b >&3"};
  o.fds = {{3, 4}, {4, 3}};
  Process p = Process::Spawn(o);
  WaitOptions w;
  CHECK(p.Wait(w).ok());
  dup3(keep3, 3, O_CLOEXEC);
  dup3(keep4, 4, O_CLOEXEC);
  close(keep3);
  close(keep4);
  close(a[1]);
  close(b[1]);
  char buf[16] = {};
  CHECK(read(a[0], buf, sizeof buf) == 5);
  CHECK(std::string(buf, 5) == "to-a\n");
  CHECK(read(b[0], buf, sizeof buf) == 5);
  CHECK(std::string(buf, 5) == "to-b\n");
  close(a[0]);
  close(b[0]);
}

TEST_CASE("FindOnPath resolves names and passes paths through") {
  CHECK(FindOnPath("sh").find("/sh") != std::string::npos);
  CHECK(FindOnPath("./x/y") == "./x/y");
  CHECK(FindOnPath("surely-not-a-program-name").empty());
}
