// unix_io.h — small system-call helpers the run units share: a monotonic
// clock, writing all of a buffer, and messages with a descriptor attached
// (SCM_RIGHTS) on a Unix socket.
#pragma once

#include <string_view>
#include <vector>

namespace pyrmap {

// Seconds on the monotonic clock.
double MonotonicSeconds();

// Writes all of `s` to stderr, retrying after signals; gives up silently on
// an error (used for relaying a script's output).
void WriteAllToStderr(std::string_view s);

// Sends `data` as one message on socket `sock`, with descriptor `pass_fd`
// attached when it is >= 0 (MSG_NOSIGNAL). Returns the result of sendmsg
// (errno set on failure), retrying after signals.
long SendWithDescriptor(int sock, const void* data, size_t size, int pass_fd);

// Receives one message of at most `size` bytes from `sock` (MSG_DONTWAIT,
// descriptors close-on-exec), appending the descriptors passed with it to
// `fds`. Returns the result of recvmsg (errno set on failure; EAGAIN when
// nothing is there); `*truncated` tells whether the message was cut.
long ReceiveWithDescriptors(int sock, void* data, size_t size, std::vector<int>* fds,
                            bool* truncated);

}  // namespace pyrmap
