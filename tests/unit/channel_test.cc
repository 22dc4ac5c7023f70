#include "channel.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "error.h"

using namespace pyrmap;

namespace {

// The segment directory of these tests.
const SegmentDir& Shm() {
  static const SegmentDir dir = SegmentDir::Open(kShmDir);
  return dir;
}

double Seconds() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct Removed {
  std::string name;
  ~Removed() { Segment::Remove(Shm(), name); }
};

CallLayout Layout(uint64_t tasks, uint32_t workers) {
  CallLayout l;
  l.tasks = tasks;
  l.workers = workers;
  return l;
}

}  // namespace

TEST_CASE("a call segment's header is read back as written, and its regions do not overlap") {
  const std::string name = NewCallPrefix() + "-call";
  Removed guard{name};
  CallLayout l = Layout(1000, 3);
  l.job_size = 100;
  l.objects = 2;
  l.out_size = 5000;
  l.data_size = 10000;
  l.chunk_seconds = 0.25;
  CallShared c = CallShared::Create(Shm(), name, l);
  const CallLayout& w = c.layout();
  CHECK(w.slots_offset == kCallHeaderSize);
  CHECK(w.out_offset >= w.slots_offset + 3 * kSlotSize);
  CHECK(w.job_offset >= w.out_offset + 5000);
  CHECK(w.objects_offset >= w.job_offset + 100);
  CHECK(w.data_offset >= w.objects_offset + 24);
  CHECK(w.data_offset % 4096 == 0);
  CHECK(w.total_size == w.data_offset + 10000);
  std::vector<uint8_t> job(100, 7);
  c.WriteJob(job.data(), job.size());
  c.WriteObjects({w.data_offset, w.data_offset + 64});
  CHECK_THROWS_AS(c.WriteObjects({1}), Error);

  CallShared o = CallShared::Open(Shm(), name);
  CHECK(o.layout().tasks == 1000);
  CHECK(o.layout().workers == 3);
  CHECK(o.layout().chunk_seconds == 0.25);
  CHECK(o.layout().data_offset == w.data_offset);
  CHECK(std::memcmp(o.job(), job.data(), 100) == 0);
  CHECK(o.Object(1) == w.data_offset + 64);
  CHECK_THROWS_AS(o.Object(2), Error);
  // The shared part is shared: what one side writes, the other sees.
  c.out()[17] = 42;
  CHECK(o.out()[17] == 42);
  CHECK(c.Quiet());
  o.Join(2, 4242);
  o.SetCurrent(2, 99);
  CHECK(c.SlotPid(2) == 4242);
  CHECK(c.State(2) == CallShared::SlotState::kWorking);
  CHECK(c.SlotCurrent(2) == 99);
  CHECK(c.SlotCurrent(1) == kNoTask);
  CHECK_FALSE(c.Quiet());
  o.Leave(2, Outcome::kFailed, 640);
  CHECK(c.State(2) == CallShared::SlotState::kLeft);
  CHECK(c.SlotResultBytes(2) == 640);
  CHECK(c.SlotOutcome(2) == Outcome::kFailed);
  CHECK(c.SlotCurrent(2) == kNoTask);
  CHECK(c.Quiet());
}

TEST_CASE("a call is settled when its tasks are done, one failed, a worker broke it, or it was cancelled") {
  for (int how = 0; how < 4; ++how) {
    const std::string name = NewCallPrefix() + "-call";
    Removed guard{name};
    CallShared c = CallShared::Create(Shm(), name, Layout(10, 2));
    CHECK_FALSE(c.Settled());
    uint64_t first, count;
    if (how == 0) {
      c.AddDone(10);
    } else if (how == 1) {
      c.Fail(4);
    } else if (how == 2) {
      c.Break();
      CHECK(c.Broken());
    } else {
      c.Cancel();
    }
    CHECK(c.Settled());
    if (how > 0) CHECK_FALSE(c.Claim(100, &first, &count));
  }
}

TEST_CASE("a call segment that is not ours, not private, or damaged is refused") {
  const std::string name = NewCallPrefix() + "-call";
  Removed guard{name};
  CallShared c = CallShared::Create(Shm(), name, Layout(10, 1));
  // Readable by others: refused (another user could have written it).
  REQUIRE(fchmod(c.segment().fd(), 0644) == 0);
  try {
    CallShared::Open(Shm(), name);
    FAIL("opened a segment of mode 0644");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kSystem);
    CHECK(std::string(e.what()).find(name) != std::string::npos);
    CHECK(std::string(e.what()).find("mode 0644") != std::string::npos);
  }
  REQUIRE(fchmod(c.segment().fd(), 0600) == 0);
  CHECK_NOTHROW(CallShared::Open(Shm(), name));
  const uint8_t junk[8] = {'n', 'o', 't', ' ', 'a', 'c', 'a', 'l'};
  c.segment().Write(0, junk, 8);
  try {
    CallShared::Open(Shm(), name);
    FAIL("opened a segment with a bad magic");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kProtocol);
    CHECK(std::string(e.what()).find("bad magic") != std::string::npos);
  }
  CHECK_THROWS_AS(CallShared::Open(Shm(), name + "-missing"), Error);
}

