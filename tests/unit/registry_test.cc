#include "registry.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <atomic>
#include <thread>
#include <cstring>
#include <numeric>

#include "error.h"
#include "inventory.h"
#include "test_user.h"

using namespace pyrmap;

namespace {

SegmentDir Shm() { return SegmentDir::Open("/dev/shm"); }

// A namespace no other test run uses, and cleanup of its pages.
struct Ns {
  std::string ns = NewCallPrefix() + "-test";
  std::vector<std::string> vars;
  std::string Var(const std::string& v) {
    vars.push_back(v);
    return v;
  }
  ~Ns() {
    for (auto& v : vars) Segment::Remove(Shm(), PageName(ns, v));
  }
};

PageInfo RegisterDoublesIn(const SegmentDir& dir, const std::string& ns, const std::string& var,
                           const std::vector<double>& x, std::vector<uint64_t> shape = {}) {
  PageArray a;
  a.desc = ArrayDesc::Make(Dtype::kFloat64, shape.empty() ? std::vector<uint64_t>{x.size()} : shape,
                           Order::kF);
  a.tag = 7;
  return CreatePage(dir, ns, var, false, {a}, [&](size_t, Segment& seg, uint64_t off) {
    seg.Write(off, x.data(), x.size() * sizeof(double));
  });
}

PageInfo RegisterDoubles(const std::string& ns, const std::string& var, const std::vector<double>& x,
                         std::vector<uint64_t> shape = {}) {
  PageArray a;
  a.desc = ArrayDesc::Make(Dtype::kFloat64, shape.empty() ? std::vector<uint64_t>{x.size()} : shape,
                           Order::kF);
  a.tag = 7;
  return CreatePage(Shm(), ns, var, false, {a}, [&](size_t, Segment& seg, uint64_t off) {
    seg.Write(off, x.data(), x.size() * sizeof(double));
  });
}

bool Exists(const std::string& name) { return access(("/dev/shm/" + name).c_str(), F_OK) == 0; }

}  // namespace

TEST_CASE("a registered array is found by namespace and name, with its geometry and tag") {
  Ns t;
  std::vector<double> x(12);
  std::iota(x.begin(), x.end(), 0.5);
  PageInfo made = RegisterDoubles(t.ns, t.Var("X"), x, {3, 4});
  CHECK(made.generation != 0);
  CHECK(made.owner_pid == getpid());
  CHECK(made.arrays[0].desc.offset % kPayloadAlignment == 0);

  OpenedPage p = OpenPage(Shm(), t.ns, "X", MapMode::kReadOnly);
  CHECK(p.info.generation == made.generation);
  CHECK(p.info.ns == t.ns);
  CHECK(p.info.var == "X");
  CHECK_FALSE(p.info.is_list);
  REQUIRE(p.info.arrays.size() == 1);
  CHECK(p.info.arrays[0].desc.shape == std::vector<uint64_t>{3, 4});
  CHECK(p.info.arrays[0].desc.order == Order::kF);
  CHECK(p.info.arrays[0].tag == 7);
  CHECK(std::memcmp(p.data(0), x.data(), x.size() * 8) == 0);
  CHECK(IsPageName(p.info.segment));
  CHECK_FALSE(IsPageName(NewCallPrefix() + "-data"));
}

TEST_CASE("a list page keeps every element, empty ones and names included") {
  Ns t;
  std::vector<std::vector<int32_t>> els = {{1, 2, 3}, {}, {42}};
  std::vector<PageArray> arrays;
  for (size_t i = 0; i < els.size(); ++i) {
    PageArray a;
    a.desc = ArrayDesc::Make(Dtype::kInt32, {els[i].size()});
    a.name = i == 1 ? "" : "e" + std::to_string(i);
    arrays.push_back(a);
  }
  CreatePage(Shm(), t.ns, t.Var("L"), true, arrays, [&](size_t i, Segment& seg, uint64_t off) {
    seg.Write(off, els[i].data(), els[i].size() * 4);
  });
  OpenedPage p = OpenPage(Shm(), t.ns, "L", MapMode::kPrivate);
  CHECK(p.info.is_list);
  REQUIRE(p.info.arrays.size() == 3);
  CHECK(p.info.arrays[0].name == "e0");
  CHECK(p.info.arrays[1].name == "");
  CHECK(p.info.arrays[2].name == "e2");
  CHECK(p.data(1) == nullptr);
  int32_t v;
  std::memcpy(&v, p.data(2), 4);
  CHECK(v == 42);
}

