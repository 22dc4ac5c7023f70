// test_user.h — a throw-away second local user, for tests of what another
// user can do to this user's segments. Made with useradd, removed with
// userdel when the object is destroyed (also when the test fails). Needs
// root; otherwise available() is false and why_not() says why.
#pragma once

#include <sys/stat.h>
#include <sys/wait.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <string>

namespace pyrmap::test {

class TestUser {
 public:
  TestUser() {
    if (geteuid() != 0) {
      why_not_ = "not root: cannot add a second user";
      return;
    }
    if (access("/usr/sbin/useradd", X_OK) != 0 && access("/sbin/useradd", X_OK) != 0) {
      why_not_ = "useradd is not installed";
      return;
    }
    name_ = "pyrmapt" + std::to_string(getpid());
    // Other test runs may hold /etc/passwd's lock for a moment: retry.
    for (int i = 0; i < 50 && !made_; ++i) {
      std::string cmd = "useradd --system --no-create-home --shell /usr/sbin/nologin " + name_ +
                        " >/dev/null 2>&1";
      made_ = std::system(cmd.c_str()) == 0;
      if (!made_) usleep(100000);
    }
    struct passwd* pw = made_ ? getpwnam(name_.c_str()) : nullptr;
    if (!pw) {
      why_not_ = "useradd " + name_ + " failed";
      return;
    }
    uid_ = pw->pw_uid;
    gid_ = pw->pw_gid;
  }
  ~TestUser() {
    if (!made_) return;
    for (int i = 0; i < 50; ++i) {
      std::string cmd = "userdel " + name_ + " >/dev/null 2>&1";
      if (std::system(cmd.c_str()) == 0) break;
      usleep(100000);
    }
  }
  TestUser(const TestUser&) = delete;
  TestUser& operator=(const TestUser&) = delete;

  bool available() const { return why_not_.empty(); }
  const std::string& why_not() const { return why_not_; }
  const std::string& name() const { return name_; }
  uid_t uid() const { return uid_; }
  gid_t gid() const { return gid_; }

  // Runs fn() in a child process as this user (no supplementary groups);
  // returns fn's result (its exit status), or -1 if the child failed
  // otherwise. Only async-signal-safe work should be assumed safe in fn, but
  // the tests are single-threaded here.
  int Run(const std::function<int()>& fn) const {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
      if (setgroups(0, nullptr) != 0 || setgid(gid_) != 0 || setuid(uid_) != 0) _exit(125);
      int rc = 126;
      try {
        rc = fn();
      } catch (...) {
        rc = 124;
      }
      _exit(rc);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  std::string name_;
  std::string why_not_;
  bool made_ = false;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
};

}  // namespace pyrmap::test
