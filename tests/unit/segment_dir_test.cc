#include "segment_dir.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <linux/magic.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>

#include "error.h"
#include "inventory.h"
#include "segment.h"
#include "test_user.h"

using namespace pyrmap;

namespace {

// A directory under /tmp (mode 0700), removed with its contents at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/pyrmap-unit-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

// Sets an environment variable for the scope, restoring it after.
struct ScopedEnv {
  std::string name;
  bool had;
  std::string old;
  ScopedEnv(const std::string& n, const char* value) : name(n) {
    const char* o = getenv(n.c_str());
    had = o != nullptr;
    if (had) old = o;
    if (value) setenv(n.c_str(), value, 1);
    else unsetenv(n.c_str());
  }
  ~ScopedEnv() {
    if (had) setenv(name.c_str(), old.c_str(), 1);
    else unsetenv(name.c_str());
  }
};

std::string Message(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool Contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

}  // namespace

TEST_CASE("the segment directory is the explicit choice, else PYRMAP_SEGMENT_DIR, else /dev/shm") {
  TempDir d;
  {
    ScopedEnv env(kSegmentDirEnv, nullptr);
    CHECK(ResolveSegmentDir("") == "/dev/shm");
    CHECK(ResolveSegmentDir("RAM") == "/dev/shm");
    CHECK(ResolveSegmentDir(d.path) == d.path);
    CHECK(ResolveSegmentDir(d.path + "/") == d.path);
    CHECK(ResolveSegmentDir("DISK") == DiskSegmentDir());
  }
  {
    ScopedEnv env(kSegmentDirEnv, d.path.c_str());
    CHECK(ResolveSegmentDir("") == d.path);
    CHECK(ResolveSegmentDir("RAM") == "/dev/shm");  // the explicit choice wins
    CHECK(SegmentDir::Choose("").path() == d.path);
  }
  {
    ScopedEnv env(kSegmentDirEnv, "RAM");
    CHECK(ResolveSegmentDir("") == "/dev/shm");
  }
  // A relative path is taken from the working directory.
  char cwd[4096];
  REQUIRE(getcwd(cwd, sizeof cwd));
  REQUIRE(chdir(d.path.c_str()) == 0);
  REQUIRE(mkdir("sub", 0700) == 0);
  CHECK(ResolveSegmentDir("sub") == d.path + "/sub");
  REQUIRE(chdir(cwd) == 0);
}

TEST_CASE("DISK is a private directory on a disk-backed file system when there is one") {
  std::string disk = DiskSegmentDir();
  CHECK(disk.substr(disk.rfind('/')) == "/pyrmap-" + std::to_string(geteuid()));
  std::string base = disk.substr(0, disk.rfind('/'));
  struct statfs fs;
  REQUIRE(statfs("/var/tmp", &fs) == 0);
  if (static_cast<unsigned long>(fs.f_type) != TMPFS_MAGIC) CHECK(base == "/var/tmp");
  REQUIRE(statfs(base.c_str(), &fs) == 0);
  if (base == "/var/tmp") CHECK(static_cast<unsigned long>(fs.f_type) != TMPFS_MAGIC);

  TempDir state;
  ScopedEnv xdg("XDG_STATE_HOME", state.path.c_str());
  const bool existed = access(disk.c_str(), F_OK) == 0;
  SegmentDir dir = SegmentDir::Choose("DISK");
  CHECK(dir.path() == disk);
  struct stat st;
  REQUIRE(stat(disk.c_str(), &st) == 0);
  CHECK(st.st_uid == geteuid());
  CHECK((st.st_mode & 077) == 0);
  if (!existed) rmdir(disk.c_str());
}

TEST_CASE("a directory others could write into is refused, naming it, its owner and mode") {
  TempDir d;
  CHECK_NOTHROW(SegmentDir::Open(d.path));  // mode 0700, ours
  REQUIRE(chmod(d.path.c_str(), 0777) == 0);
  std::string m = Message([&] { SegmentDir::Open(d.path); });
  CHECK(Contains(m, "segment directory '" + d.path + "' is not safe to use"));
  CHECK(Contains(m, "mode 0777"));
  CHECK(Contains(m, DescribeUser(geteuid())));
  CHECK(Contains(m, "path = \"DISK\""));
  REQUIRE(chmod(d.path.c_str(), 0770) == 0);
  CHECK_THROWS_AS(SegmentDir::Open(d.path), Error);
  REQUIRE(chmod(d.path.c_str(), 01777) == 0);  // sticky, like /dev/shm and /tmp
  CHECK_NOTHROW(SegmentDir::Open(d.path));
  CHECK_NOTHROW(SegmentDir::Open("/dev/shm"));

  try {
    SegmentDir::Choose(d.path + "/missing");
    FAIL("opened a missing directory");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kUsage);
    CHECK(e.sys_errno() == ENOENT);
    CHECK(Contains(e.what(), d.path + "/missing' does not exist"));
  }
}

