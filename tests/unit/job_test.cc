#include "job.h"

#include <doctest/doctest.h>

#include <sys/socket.h>

#include <cstring>
#include <unistd.h>

#include "error.h"

using namespace pyrmap;

TEST_CASE("the ready byte arrives, with the descriptor passed along") {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  int pass[2];
  REQUIRE(pipe(pass) == 0);
  CHECK(SendReady(sv[0], pass[0], "s.py"));
  char byte = 0;
  char control[CMSG_SPACE(sizeof(int))] = {};
  struct iovec iov = {&byte, 1};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  REQUIRE(recvmsg(sv[1], &msg, 0) == 1);
  CHECK(byte == '1');
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  REQUIRE(c != nullptr);
  CHECK(c->cmsg_type == SCM_RIGHTS);
  int got;
  std::memcpy(&got, CMSG_DATA(c), sizeof got);
  CHECK(got >= 0);
  close(got);
  for (int fd : {sv[0], sv[1], pass[0], pass[1]}) close(fd);
}

TEST_CASE("a script that is gone is not an error when it is sent its ready byte") {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  close(sv[1]);
  CHECK_FALSE(SendReady(sv[0], -1, "s.py"));
  close(sv[0]);
}

TEST_CASE("any other failure to send the ready byte is an error, never a script left waiting") {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  int closed[2];
  REQUIRE(pipe(closed) == 0);
  close(closed[0]);
  close(closed[1]);
  try {
    SendReady(sv[0], closed[0], "scripts/s.py");  // passing a closed descriptor: EBADF
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kSystem);
    CHECK(e.sys_errno() == EBADF);
    CHECK(std::string(e.what()).find("send the ready byte to script 'scripts/s.py': sendmsg failed") !=
          std::string::npos);
  }
  close(sv[0]);
  close(sv[1]);
}
