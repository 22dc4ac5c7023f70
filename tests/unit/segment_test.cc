#include "inventory.h"
#include "segment.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>

#include "error.h"
#include "test_user.h"

using namespace pyrmap;

namespace {

SegmentDir Shm() { return SegmentDir::Open("/dev/shm"); }

bool Exists(const std::string& name) { return access(("/dev/shm/" + name).c_str(), F_OK) == 0; }

// A unique name of this test process, removed at scope exit.
struct TempName {
  std::string name = NewCallPrefix() + "-test";
  ~TempName() { Segment::Remove(Shm(), name); }
};

}  // namespace

TEST_CASE("names carry the user, the owner pid and a random part") {
  std::string a = NewCallPrefix(), b = NewCallPrefix();
  CHECK(a != b);
  CHECK(a.rfind("pyrmap-" + std::to_string(getuid()) + "-" + std::to_string(getpid()) + "-", 0) == 0);
}

TEST_CASE("a segment is created exclusively, mode 0600, with its space reserved") {
  TempName t;
  Segment s = Segment::Create(Shm(), t.name, 10000);
  struct stat st;
  REQUIRE(stat(("/dev/shm/" + t.name).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(s.Size() == 10000);
  CHECK(st.st_blocks * 512 >= 10000);  // pages allocated, not a sparse file
  try {
    Segment::Create(Shm(), t.name, 10);
    FAIL("second create succeeded");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kSystem);
    CHECK(e.sys_errno() == EEXIST);
    CHECK(std::string(e.what()).find(t.name) != std::string::npos);
    CHECK(std::string(e.what()).find("File exists") != std::string::npos);
  }
}

TEST_CASE("a reservation larger than /dev/shm fails with ENOSPC and leaves no name behind") {
  TempName t;
  struct statvfs vfs;
  REQUIRE(statvfs("/dev/shm", &vfs) == 0);
  uint64_t too_big = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize + (uint64_t{1} << 30);
  try {
    Segment::Create(Shm(), t.name, too_big);
    FAIL("reserved more than /dev/shm holds");
  } catch (const Error& e) {
    CHECK(e.sys_errno() == ENOSPC);
    std::string m = e.what();
    CHECK(m.find("posix_fallocate failed (28, No space left on device)") != std::string::npos);
    CHECK(m.find("/dev/shm/" + t.name) != std::string::npos);
    // What was needed, what is free, where, and how to go elsewhere.
    CHECK(m.find("the segment needs ") != std::string::npos);
    CHECK(m.find("(" + std::to_string(too_big) + " bytes)") != std::string::npos);
    CHECK(m.find("/dev/shm has ") != std::string::npos);
    CHECK(m.find(" free") != std::string::npos);
    CHECK(m.find("path = \"DISK\"") != std::string::npos);
    CHECK(m.find("--segment-dir") != std::string::npos);
    CHECK(m.find("PYRMAP_SEGMENT_DIR") != std::string::npos);
  }
  CHECK_FALSE(Exists(t.name));
}

TEST_CASE("writes and reads go through; mappings see them; a private mapping keeps its writes") {
  TempName t;
  Segment s = Segment::Create(Shm(), t.name, 8192);
  std::vector<uint8_t> data(8192);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7);
  s.Write(0, data.data(), data.size());
  Mapping ro = s.Map(MapMode::kReadOnly);
  CHECK(std::memcmp(ro.data(), data.data(), data.size()) == 0);
  Mapping part = s.Map(MapMode::kReadOnly, 4100, 10);  // unaligned offset
  CHECK(part.data()[0] == data[4100]);

  Mapping priv = s.Map(MapMode::kPrivate);
  priv.data()[5] = 99;
  CHECK(ro.data()[5] == data[5]);  // the shared pages are untouched
  Mapping rw = Segment::Open(Shm(), t.name, true).Map(MapMode::kReadWrite);
  rw.data()[6] = 77;
  CHECK(ro.data()[6] == 77);       // shared writes reach other mappings
  uint8_t back[1];
  s.Read(6, back, 1);
  CHECK(back[0] == 77);
}

