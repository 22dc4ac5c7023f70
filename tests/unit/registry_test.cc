#include "registry.h"

#include <doctest/doctest.h>

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "error.h"
#include "inventory.h"

using namespace pyrmap;

namespace {

// A namespace no other test run uses, and cleanup of its pages.
struct Ns {
  std::string ns = NewCallPrefix() + "-test";
  std::vector<std::string> vars;
  std::string Var(const std::string& v) {
    vars.push_back(v);
    return v;
  }
  ~Ns() {
    for (auto& v : vars) Segment::Remove(PageName(ns, v));
  }
};

PageInfo RegisterDoubles(const std::string& ns, const std::string& var, const std::vector<double>& x,
                         std::vector<uint64_t> shape = {}) {
  PageArray a;
  a.desc = ArrayDesc::Make(Dtype::kFloat64, shape.empty() ? std::vector<uint64_t>{x.size()} : shape,
                           Order::kF);
  a.tag = 7;
  return CreatePage(ns, var, false, {a}, [&](size_t, Segment& seg, uint64_t off) {
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

  OpenedPage p = OpenPage(t.ns, "X", MapMode::kReadOnly);
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
  CreatePage(t.ns, t.Var("L"), true, arrays, [&](size_t i, Segment& seg, uint64_t off) {
    seg.Write(off, els[i].data(), els[i].size() * 4);
  });
  OpenedPage p = OpenPage(t.ns, "L", MapMode::kPrivate);
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
  OpenedPage old = OpenPage(t.ns, "y", MapMode::kPrivate);
  try {
    RegisterDoubles(t.ns, "y", {9});
    FAIL("registered twice");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kUsage);
    CHECK(std::string(e.what()).find("already registered by this session") != std::string::npos);
  }
  CHECK(ReleasePage(t.ns, "y"));
  CHECK_FALSE(ReleasePage(t.ns, "y"));
  CHECK_THROWS_AS(OpenPage(t.ns, "y", MapMode::kReadOnly), Error);
  RegisterDoubles(t.ns, "y", {7, 8});
  OpenedPage fresh = OpenPage(t.ns, "y", MapMode::kReadOnly);
  CHECK(fresh.info.generation != old.info.generation);
  double a, b;
  std::memcpy(&a, old.data(0), 8);   // the old mapping still holds the old data
  std::memcpy(&b, fresh.data(0), 8);
  CHECK(a == 1);
  CHECK(b == 7);
}

TEST_CASE("an unknown variable is kNotFound; bad names are usage errors") {
  Ns t;
  try {
    OpenPage(t.ns, "nothing", MapMode::kReadOnly);
    FAIL("opened a missing page");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kNotFound);
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
      CHECK(OpenPage(t.ns, var, MapMode::kReadOnly).info.arrays[0].desc.count == 1);
    } else {
      auto listed = ListSegments();
      auto it = std::find_if(listed.begin(), listed.end(),
                             [&](const SegmentInfo& s) { return s.name == PageName(t.ns, var); });
      REQUIRE(it != listed.end());
      CHECK(it->owner_pid == child);
      CHECK_FALSE(it->owner_alive);
      CHECK(it->what == t.ns + "." + var);
      CollectGarbage();
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
    ReleasePage(t.ns, var);
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
  CHECK_THROWS_AS(ReleasePage(t.ns, var), Error);
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
    OpenPage(t.ns, b, MapMode::kReadOnly);
    FAIL("served another variable's data");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kProtocol);
    CHECK(std::string(e.what()).find("hash collision") != std::string::npos);
  }
  // Overwrite the magic: a protocol error naming the segment.
  Segment seg = Segment::Open(PageName(t.ns, b), true);
  uint8_t junk[8] = {'j', 'u', 'n', 'k', 0, 0, 0, 0};
  seg.Write(0, junk, sizeof junk);
  try {
    ReadPageInfo(PageName(t.ns, b));
    FAIL("read a damaged page");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("bad magic") != std::string::npos);
  }
}