TEST_CASE("a call segment named by its path is found in its directory; a path without one is refused") {
  const std::string name = NewCallPrefix() + "-call";
  Removed guard{name};
  CallShared c = CallShared::Create(Shm(), name, Layout(5, 2));
  const SegmentPath p = SplitSegmentPath(Shm().PathOf(name));
  CHECK(p.dir.path() == kShmDir);
  CHECK(p.name == name);
  CHECK(CallShared::Open(p.dir, p.name).layout().tasks == 5);
  for (const std::string& bad : {name, std::string("/dev/shm/")}) {
    try {
      SplitSegmentPath(bad);
      FAIL("split '" << bad << "'");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kUsage);
      CHECK(std::string(e.what()).find(bad) != std::string::npos);
    }
  }
  // A directory that is not one: SegmentDir::Open's error, naming it.
  CHECK_THROWS_AS(SplitSegmentPath("/nonexistent-pyrmap-dir/" + name), Error);
}

TEST_CASE("chunks are guided shares of what is left, capped, and stop at a cancel or a failure") {
  const std::string name = NewCallPrefix() + "-call";
  Removed guard{name};
  CallShared c = CallShared::Create(Shm(), name, Layout(100, 2));
  uint64_t first = 0, count = 0;
  REQUIRE(c.Claim(1000, &first, &count));
  CHECK(first == 0);
  CHECK(count == 25);  // ceil(100 / 4)
  REQUIRE(c.Claim(5, &first, &count));
  CHECK(first == 25);
  CHECK(count == 5);   // the cap
  REQUIRE(c.Claim(0, &first, &count));
  CHECK(count == 1);   // a cap of 0 is 1
  REQUIRE(c.Claim(1000, &first, &count));
  CHECK(first == 31);
  CHECK(count == 18);  // ceil(69 / 4)
  c.Fail(60);
  c.Fail(70);
  CHECK(c.FailedAt() == 60);
  c.Fail(40);
  CHECK(c.FailedAt() == 40);
  CHECK_FALSE(c.Claim(1000, &first, &count));

  const std::string name2 = NewCallPrefix() + "-call";
  Removed guard2{name2};
  CallShared d = CallShared::Create(Shm(), name2, Layout(3, 4));
  CHECK(d.Claim(1000, &first, &count));
  CHECK(count == 1);
  d.Cancel();
  CHECK(d.Cancelled());
  CHECK_FALSE(d.Claim(1000, &first, &count));
}

TEST_CASE("processes claiming at once get every task exactly once") {
  const std::string name = NewCallPrefix() + "-call";
  Removed guard{name};
  const uint64_t n = 200000;
  CallShared c = CallShared::Create(Shm(), name, Layout(n, 4));
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  std::vector<pid_t> kids;
  for (int k = 0; k < 4; ++k) {
    pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      CallShared mine = CallShared::Open(Shm(), name);
      uint64_t first, count;
      while (mine.Claim(k % 2 ? 3 : 1000, &first, &count)) {
        uint64_t rec[2] = {first, count};
        if (write(fds[1], rec, sizeof rec) != sizeof rec) _exit(2);
        mine.AddDone(count);
      }
      _exit(0);
    }
    kids.push_back(pid);
  }
  close(fds[1]);
  std::vector<uint8_t> seen(n, 0);
  uint64_t rec[2];
  while (read(fds[0], rec, sizeof rec) == sizeof rec)
    for (uint64_t i = rec[0]; i < rec[0] + rec[1]; ++i) ++seen[i];
  close(fds[0]);
  for (pid_t pid : kids) {
    int ws;
    REQUIRE(waitpid(pid, &ws, 0) == pid);
    CHECK(WIFEXITED(ws));
    CHECK(WEXITSTATUS(ws) == 0);
  }
  CHECK(std::count(seen.begin(), seen.end(), 1) == static_cast<long>(n));
  CHECK(c.Done() == n);
}