TEST_CASE("a large write (in parts, by threads) lands whole at any offset; an interrupt stops it") {
  TempName t;
  const uint64_t n = (uint64_t{48} << 20) + 12345, at = 4096 * 3 + 77;  // neither page-aligned
  Segment s = Segment::Create(Shm(), t.name, at + n + 100, Reservation::kByWrites);
  CHECK(s.Size() == at + n + 100);
  std::vector<uint8_t> data(n);
  for (uint64_t i = 0; i < n; ++i) data[i] = static_cast<uint8_t>((i * 2654435761u) >> 13);
  int checks = 0;
  s.Write(at, data.data(), n, [](void* c) { ++*static_cast<int*>(c); }, &checks);
  CHECK(checks >= 2);  // called between parts of the caller's share
  AwaitUnmaps();
  std::vector<uint8_t> back(n + 2);
  s.Read(at - 1, back.data(), n + 2);
  CHECK(back[0] == 0);  // nothing written before the range
  CHECK(back[n + 1] == 0);  // nor after it
  CHECK(std::memcmp(back.data() + 1, data.data(), n) == 0);

  // An interrupt (the check throws) ends the write with its exception, the
  // other threads joined: the call returns, the segment is intact.
  int calls = 0;
  auto stop_second = [](void* c) {
    if (++*static_cast<int*>(c) == 2) throw Error(ErrorKind::kInterrupt, "interrupted");
  };
  std::vector<uint8_t> other(n, 0xab);
  CHECK_THROWS_AS(s.Write(at, other.data(), n, stop_second, &calls), Error);
  CHECK(calls == 2);
  CHECK(s.Size() == at + n + 100);
}

TEST_CASE("a large write past the segment's end still lands (the threads' mappings cannot reach it)") {
  TempName t;
  const uint64_t n = uint64_t{40} << 20;
  Segment s = Segment::Create(Shm(), t.name, 1 << 20, Reservation::kByWrites);
  std::vector<uint8_t> data(n);
  for (uint64_t i = 0; i < n; ++i) data[i] = static_cast<uint8_t>(i % 251);
  s.Write(0, data.data(), n);  // populating past the end fails (SIGBUS): pwrite takes over
  CHECK(s.Size() == n);
  std::vector<uint8_t> back(n);
  s.Read(0, back.data(), n);
  CHECK(back == data);
}