TEST_CASE("a directory of another user is refused, naming the user") {
  test::TestUser other;
  if (!other.available()) {
    MESSAGE("skipped: " << other.why_not());
    return;
  }
  TempDir d;
  REQUIRE(chown(d.path.c_str(), other.uid(), other.gid()) == 0);
  std::string m = Message([&] { SegmentDir::Open(d.path); });
  CHECK(Contains(m, "owned by " + other.name() + " (uid " + std::to_string(other.uid()) + ")"));

  // The DISK directory squatted by that user (in a private mount namespace
  // where /var/tmp is an empty directory of ours).
  TempDir fake_var_tmp;
  REQUIRE(chmod(fake_var_tmp.path.c_str(), 01777) == 0);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount(fake_var_tmp.path.c_str(), "/var/tmp", nullptr, MS_BIND, nullptr) != 0)
      _exit(77);
    std::string disk = "/var/tmp/pyrmap-" + std::to_string(geteuid());
    if (other.Run([&] { return mkdir(disk.c_str(), 0777) == 0 ? 0 : 1; }) != 0) _exit(2);
    if (DiskSegmentDir() != disk) _exit(3);
    std::string msg = Message([] { SegmentDir::Choose("DISK"); });
    bool ok = Contains(msg, "segment directory '" + disk + "' is not safe") &&
              Contains(msg, "owned by " + other.name()) && Contains(msg, "segment_dir =");
    _exit(ok ? 0 : 4);
  }
  int ws;
  waitpid(child, &ws, 0);
  REQUIRE(WIFEXITED(ws));
  if (WEXITSTATUS(ws) == 77) {
    MESSAGE("skipped the DISK part: no private mount namespace here");
    return;
  }
  CHECK(WEXITSTATUS(ws) == 0);
}

TEST_CASE("directories in use are recorded, found again by ls and gc, and forgotten once gone") {
  TempDir state, seg_dir;
  ScopedEnv xdg("XDG_STATE_HOME", state.path.c_str());
  ScopedEnv env(kSegmentDirEnv, nullptr);
  CHECK(SegmentDirsFile() == state.path + "/pyrmap/segment-dirs");
  SegmentDir dir = SegmentDir::Choose(seg_dir.path);
  std::ifstream in(SegmentDirsFile());
  std::string line;
  REQUIRE(std::getline(in, line));
  CHECK(line == seg_dir.path);
  auto known = KnownSegmentDirs();
  CHECK(known.front() == "/dev/shm");
  CHECK(std::find(known.begin(), known.end(), seg_dir.path) != known.end());

  // A dead process's segment there is listed and collected without naming
  // the directory.
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    Segment::Create(dir, NewCallPrefix() + "-data", 100);
    _exit(0);
  }
  int ws;
  waitpid(child, &ws, 0);
  auto listed = ListSegments();
  auto it = std::find_if(listed.begin(), listed.end(),
                         [&](const SegmentInfo& s) { return s.dir == seg_dir.path; });
  REQUIRE(it != listed.end());
  CHECK(it->owner_pid == child);
  CHECK_FALSE(it->owner_alive);
  CHECK(it->what == "data");
  auto removed = CollectGarbage();
  CHECK(std::any_of(removed.begin(), removed.end(), [&](const SegmentInfo& s) { return s.name == it->name; }));
  CHECK(access(seg_dir.path.c_str(), F_OK) == 0);
  CHECK(access((seg_dir.path + "/" + it->name).c_str(), F_OK) != 0);

  // A recorded directory that is gone is skipped, and dropped when the next
  // one is recorded.
  TempDir other_dir;
  std::string gone = seg_dir.path + "/gone";
  REQUIRE(mkdir(gone.c_str(), 0700) == 0);
  SegmentDir::Choose(gone);
  REQUIRE(rmdir(gone.c_str()) == 0);
  known = KnownSegmentDirs();
  CHECK(std::find(known.begin(), known.end(), gone) == known.end());
  SegmentDir::Choose(other_dir.path);
  std::ifstream again(SegmentDirsFile());
  std::string text((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>());
  CHECK(text == seg_dir.path + "\n" + other_dir.path + "\n");
}

TEST_CASE("the clean-up at start removes dead owners' segments and spares live ones") {
  TempDir state, seg_dir;
  ScopedEnv xdg("XDG_STATE_HOME", state.path.c_str());
  SegmentDir dir = SegmentDir::Choose(seg_dir.path);
  std::string live = NewCallPrefix() + "-meta-0";
  Segment keep = Segment::Create(dir, live, 64);
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::string name = NewCallPrefix() + "-res-0";
    Segment::Create(dir, name, 4096);
    [[maybe_unused]] ssize_t w = write(fds[1], name.data(), name.size());
    _exit(0);
  }
  close(fds[1]);
  char buf[256];
  ssize_t n = read(fds[0], buf, sizeof buf);
  close(fds[0]);
  REQUIRE(n > 0);
  std::string dead(buf, static_cast<size_t>(n));
  int ws;
  waitpid(child, &ws, 0);
  REQUIRE(access(dir.PathOf(dead).c_str(), F_OK) == 0);
  CHECK(RemoveDeadSegments() >= 1);
  CHECK(access(dir.PathOf(dead).c_str(), F_OK) != 0);
  CHECK(access(dir.PathOf(live).c_str(), F_OK) == 0);
  keep.Unlink();
}