TEST_CASE("registering a name twice is refused; release frees the name; a new generation follows") {
  Ns t;
  RegisterDoubles(t.ns, t.Var("y"), {1, 2, 3});
  OpenedPage old = OpenPage(Shm(), t.ns, "y", MapMode::kPrivate);
  try {
    RegisterDoubles(t.ns, "y", {9});
    FAIL("registered twice");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kUsage);
    CHECK(std::string(e.what()).find("already registered by this session") != std::string::npos);
  }
  CHECK(ReleasePage(Shm(), t.ns, "y"));
  CHECK_FALSE(ReleasePage(Shm(), t.ns, "y"));
  CHECK_THROWS_AS(OpenPage(Shm(), t.ns, "y", MapMode::kReadOnly), Error);
  RegisterDoubles(t.ns, "y", {7, 8});
  OpenedPage fresh = OpenPage(Shm(), t.ns, "y", MapMode::kReadOnly);
  CHECK(fresh.info.generation != old.info.generation);
  double a, b;
  std::memcpy(&a, old.data(0), 8);   // the old mapping still holds the old data
  std::memcpy(&b, fresh.data(0), 8);
  CHECK(a == 1);
  CHECK(b == 7);
}

TEST_CASE("an unknown variable is kNotRegistered; bad names are usage errors") {
  Ns t;
  try {
    OpenPage(Shm(), t.ns, "nothing", MapMode::kReadOnly);
    FAIL("opened a missing page");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kNotRegistered);
    CHECK(std::string(e.what()) == "variable 'nothing' of namespace '" + t.ns + "' is not registered");
  }
  CHECK_THROWS_AS(RegisterDoubles("", "x", {1}), Error);
  CHECK_THROWS_AS(RegisterDoubles(t.ns, std::string(300, 'v'), {1}), Error);
  CHECK_THROWS_AS(RegisterDoubles(t.ns, std::string("a\0b", 3), {1}), Error);
}

TEST_CASE("a page of a crashed owner is reclaimed by the next registration and by gc") {
  Ns t;
  for (int round = 0; round < 2; ++round) {
    std::string var = t.Var("orphan" + std::to_string(round));
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      RegisterDoubles(t.ns, var, {1, 2});
      _exit(0);  // dies without releasing
    }
    int ws;
    waitpid(child, &ws, 0);
    REQUIRE(Exists(PageName(t.ns, var)));
    if (round == 0) {
      PageInfo mine = RegisterDoubles(t.ns, var, {5});  // takes the name over
      CHECK(mine.owner_pid == getpid());
      CHECK(OpenPage(Shm(), t.ns, var, MapMode::kReadOnly).info.arrays[0].desc.count == 1);
    } else {
      auto listed = ListSegments({"/dev/shm"});
      auto it = std::find_if(listed.begin(), listed.end(),
                             [&](const SegmentInfo& s) { return s.name == PageName(t.ns, var); });
      REQUIRE(it != listed.end());
      CHECK(it->owner_pid == child);
      CHECK_FALSE(it->owner_alive);
      CHECK(it->what == t.ns + "." + var);
      CollectGarbage({"/dev/shm"});
      CHECK_FALSE(Exists(PageName(t.ns, var)));
    }
  }
}

TEST_CASE("a page of a live owner is refused and cannot be released by others") {
  Ns t;
  std::string var = t.Var("held");
  int ready[2], done[2];
  REQUIRE(pipe(ready) == 0);
  REQUIRE(pipe(done) == 0);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    RegisterDoubles(t.ns, var, {1});
    char c = 1;
    [[maybe_unused]] ssize_t w = write(ready[1], &c, 1);
    [[maybe_unused]] ssize_t r = read(done[0], &c, 1);
    ReleasePage(Shm(), t.ns, var);
    _exit(0);
  }
  char c;
  REQUIRE(read(ready[0], &c, 1) == 1);
  try {
    RegisterDoubles(t.ns, var, {2});
    FAIL("took a live owner's name");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("by process " + std::to_string(child)) != std::string::npos);
  }
  CHECK_THROWS_AS(ReleasePage(Shm(), t.ns, var), Error);
  [[maybe_unused]] ssize_t w = write(done[1], &c, 1);
  int ws;
  waitpid(child, &ws, 0);
  CHECK_FALSE(Exists(PageName(t.ns, var)));
  for (int fd : {ready[0], ready[1], done[0], done[1]}) close(fd);
}