TEST_CASE("a segment sized for its writes: too big for /dev/shm, or for the file size limit, names the sizes") {
  TempName t;
  struct statvfs vfs;
  REQUIRE(statvfs("/dev/shm", &vfs) == 0);
  const uint64_t too_big = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize + (uint64_t{1} << 30);
  try {
    Segment::Create(Shm(), t.name, too_big, Reservation::kByWrites);
    FAIL("sized beyond what /dev/shm holds");
  } catch (const Error& e) {
    CHECK(e.sys_errno() == ENOSPC);
    std::string m = e.what();
    CHECK(m.find("not enough free space (28, No space left on device)") != std::string::npos);
    CHECK(m.find("(" + std::to_string(too_big) + " bytes)") != std::string::npos);
    CHECK(m.find("/dev/shm has ") != std::string::npos);
    CHECK(m.find("PYRMAP_SEGMENT_DIR") != std::string::npos);
  }
  CHECK_FALSE(Exists(t.name));

  // A write that cannot get its blocks (here: past RLIMIT_FSIZE, EFBIG, in
  // a child) is an error of the same kind, not a short file.
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {1 << 20, 1 << 20};
    setrlimit(RLIMIT_FSIZE, &lim);
    int code = 1;
    try {
      Segment s = Segment::CreateUnnamed("/dev/shm", 0, "a test segment", Reservation::kByWrites);
      std::vector<uint8_t> data(2 << 20, 1);
      s.Write(0, data.data(), data.size());
    } catch (const Error& e) {
      std::string m = e.what();
      code = m.find("pwrite failed") != std::string::npos && m.find("the segment needs ") != std::string::npos &&
                     m.find("PYRMAP_SEGMENT_DIR") != std::string::npos
                 ? 0
                 : 2;
    }
    _exit(code);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("a mapping outlives the name and the Segment object") {
  TempName t;
  Mapping m;
  {
    Segment s = Segment::Create(Shm(), t.name, 4096);
    uint64_t v = 0x1122334455667788;
    s.Write(0, &v, 8);
    m = s.Map(MapMode::kReadOnly);
    s.Unlink();
  }
  CHECK_FALSE(Exists(t.name));
  uint64_t v;
  std::memcpy(&v, m.data(), 8);
  CHECK(v == 0x1122334455667788);
}

TEST_CASE("empty segments map to nothing; ranges beyond the end are refused") {
  TempName t;
  Segment s = Segment::Create(Shm(), t.name, 0);
  Mapping m = s.Map(MapMode::kReadOnly);
  CHECK(m.data() == nullptr);
  CHECK(m.size() == 0);
  CHECK_THROWS_AS(s.Map(MapMode::kReadOnly, 0, 1), Error);
  CHECK_THROWS_AS(Segment::Open(Shm(), t.name + "-missing", false), Error);
}

TEST_CASE("a guard removes its names however the scope ends") {
  std::string a = NewCallPrefix() + "-g1";
  try {
    SegmentGuard g(Shm());
    Segment::Create(Shm(), a, 64);
    g.Add(a);
    CHECK(Exists(a));
    throw std::runtime_error("leave");
  } catch (const std::runtime_error&) {
  }
  CHECK_FALSE(Exists(a));
}

TEST_CASE("segments of a crashed owner are listed as dead and collected; live ones stay") {
  std::string mine = NewCallPrefix() + "-live";
  Segment keep = Segment::Create(Shm(), mine, 64);
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // The child makes a segment with its own pid and dies without cleanup.
    std::string name = NewCallPrefix() + "-orphan";
    Segment::Create(Shm(), name, 4096);
    [[maybe_unused]] ssize_t w = write(fds[1], name.data(), name.size());
    _exit(0);
  }
  close(fds[1]);
  char buf[256];
  ssize_t n = read(fds[0], buf, sizeof buf);
  close(fds[0]);
  REQUIRE(n > 0);
  std::string orphan(buf, static_cast<size_t>(n));
  int ws;
  waitpid(child, &ws, 0);
  REQUIRE(Exists(orphan));

  auto listed = ListSegments({"/dev/shm"});
  auto find = [&](const std::string& name) {
    return std::find_if(listed.begin(), listed.end(), [&](auto& s) { return s.name == name; });
  };
  REQUIRE(find(orphan) != listed.end());
  CHECK(find(orphan)->owner_pid == child);
  CHECK_FALSE(find(orphan)->owner_alive);
  CHECK(find(orphan)->size == 4096);
  REQUIRE(find(mine) != listed.end());
  CHECK(find(mine)->owner_alive);

  auto removed = CollectGarbage({"/dev/shm"});
  CHECK(std::any_of(removed.begin(), removed.end(), [&](auto& s) { return s.name == orphan; }));
  CHECK_FALSE(Exists(orphan));
  CHECK(Exists(mine));
  keep.Unlink();
}

TEST_CASE("opens report the real errno and refuse what is not a plain segment file") {
  TempName t;
  try {
    Segment::Open(Shm(), t.name, false);
    FAIL("opened a missing segment");
  } catch (const Error& e) {
    CHECK(e.sys_errno() == ENOENT);
    CHECK(std::string(e.what()) == "open segment '/dev/shm/" + t.name +
                                       "': open failed (2, No such file or directory)");
  }
  // A symbolic link under a segment's name is not followed.
  REQUIRE(symlink("/etc/hostname", ("/dev/shm/" + t.name).c_str()) == 0);
  try {
    Segment::Open(Shm(), t.name, false);
    FAIL("followed a symbolic link");
  } catch (const Error& e) {
    CHECK(e.sys_errno() == ELOOP);
  }
  REQUIRE(unlink(("/dev/shm/" + t.name).c_str()) == 0);
  // A file of ours with another mode was not made by pyrmap.
  int fd = open(("/dev/shm/" + t.name).c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(fchmod(fd, 0644) == 0);
  close(fd);
  try {
    Segment::Open(Shm(), t.name, false);
    FAIL("opened a file of mode 0644");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("mode 0644") != std::string::npos);
  }
  // Mapping a read-only descriptor for writing: mmap's own errno.
  REQUIRE(chmod(("/dev/shm/" + t.name).c_str(), 0600) == 0);
  Segment s = Segment::Open(Shm(), t.name, false);
  REQUIRE(ftruncate(Segment::Open(Shm(), t.name, true).fd(), 4096) == 0);
  try {
    s.Map(MapMode::kReadWrite);
    FAIL("mapped a read-only descriptor for writing");
  } catch (const Error& e) {
    CHECK(e.sys_errno() == EACCES);
    CHECK(std::string(e.what()).find("mmap failed (13, Permission denied)") != std::string::npos);
  }
}

