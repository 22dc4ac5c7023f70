// signals.h — SIGINT, SIGTERM and SIGHUP while the command runs.
//
// The handlers only record the first signal and wake a self-pipe; the run's
// check_interrupt (options.h) then throws Error(kInterrupt), which unwinds
// through every guard (children killed, segments removed), and main() exits
// with 128 + the signal. Blocking calls return EINTR (no SA_RESTART).
#pragma once

namespace pyrmap::cli {

// Installs the handlers (once) and returns the self-pipe's read end, which
// becomes readable when a signal arrives.
int InstallSignalHandlers();

// The read end of the self-pipe, or -1 before InstallSignalHandlers.
int SignalWakeFd();

// The first signal caught, or 0.
int CaughtSignal();

// Throws Error(kInterrupt) "interrupted by SIG<NAME> <doing>" if a signal
// was caught.
void ThrowIfSignalled(const char* doing);

}  // namespace pyrmap::cli