TEST_CASE("damaged pages and hash collisions are detected, never served") {
  Ns t;
  RegisterDoubles(t.ns, t.Var("a"), {1, 2, 3});
  // Pretend (ns, "b") hashes to a's segment: move the file to b's name.
  std::string b = t.Var("b");
  REQUIRE(rename(("/dev/shm/" + PageName(t.ns, "a")).c_str(), ("/dev/shm/" + PageName(t.ns, b)).c_str()) == 0);
  try {
    OpenPage(Shm(), t.ns, b, MapMode::kReadOnly);
    FAIL("served another variable's data");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kProtocol);
    CHECK(std::string(e.what()).find("hash collision") != std::string::npos);
  }
  // Overwrite the magic: a protocol error naming the segment.
  Segment seg = Segment::Open(Shm(), PageName(t.ns, b), true);
  uint8_t junk[8] = {'j', 'u', 'n', 'k', 0, 0, 0, 0};
  seg.Write(0, junk, sizeof junk);
  try {
    ReadPageInfo(Shm(), PageName(t.ns, b));
    FAIL("read a damaged page");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("bad magic") != std::string::npos);
  }
}

namespace {

// A private segment directory (mode 0700) under /tmp, removed with its
// contents at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/pyrmap-unit-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  bool Has(const std::string& name) const { return access((path + "/" + name).c_str(), F_OK) == 0; }
};

bool WaitForFile(const std::string& path, int seconds) {
  for (int i = 0; i < seconds * 1000; ++i) {
    if (access(path.c_str(), F_OK) == 0) return true;
    usleep(1000);
  }
  return false;
}

}  // namespace