TEST_CASE("a segment in a directory of ours on disk: created, mapped, listed, removed") {
  char tmpl[] = "/tmp/pyrmap-unit-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  std::string path = tmpl;
  {
    SegmentDir dir = SegmentDir::Open(path);
    std::string name = NewCallPrefix() + "-data";
    SegmentGuard guard(dir);
    Segment s = Segment::Create(dir, name, 1 << 20);
    guard.Add(name);
    struct stat st;
    REQUIRE(stat((path + "/" + name).c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    CHECK(st.st_blocks * 512 >= (1 << 20));  // reserved, not sparse
    uint64_t v = 42;
    s.Write(8, &v, 8);
    Mapping m = Segment::Open(dir, name, false).Map(MapMode::kReadOnly);
    CHECK(std::memcmp(m.data() + 8, &v, 8) == 0);
    auto listed = ListSegments({path});
    REQUIRE(listed.size() == 1);
    CHECK(listed[0].dir == path);
    CHECK(listed[0].name == name);
    CHECK(listed[0].owner_alive);
    CHECK(listed[0].size == (1 << 20));
  }
  CHECK(rmdir(path.c_str()) == 0);  // the guard left nothing behind
}

TEST_CASE("a file another user planted under a segment's name is refused, naming its owner") {
  test::TestUser other;
  if (!other.available()) {
    MESSAGE("skipped: " << other.why_not());
    return;
  }
  TempName t;
  const std::string path = "/dev/shm/" + t.name;
  REQUIRE(other.Run([&] {
            int fd = open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
            return fd >= 0 && write(fd, "forged", 6) == 6 ? 0 : 1;
          }) == 0);
  for (bool writable : {false, true}) {
    try {
      Segment::Open(Shm(), t.name, writable);
      FAIL("opened another user's file");
    } catch (const Error& e) {
      std::string m = e.what();
      CHECK(m.find("segment '" + path + "' was not made by pyrmap for you") != std::string::npos);
      CHECK(m.find("owned by " + other.name() + " (uid " + std::to_string(other.uid()) + ")") !=
            std::string::npos);
      CHECK(m.find("mode 0600") != std::string::npos);
      CHECK(m.find("segment_dir") != std::string::npos);
    }
  }
  // gc neither lists it as a dead segment of ours nor removes it as one;
  // root removes it as squatted.
  auto listed = ListSegments({"/dev/shm"});
  auto it = std::find_if(listed.begin(), listed.end(), [&](auto& s) { return s.name == t.name; });
  REQUIRE(it != listed.end());
  CHECK(it->squatted());
  CHECK(it->file_uid == other.uid());
  auto removed = CollectGarbage({"/dev/shm"});
  CHECK(std::any_of(removed.begin(), removed.end(), [&](auto& s) { return s.name == t.name; }));
  CHECK_FALSE(Exists(t.name));
}

TEST_CASE("a process that exited is dead even before its parent collects it (a zombie)") {
  CHECK(ProcessAlive(getpid()));
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) _exit(0);
  // Not reaped yet: wait until it has exited (its /proc state says so).
  bool zombie = false;
  for (int i = 0; i < 60000 && !zombie; ++i) {
    char path[64], buf[256] = {};
    snprintf(path, sizeof path, "/proc/%d/stat", child);
    FILE* f = fopen(path, "r");
    if (f) {
      size_t n = fread(buf, 1, sizeof buf - 1, f);
      fclose(f);
      const char* p = strrchr(buf, ')');
      zombie = n > 0 && p && p[2] == 'Z';
    }
    if (!zombie) usleep(1000);
  }
  REQUIRE(zombie);
  CHECK(kill(child, 0) == 0);  // what kill() alone would take for alive
  CHECK_FALSE(ProcessAlive(child));
  int ws;
  waitpid(child, &ws, 0);
  CHECK_FALSE(ProcessAlive(child));
}
