#include "spawn.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/wait.h>
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

namespace {

// Waits (up to `seconds`) until `pid` no longer exists; true if it is gone.
bool GoneWithin(pid_t pid, double seconds) {
  double end = Seconds() + seconds;
  while (Seconds() < end) {
    if (kill(pid, 0) != 0 && errno == ESRCH) return true;
    usleep(10000);
  }
  return false;
}

}  // namespace

TEST_CASE("a child dies with the process that started it") {
  // An intermediate process starts `sleep` through Spawn, reports its pid,
  // and dies without cleaning up (as a caller killed with SIGKILL would):
  // the parent-death signal must take the child along.
  int report[2];
  REQUIRE(pipe(report) == 0);
  pid_t middle = fork();
  REQUIRE(middle >= 0);
  if (middle == 0) {
    close(report[0]);
    SpawnOptions o;
    o.argv = {"sleep", "600"};
    o.capture_stderr = false;
    Process p = Process::Spawn(o);
    pid_t pid = p.pid();
    [[maybe_unused]] ssize_t n = write(report[1], &pid, sizeof pid);
    _exit(0);  // no destructor runs: nothing kills the child on purpose
  }
  close(report[1]);
  pid_t child = -1;
  REQUIRE(read(report[0], &child, sizeof child) == static_cast<ssize_t>(sizeof child));
  close(report[0]);
  int ws;
  REQUIRE(waitpid(middle, &ws, 0) == middle);
  // Reaped by init once dead; kill(pid, 0) then fails with ESRCH. Generous
  // bound: the signal is delivered at once, a loaded machine may be slow.
  bool gone = GoneWithin(child, 30);
  if (!gone) kill(child, SIGKILL);
  CHECK(gone);
}

TEST_CASE("what a child leaves running in its process group ends with it") {
  WaitOptions w;
  std::string out;
  w.on_stdout = [&](std::string_view s) { out += s; };
  Process p = Sh("sleep 600 & echo $!");
  ExitStatus st = p.Wait(w);
  CHECK(st.ok());
  pid_t left = static_cast<pid_t>(std::stol(out));
  REQUIRE(left > 0);
  bool gone = GoneWithin(left, 30);
  if (!gone) kill(left, SIGKILL);
  CHECK(gone);
}

TEST_CASE("a child starts with default signal dispositions and an empty mask") {
  // A handler or a blocked signal of the parent must not reach the child.
  struct sigaction sa = {}, old_int;
  sa.sa_handler = [](int) {};
  sigaction(SIGINT, &sa, &old_int);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old_mask);
  std::string out;
  WaitOptions w;
  w.on_stdout = [&](std::string_view s) { out += s; };
  SpawnOptions o;
  o.argv = {"grep", "-E", "^(SigBlk|SigCgt):", "/proc/self/status"};
  o.capture_stdout = true;
  Process p = Process::Spawn(o);
  CHECK(p.Wait(w).ok());
  INFO(out);
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  sigaction(SIGINT, &old_int, nullptr);
  CHECK(out.find("SigBlk:\t0000000000000000") != std::string::npos);
  // The parent's SIGINT handler is gone (grep catches SIGSEGV itself).
  size_t at = out.find("SigCgt:\t");
  REQUIRE(at != std::string::npos);
  unsigned long long caught = std::stoull(out.substr(at + 8, 16), nullptr, 16);
  CHECK((caught & (1ull << (SIGINT - 1))) == 0);
}