TEST_CASE("a futex wait in one process ends when another changes the word and wakes it") {
  Segment seg = Segment::CreateUnnamed("/dev/shm", 4096, "futex test");
  Mapping m = seg.Map(MapMode::kReadWrite);
  uint32_t* word = reinterpret_cast<uint32_t*>(m.data());
  *word = 5;
  // A wait on a value the word does not hold returns at once.
  double t0 = Seconds();
  CHECK(FutexWait(word, 4, 5.0));
  CHECK(Seconds() - t0 < 1.0);
  // A timeout.
  t0 = Seconds();
  CHECK_FALSE(FutexWait(word, 5, 0.05));
  CHECK(Seconds() - t0 >= 0.04);
  pid_t pid = fork();
  if (pid == 0) {
    // Wakes as soon as the parent changes the word; fails after 60 s.
    double start = Seconds();
    while (__atomic_load_n(word, __ATOMIC_ACQUIRE) == 5) {
      if (Seconds() - start > 60) _exit(3);
      FutexWait(word, 5, 1.0);
    }
    _exit(__atomic_load_n(word, __ATOMIC_ACQUIRE) == 6 ? 0 : 4);
  }
  usleep(50000);
  __atomic_store_n(word, 6u, __ATOMIC_RELEASE);
  FutexWakeAll(word);
  int ws;
  REQUIRE(waitpid(pid, &ws, 0) == pid);
  CHECK(WIFEXITED(ws));
  CHECK(WEXITSTATUS(ws) == 0);
}

TEST_CASE("the control block: jobs are posted with their call's name, slots report their end") {
  Segment seg = Segment::CreateUnnamed("/dev/shm", Control::SizeFor(3), "control test");
  Control master = Control::Create(seg, 3);
  Control worker = Control::Attach(seg);
  CHECK(worker.workers() == 3);
  const uint32_t before = worker.Seq();
  CHECK(worker.WaitForJob(before, 0.01) == before);  // nothing posted: timeout
  const uint32_t seq = master.Post("pyrmap-1-2-abc-call");
  CHECK(seq == before + 1);
  CHECK(worker.WaitForJob(before, 5) == seq);
  CHECK(worker.CallName() == "pyrmap-1-2-abc-call");
  std::string name;
  CHECK(worker.ReadJob(&name) == seq);
  CHECK(name == "pyrmap-1-2-abc-call");
  CHECK(master.DoneSeq(1) != seq);
  worker.SetState(1, SlotState::kBusy);
  CHECK(master.State(1) == SlotState::kBusy);
  worker.Finish(1, seq);
  CHECK(master.DoneSeq(1) == seq);
  CHECK(master.State(1) == SlotState::kIdle);
  CHECK_FALSE(worker.Stopping());
  master.Stop();
  CHECK(worker.Stopping());
  CHECK_THROWS_AS(master.Post(std::string(300, 'x')), Error);
  // Not a control block.
  Segment other = Segment::CreateUnnamed("/dev/shm", 4096, "not a control block");
  CHECK_THROWS_AS(Control::Attach(other), Error);
}

TEST_CASE("result records are read back in order; damaged ones are refused") {
  Segment seg = Segment::CreateUnnamed("/dev/shm", 0, "records test");
  RecordWriter w(seg.fd(), "worker 1");
  const uint8_t a[5] = {1, 2, 3, 4, 5};
  const uint8_t b[16] = {9};
  w.Append(RecordKind::kValues, 0, 3, a, 5);
  w.Append(RecordKind::kFailure, 7, 1, b, 16);
  w.Append(RecordKind::kValues, 3, 1, nullptr, 0);
  CHECK(w.end() == 3 * kRecordHeaderSize + 8 + 16);
  Mapping m = seg.Map(MapMode::kReadOnly, 0, w.end());
  std::vector<Record> got;
  ReadRecords(m.data(), w.end(), 10, "worker 1", [&](const Record& r) { got.push_back(r); });
  REQUIRE(got.size() == 3);
  CHECK(got[0].kind == RecordKind::kValues);
  CHECK(got[0].first == 0);
  CHECK(got[0].count == 3);
  CHECK(got[0].nbytes == 5);
  CHECK(std::memcmp(got[0].payload, a, 5) == 0);
  CHECK(got[1].kind == RecordKind::kFailure);
  CHECK(got[1].first == 7);
  CHECK(got[2].nbytes == 0);
  // Cut short, values outside the tasks, an unknown kind.
  auto refused = [&](const uint8_t* data, uint64_t size, uint64_t tasks, const char* why) {
    try {
      ReadRecords(data, size, tasks, "worker 1", [](const Record&) {});
      FAIL("accepted: " << why);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kProtocol);
      CHECK(std::string(e.what()).find(why) != std::string::npos);
    }
  };
  refused(m.data(), 2 * kRecordHeaderSize + 8 + 10, 10, "does not fit");
  refused(m.data(), w.end() - 1, 10, "cut");
  refused(m.data(), 20, 10, "cut");
  refused(m.data(), w.end(), 2, "outside the call's 2 tasks");
  std::vector<uint8_t> bad(m.data(), m.data() + w.end());
  bad[0] = 9;
  refused(bad.data(), bad.size(), 10, "unknown record kind 9");
}