TEST_CASE("gc never removes a page registered again between its check and its removal") {
  TempDir d;
  SegmentDir dir = SegmentDir::Open(d.path);
  const std::string ns = NewCallPrefix() + "-race", var = "raced";
  // A page whose owner died.
  pid_t owner = fork();
  REQUIRE(owner >= 0);
  if (owner == 0) {
    RegisterDoublesIn(dir, ns, var, {1, 2});
    _exit(0);
  }
  int ws;
  waitpid(owner, &ws, 0);
  REQUIRE(d.Has(PageName(ns, var)));

  // gc decides to remove it, then pauses just before removing it (test hook).
  const std::string hook = d.path + "/hook";
  pid_t gc = fork();
  REQUIRE(gc >= 0);
  if (gc == 0) {
    setenv("PYRMAP_TEST_REMOVE_PAUSE", hook.c_str(), 1);
    CollectGarbage({d.path});
    _exit(0);
  }
  REQUIRE(WaitForFile(hook + ".paused", 60));

  // Meanwhile the name is registered again (reclaiming the dead page).
  std::atomic<bool> done{false};
  std::string error;
  std::thread reg([&] {
    try {
      RegisterDoublesIn(dir, ns, var, {7, 8, 9});
    } catch (const std::exception& e) {
      error = e.what();
    }
    done = true;
  });
  // Let the registration finish if it can before gc goes on (it cannot while
  // gc holds the dead page: then it finishes after).
  for (int i = 0; i < 2000 && !done; ++i) usleep(1000);
  close(open((hook + ".go").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  reg.join();
  waitpid(gc, &ws, 0);
  CHECK(error == "");
  // The new registration survived gc, with its own data.
  REQUIRE(d.Has(PageName(ns, var)));
  OpenedPage p = OpenPage(dir, ns, var, MapMode::kReadOnly);
  CHECK(p.info.owner_pid == getpid());
  REQUIRE(p.info.arrays[0].desc.count == 3);
  double first;
  std::memcpy(&first, p.data(0), 8);
  CHECK(first == 7);
  CHECK(ReleasePage(dir, ns, var));
}

TEST_CASE("another user's file under a page's name is never served, reclaimed or removed") {
  test::TestUser other;
  if (!other.available()) {
    MESSAGE("skipped: " << other.why_not());
    return;
  }
  Ns t;
  // A real page of ours, to forge from: its bytes with other data.
  std::string forged_var = t.Var("forged");
  RegisterDoubles(t.ns, forged_var, {1, 2, 3});
  const std::string forged_path = "/dev/shm/" + PageName(t.ns, forged_var);
  std::string bytes;
  {
    std::ifstream in(forged_path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  OpenedPage real = OpenPage(Shm(), t.ns, forged_var, MapMode::kReadOnly);
  const size_t payload = static_cast<size_t>(real.info.arrays[0].desc.offset);
  real = OpenedPage();
  REQUIRE(ReleasePage(Shm(), t.ns, forged_var));
  double evil = 666;
  std::memcpy(&bytes[payload], &evil, 8);

  std::string squat_var = t.Var("squatted");
  const std::string squat_path = "/dev/shm/" + PageName(t.ns, squat_var);
  REQUIRE(other.Run([&] {
            int a = open(squat_path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
            int b = open(forged_path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
            bool ok = a >= 0 && b >= 0 && write(b, bytes.data(), bytes.size()) == (ssize_t)bytes.size();
            return ok ? 0 : 1;
          }) == 0);
  const std::string owner = "owned by " + other.name() + " (uid " + std::to_string(other.uid()) + ")";

  // Registering a squatted name fails, naming the file, its owner and mode,
  // and the way around it; the file stays (it is not ours to remove).
  try {
    RegisterDoubles(t.ns, squat_var, {5});
    FAIL("registered over another user's file");
  } catch (const Error& e) {
    std::string m = e.what();
    CHECK(m.find("cannot register variable 'squatted'") != std::string::npos);
    CHECK(m.find(squat_path) != std::string::npos);
    CHECK(m.find(owner) != std::string::npos);
    CHECK(m.find("mode 0644") != std::string::npos);
    CHECK(m.find("segment_dir") != std::string::npos);
  }
  CHECK(Exists(PageName(t.ns, squat_var)));
  // The forged page is never served as ours.
  for (const std::string& var : {forged_var, squat_var}) {
    try {
      OpenPage(Shm(), t.ns, var, MapMode::kPrivate);
      FAIL("served another user's file as a page");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find(owner) != std::string::npos);
    }
    CHECK_THROWS_AS(ReleasePage(Shm(), t.ns, var), Error);
    CHECK(Exists(PageName(t.ns, var)));
  }
  // Not blocked for good: a directory of one's own cannot be squatted.
  char tmpl[] = "/tmp/pyrmap-unit-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  {
    SegmentDir mine = SegmentDir::Open(tmpl);
    RegisterDoublesIn(mine, t.ns, squat_var, {5});
    OpenedPage p = OpenPage(mine, t.ns, squat_var, MapMode::kReadOnly);
    double v;
    std::memcpy(&v, p.data(0), 8);
    CHECK(v == 5);
    CHECK(ReleasePage(mine, t.ns, squat_var));
  }
  CHECK(rmdir(tmpl) == 0);
  // root's gc removes the squatters' files.
  CollectGarbage({"/dev/shm"});
  CHECK_FALSE(Exists(PageName(t.ns, squat_var)));
  CHECK_FALSE(Exists(PageName(t.ns, forged_var)));
}

TEST_CASE("a written page is read-only: its own user cannot open it for writing or truncate it") {
  test::TestUser other;
  if (!other.available()) {
    MESSAGE("skipped: " << other.why_not());
    return;
  }
  // As a user without root's power over modes: register, then try to write.
  const std::string ns = NewCallPrefix() + "-ro";
  int rc = other.Run([&] {
    SegmentDir shm = SegmentDir::Open("/dev/shm");
    RegisterDoublesIn(shm, ns, "x", {1, 2, 3});
    const std::string path = shm.PathOf(PageName(ns, "x"));
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || (st.st_mode & 0777) != 0400) return 1;
    errno = 0;
    if (open(path.c_str(), O_RDWR) >= 0 || errno != EACCES) return 2;
    errno = 0;
    if (truncate(path.c_str(), 0) == 0 || errno != EACCES) return 3;
    try {
      Segment::Open(shm, PageName(ns, "x"), true);
      return 4;
    } catch (const Error& e) {
      if (e.sys_errno() != EACCES) return 5;
    }
    // Still readable, and still removable by its owner.
    OpenedPage p = OpenPage(shm, ns, "x", MapMode::kPrivate);
    if (p.info.arrays[0].desc.count != 3) return 6;
    return ReleasePage(shm, ns, "x") ? 0 : 7;
  });
  CHECK(rc == 0);
}
