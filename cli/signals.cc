#include "signals.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include <fmt/format.h>

#include "error.h"

namespace pyrmap::cli {

namespace {

std::atomic<int> g_signal{0};
int g_wake[2] = {-1, -1};

void OnSignal(int sig) {
  int expected = 0;
  g_signal.compare_exchange_strong(expected, sig);
  char c = 1;
  [[maybe_unused]] ssize_t n = write(g_wake[1], &c, 1);
}

}  // namespace

int InstallSignalHandlers() {
  if (g_wake[0] < 0 && pipe2(g_wake, O_CLOEXEC | O_NONBLOCK) != 0)
    throw SystemError("install signal handlers", "self-pipe", "pipe2", errno);
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: blocking reads return EINTR
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &sa, nullptr);
  return g_wake[0];
}

int SignalWakeFd() { return g_wake[0]; }

int CaughtSignal() { return g_signal.load(); }

void ThrowIfSignalled(const char* doing) {
  if (int sig = CaughtSignal())
    throw Error(ErrorKind::kInterrupt, fmt::format("interrupted by SIG{} {}", sigabbrev_np(sig), doing));
}

}  // namespace pyrmap::cli