TEST_CASE("values of scattered ranges follow their ranges record, of as many tasks") {
  Segment seg = Segment::CreateUnnamed("/dev/shm", 0, "ranges test");
  RecordWriter w(seg.fd(), "worker 2");
  const uint64_t ranges[4] = {5, 2, 0, 1};  // tasks 5, 6 and 0
  const uint8_t values[3] = {1, 2, 3};
  w.Append(RecordKind::kRanges, 0, 3, reinterpret_cast<const uint8_t*>(ranges), sizeof ranges);
  w.Append(RecordKind::kValues, kNoTask, 3, values, 3);
  Mapping m = seg.Map(MapMode::kReadOnly, 0, w.end());
  std::vector<RecordKind> kinds;
  ReadRecords(m.data(), w.end(), 10, "worker 2", [&](const Record& r) { kinds.push_back(r.kind); });
  CHECK(kinds == std::vector<RecordKind>{RecordKind::kRanges, RecordKind::kValues});
  auto refused = [&](const std::vector<uint8_t>& b, uint64_t tasks, const char* why) {
    try {
      ReadRecords(b.data(), b.size(), tasks, "worker 2", [](const Record&) {});
      FAIL("accepted: " << why);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kProtocol);
      CHECK(std::string(e.what()).find(why) != std::string::npos);
    }
  };
  std::vector<uint8_t> all(m.data(), m.data() + w.end());
  refused(all, 6, "outside the call's 6 tasks");
  // Values of ranges without the ranges record before them.
  std::vector<uint8_t> alone(all.begin() + kRecordHeaderSize + sizeof ranges, all.end());
  refused(alone, 10, "do not follow ranges");
  // Ranges whose counts do not add up to the record's.
  std::vector<uint8_t> b = all;
  b[16] = 4;
  refused(b, 10, "said to hold 4");
}

TEST_CASE("the call area: a call is read only for the job it was published for; rewritten calls start afresh") {
  Segment seg = Segment::CreateUnnamed(kShmDir, 64 << 10, "a test call area");
  int fd = fcntl(seg.fd(), F_DUPFD_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  CallShared master = CallShared::OverArea(std::move(seg));
  CallShared worker = CallShared::OverArea(Segment::Adopt(fd, "a test call area"));
  CHECK_FALSE(worker.Refresh(1));  // nothing published yet

  CallLayout l = Layout(10, 2);
  l.job_size = 5;
  CHECK(master.Fits(l));
  master.Invalidate();
  master.Reset(l);
  master.WriteJob(reinterpret_cast<const uint8_t*>("hello"), 5);
  master.WriteObjects({});
  CHECK_FALSE(worker.Refresh(7));  // not published: a worker may not join
  master.Publish(7);
  CHECK_FALSE(worker.Refresh(6));  // a worker late for job 6 leaves it
  REQUIRE(worker.Refresh(7));
  CHECK(worker.layout().tasks == 10);
  CHECK((worker.layout().flags & kCallArea) != 0);
  CHECK(std::memcmp(worker.job(), "hello", 5) == 0);
  uint64_t first = 0, count = 0;
  worker.Join(1, getpid());
  REQUIRE(worker.Claim(100, &first, &count));
  worker.AddDone(count);
  worker.Fail(3);
  worker.Leave(1, Outcome::kFailed, 0);
  CHECK(master.Done() == count);

  // The next call: counters, failure and slots start afresh.
  master.Invalidate();
  CHECK_FALSE(worker.Refresh(7));  // being rewritten
  CallLayout l2 = Layout(3, 2);
  master.Reset(l2);
  master.WriteObjects({});
  master.Publish(8);
  REQUIRE(worker.Refresh(8));
  CHECK(worker.layout().tasks == 3);
  CHECK(worker.Done() == 0);
  CHECK(worker.FailedAt() == kNoTask);
  CHECK(worker.State(1) == CallShared::SlotState::kNone);

  // A call larger than the area does not fit, and is refused.
  CallLayout big = Layout(1, 1);
  big.data_size = 1 << 20;
  CHECK_FALSE(master.Fits(big));
  CHECK_THROWS_AS(master.Reset(big), Error);
}
