#include "inventory.h"
#include "segment.h"

#include <doctest/doctest.h>

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "error.h"

using namespace pyrmap;

namespace {

bool Exists(const std::string& name) { return access(("/dev/shm/" + name).c_str(), F_OK) == 0; }

// A unique name of this test process, removed at scope exit.
struct TempName {
  std::string name = NewCallPrefix() + "-test";
  ~TempName() { Segment::Remove(name); }
};

}  // namespace

TEST_CASE("names carry the user, the owner pid and a random part") {
  std::string a = NewCallPrefix(), b = NewCallPrefix();
  CHECK(a != b);
  CHECK(a.rfind("pyrmap-" + std::to_string(getuid()) + "-" + std::to_string(getpid()) + "-", 0) == 0);
}

TEST_CASE("a segment is created exclusively, mode 0600, with its space reserved") {
  TempName t;
  Segment s = Segment::Create(t.name, 10000);
  struct stat st;
  REQUIRE(stat(("/dev/shm/" + t.name).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(s.Size() == 10000);
  CHECK(st.st_blocks * 512 >= 10000);  // pages allocated, not a sparse file
  try {
    Segment::Create(t.name, 10);
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
    Segment::Create(t.name, too_big);
    FAIL("reserved more than /dev/shm holds");
  } catch (const Error& e) {
    CHECK(e.sys_errno() == ENOSPC);
    std::string m = e.what();
    CHECK(m.find("posix_fallocate failed (28, No space left on device)") != std::string::npos);
    CHECK(m.find(t.name) != std::string::npos);
  }
  CHECK_FALSE(Exists(t.name));
}

TEST_CASE("writes and reads go through; mappings see them; a private mapping keeps its writes") {
  TempName t;
  Segment s = Segment::Create(t.name, 8192);
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
  Mapping rw = Segment::Open(t.name, true).Map(MapMode::kReadWrite);
  rw.data()[6] = 77;
  CHECK(ro.data()[6] == 77);       // shared writes reach other mappings
  uint8_t back[1];
  s.Read(6, back, 1);
  CHECK(back[0] == 77);
}

TEST_CASE("a mapping outlives the name and the Segment object") {
  TempName t;
  Mapping m;
  {
    Segment s = Segment::Create(t.name, 4096);
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
  Segment s = Segment::Create(t.name, 0);
  Mapping m = s.Map(MapMode::kReadOnly);
  CHECK(m.data() == nullptr);
  CHECK(m.size() == 0);
  CHECK_THROWS_AS(s.Map(MapMode::kReadOnly, 0, 1), Error);
  CHECK_THROWS_AS(Segment::Open(t.name + "-missing", false), Error);
}

TEST_CASE("a guard removes its names however the scope ends") {
  std::string a = NewCallPrefix() + "-g1";
  try {
    SegmentGuard g;
    Segment::Create(a, 64);
    g.Add(a);
    CHECK(Exists(a));
    throw std::runtime_error("leave");
  } catch (const std::runtime_error&) {
  }
  CHECK_FALSE(Exists(a));
}

TEST_CASE("segments of a crashed owner are listed as dead and collected; live ones stay") {
  std::string mine = NewCallPrefix() + "-live";
  Segment keep = Segment::Create(mine, 64);
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // The child makes a segment with its own pid and dies without cleanup.
    std::string name = NewCallPrefix() + "-orphan";
    Segment::Create(name, 4096);
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

  auto listed = ListSegments();
  auto find = [&](const std::string& name) {
    return std::find_if(listed.begin(), listed.end(), [&](auto& s) { return s.name == name; });
  };
  REQUIRE(find(orphan) != listed.end());
  CHECK(find(orphan)->owner_pid == child);
  CHECK_FALSE(find(orphan)->owner_alive);
  CHECK(find(orphan)->size == 4096);
  REQUIRE(find(mine) != listed.end());
  CHECK(find(mine)->owner_alive);

  auto removed = CollectGarbage();
  CHECK(std::any_of(removed.begin(), removed.end(), [&](auto& s) { return s.name == orphan; }));
  CHECK_FALSE(Exists(orphan));
  CHECK(Exists(mine));
  keep.Unlink();
}
