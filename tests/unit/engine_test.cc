#include "engine.h"

#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <memory>
#include <string>

#include "error.h"

using namespace pyrmap;

// ---- a worker program: this test binary, run with PYRMAP_UNIT_ENGINE_WORKER ----
//
// Its job (the call segment's job bytes) is "<mode> <k>": every task i
// gives (i * i, slot); mode "die-at" exits with status 7 at task k (after
// saying so on stderr), "fail-at" records a failure of task k, "sleep-all"
// sleeps in every task until SIGINT (outcome interrupted), "deaf-all" does
// the same with SIGINT ignored. Chunks are capped at k for mode "cap". A
// call that is over before this worker opens it is skipped.

namespace {

// The segment directory of these tests.
const SegmentDir& Shm() {
  static const SegmentDir dir = SegmentDir::Open(kShmDir);
  return dir;
}

volatile sig_atomic_t g_interrupted = 0;
void OnInterrupt(int) { g_interrupted = 1; }

double Seconds() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

}  // namespace

int EngineTestWorkerMain() {
  try {
    EngineWorker w = EngineWorker::FromEnvironment();
    struct sigaction sa = {};
    sa.sa_handler = OnInterrupt;
    sigaction(SIGINT, &sa, nullptr);
    std::string name;
    while (w.NextJob(&name)) {
      if (name.empty()) continue;
      g_interrupted = 0;
      std::optional<CallShared> opened;
      try {
        opened.emplace(CallShared::Open(Shm(), name));
      } catch (const Error&) {
        w.Finish();  // a call that is over already (this worker woke late)
        continue;
      }
      CallShared& call = *opened;
      call.Join(w.slot(), getpid());
      char mode[32] = "";
      unsigned long long k = 0;
      std::string job(reinterpret_cast<const char*>(call.job()), call.layout().job_size);
      std::sscanf(job.c_str(), "%31s %llu", mode, &k);
      const std::string m = mode;
      if (m == "deaf-all") signal(SIGINT, SIG_IGN);
      RecordWriter out(w.result_fd(), "test worker");
      Outcome outcome = Outcome::kOk;
      uint64_t first, count;
      while (outcome == Outcome::kOk && call.Claim(m == "cap" ? k : 1000000, &first, &count)) {
        std::vector<uint64_t> values;
        for (uint64_t i = first; i < first + count && outcome == Outcome::kOk; ++i) {
          call.SetCurrent(w.slot(), i);
          if (m == "die-at" && i == k) {
            std::fprintf(stderr, "dying at task %llu\n", k);
            std::fflush(stderr);
            _exit(7);
          }
          if (m == "fail-at" && i == k) {
            const char why[] = "task failed on purpose";
            out.Append(RecordKind::kFailure, i, 1, reinterpret_cast<const uint8_t*>(why), sizeof why - 1);
            call.Fail(i);
            outcome = Outcome::kFailed;
            break;
          }
          if (m == "sleep-all" || m == "deaf-all") {
            const double start = Seconds();
            while (!g_interrupted && Seconds() - start < 120) usleep(2000);
            if (g_interrupted) outcome = Outcome::kInterrupted;
            break;
          }
          values.push_back(i * i);
          values.push_back(w.slot());
        }
        if (!values.empty()) {
          out.Append(RecordKind::kValues, first, values.size() / 2, reinterpret_cast<const uint8_t*>(values.data()),
                     values.size() * 8);
          call.AddDone(values.size() / 2);
        }
      }
      call.Leave(w.slot(), outcome, out.end());
      w.Wake();
      w.Finish();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "test worker: %s\n", e.what());
    return 1;
  }
  return 0;
}

namespace {

EngineOptions TestOptions(int workers) {
  EngineOptions o;
  o.workers = workers;
  o.argv = {"/proc/self/exe"};
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) o.argv = {std::string(self, static_cast<size_t>(n))};
  o.env = {{"PYRMAP_UNIT_ENGINE_WORKER", "1"}};
  o.start_timeout = 60;
  return o;
}

struct Call {
  std::string name;
  std::unique_ptr<CallShared> shared;
  ~Call() { Segment::Remove(Shm(), name); }
};

std::unique_ptr<Call> MakeCall(uint64_t tasks, uint32_t workers, const std::string& job) {
  auto c = std::make_unique<Call>();
  c->name = NewCallPrefix() + "-call";
  CallLayout l;
  l.tasks = tasks;
  l.workers = workers;
  l.job_size = job.size();
  c->shared = std::make_unique<CallShared>(CallShared::Create(Shm(), c->name, l));
  c->shared->WriteJob(reinterpret_cast<const uint8_t*>(job.data()), job.size());
  c->shared->WriteObjects({});
  return c;
}

bool Working(const CallShared& c, uint32_t k) { return c.State(k) == CallShared::SlotState::kWorking; }

EngineStatus WaitDone(Engine& e, const Call& call) {
  const CallShared& c = *call.shared;
  const double start = Seconds();
  EngineStatus st;
  do {
    st = e.Wait([&] { return c.Settled() && c.Quiet(); }, [&](uint32_t k) { return Working(c, k); }, 1.0);
  } while (st.kind == EngineStatus::kRunning && Seconds() - start < 60);
  return st;
}

// Task -> (value, slot) from the records of the workers that took part.
std::map<uint64_t, std::pair<uint64_t, uint64_t>> Results(Engine& e, const Call& call, uint64_t tasks) {
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> out;
  for (uint32_t k = 0; k < e.workers(); ++k) {
    if (call.shared->State(k) != CallShared::SlotState::kLeft) continue;
    const uint64_t bytes = call.shared->SlotResultBytes(k);
    if (!bytes) continue;
    Mapping m = e.Results(k).Map(MapMode::kReadOnly, 0, bytes);
    ReadRecords(m.data(), bytes, tasks, "worker", [&](const Record& r) {
      if (r.kind != RecordKind::kValues) return;
      const uint64_t* v = reinterpret_cast<const uint64_t*>(r.payload);
      for (uint64_t j = 0; j < r.count; ++j) {
        CHECK(out.count(r.first + j) == 0);
        out[r.first + j] = {v[2 * j], v[2 * j + 1]};
      }
    });
  }
  return out;
}

bool Alive(pid_t pid) { return pid > 0 && kill(pid, 0) == 0; }

bool WaitGone(pid_t pid) {
  const double start = Seconds();
  while (Alive(pid) && Seconds() - start < 30) usleep(10000);
  return !Alive(pid);
}

}  // namespace

TEST_CASE("the engine's workers run a posted job; every task's result comes back once") {
  Engine e(TestOptions(2));
  e.Ready(nullptr);
  std::vector<pid_t> pids = e.Pids();
  REQUIRE(pids.size() == 2);
  CHECK(pids[0] > 0);
  CHECK(pids[1] > 0);
  for (int round = 0; round < 3; ++round) {
    auto call = MakeCall(5000, 2, "square 0");
    e.Post(call->name);
    EngineStatus st = WaitDone(e, *call);
    REQUIRE(st.kind == EngineStatus::kDone);
    auto res = Results(e, *call, 5000);
    REQUIRE(res.size() == 5000);
    for (auto& [i, v] : res) CHECK(v.first == i * i);
    CHECK(call->shared->Done() == 5000);
    CHECK(call->shared->Quiet());
  }
  // Small chunks: many records, still each task once.
  auto call = MakeCall(300, 2, "cap 7");
  e.Post(call->name);
  REQUIRE(WaitDone(e, *call).kind == EngineStatus::kDone);
  CHECK(Results(e, *call, 300).size() == 300);
  // Jobs posted back to back, each awaited: a worker that wakes late skips
  // to the newest job and never mixes two jobs' results.
  for (int round = 0; round < 200; ++round) {
    auto c = MakeCall(7, 2, "square 0");
    e.Post(c->name);
    REQUIRE(WaitDone(e, *c).kind == EngineStatus::kDone);
    auto r = Results(e, *c, 7);
    REQUIRE(r.size() == 7);
    CHECK(r[6].first == 36);
  }
  // The same processes served every job.
  e.Ready(nullptr);
  CHECK(e.Pids() == pids);
  CHECK(e.Restarts() == std::vector<uint64_t>{0, 0});
}

TEST_CASE("a failure is recorded by its worker and stops further claims") {
  Engine e(TestOptions(2));
  e.Ready(nullptr);
  auto call = MakeCall(100000, 2, "fail-at 3");
  e.Post(call->name);
  REQUIRE(WaitDone(e, *call).kind == EngineStatus::kDone);
  CHECK(call->shared->FailedAt() == 3);
  CHECK(call->shared->Done() < 100000);
  bool found = false;
  for (uint32_t k = 0; k < 2; ++k) {
    if (call->shared->State(k) != CallShared::SlotState::kLeft) continue;
    const uint64_t bytes = call->shared->SlotResultBytes(k);
    if (!bytes) continue;
    Mapping m = e.Results(k).Map(MapMode::kReadOnly, 0, bytes);
    ReadRecords(m.data(), bytes, 100000, "worker", [&](const Record& r) {
      if (r.kind == RecordKind::kFailure) {
        found = true;
        CHECK(r.first == 3);
        CHECK(std::string(reinterpret_cast<const char*>(r.payload), r.nbytes) == "task failed on purpose");
        CHECK(call->shared->SlotOutcome(k) == Outcome::kFailed);
      }
    });
  }
  CHECK(found);
}

TEST_CASE("a worker that dies is reported with how it ended and what it said, and started again") {
  Engine e(TestOptions(2));
  e.Ready(nullptr);
  const std::vector<pid_t> before = e.Pids();
  auto call = MakeCall(10, 2, "die-at 4");
  e.Post(call->name);
  EngineStatus st = WaitDone(e, *call);
  REQUIRE(st.kind == EngineStatus::kDied);
  CHECK(st.exit.exited);
  CHECK(st.exit.code == 7);
  CHECK(st.stderr_tail.find("dying at task 4") != std::string::npos);
  CHECK(call->shared->SlotCurrent(st.slot) == 4);
  CHECK(e.Pids()[st.slot] == 0);
  // The other worker is ended with the call; the next Ready() starts a new one.
  call->shared->Cancel();
  const CallShared& c = *call->shared;
  CHECK(e.Interrupt([&](uint32_t k) { return Working(c, k); }, 10) == 0);
  e.Ready(nullptr);
  const std::vector<pid_t> after = e.Pids();
  CHECK(after[st.slot] != before[st.slot]);
  CHECK(after[st.slot] > 0);
  CHECK(e.Restarts()[st.slot] == 1);
  auto again = MakeCall(1000, 2, "square 0");
  e.Post(again->name);
  REQUIRE(WaitDone(e, *again).kind == EngineStatus::kDone);
  CHECK(Results(e, *again, 1000).size() == 1000);
}

TEST_CASE("an interrupt stops workers that heed SIGINT and kills those that do not") {
  Engine e(TestOptions(2));
  e.Ready(nullptr);
  const std::vector<pid_t> pids = e.Pids();
  // Both workers sleep in a task until interrupted.
  auto call = MakeCall(2, 2, "sleep-all 0");
  e.Post(call->name);
  const CallShared& c = *call->shared;
  const double start = Seconds();
  while ((c.SlotCurrent(0) == kNoTask || c.SlotCurrent(1) == kNoTask) && Seconds() - start < 60) usleep(1000);
  CHECK(e.Wait([&] { return c.Settled() && c.Quiet(); }, [&](uint32_t k) { return Working(c, k); }, 0.05).kind ==
        EngineStatus::kRunning);
  call->shared->Cancel();
  CHECK(e.Interrupt([&](uint32_t k) { return Working(c, k); }, 30) == 0);
  CHECK(c.SlotOutcome(0) == Outcome::kInterrupted);
  CHECK(c.SlotOutcome(1) == Outcome::kInterrupted);
  CHECK(e.Pids() == pids);
  // Workers that ignore SIGINT are killed after the grace period, and
  // replaced by the next Ready().
  auto deaf = MakeCall(2, 2, "deaf-all 0");
  e.Post(deaf->name);
  const CallShared& d = *deaf->shared;
  const double t0 = Seconds();
  while ((d.SlotCurrent(0) == kNoTask || d.SlotCurrent(1) == kNoTask) && Seconds() - t0 < 60) usleep(1000);
  deaf->shared->Cancel();
  CHECK(e.Interrupt([&](uint32_t k) { return Working(d, k); }, 0.2) == 2);
  CHECK(WaitGone(pids[0]));
  CHECK(WaitGone(pids[1]));
  e.Ready(nullptr);
  auto again = MakeCall(50, 2, "square 0");
  e.Post(again->name);
  REQUIRE(WaitDone(e, *again).kind == EngineStatus::kDone);
  CHECK(Results(e, *again, 50).size() == 50);
}

TEST_CASE("a worker program that ends before it is ready is an error naming it and quoting it") {
  EngineOptions o;
  o.workers = 2;
  o.argv = {"sh", "-c", "echo 'cannot load the worker loop' >&2; exit 3"};
  o.what = "R worker";
  Engine e(o);
  try {
    e.Ready(nullptr);
    FAIL("Ready() returned");
  } catch (const Error& err) {
    const std::string msg = err.what();
    CHECK(err.kind() == ErrorKind::kSystem);
    CHECK(msg.find("R worker") != std::string::npos);
    CHECK(msg.find("of the engine") != std::string::npos);
    CHECK(msg.find("exited with status 3") != std::string::npos);
    CHECK(msg.find("cannot load the worker loop") != std::string::npos);
  }
  o.argv = {"/no/such/program"};
  Engine missing(o);
  CHECK_THROWS_AS(missing.Ready(nullptr), Error);
}

TEST_CASE("workers end with their engine, and a forked child's copy leaves them alone") {
  std::vector<pid_t> pids;
  {
    auto e = std::make_unique<Engine>(TestOptions(2));
    e->Ready(nullptr);
    pids = e->Pids();
    pid_t child = fork();
    if (child == 0) {
      // In the child the engine is not usable, and destroying it kills nothing.
      bool refused = false;
      try {
        e->Post("pyrmap-x-call");
      } catch (const Error&) {
        refused = true;
      }
      e.reset();
      _exit(refused ? 0 : 5);
    }
    int ws;
    REQUIRE(waitpid(child, &ws, 0) == child);
    CHECK(WIFEXITED(ws));
    CHECK(WEXITSTATUS(ws) == 0);
    CHECK(Alive(pids[0]));
    CHECK(Alive(pids[1]));
    auto call = MakeCall(20, 2, "square 0");
    e->Post(call->name);
    REQUIRE(WaitDone(*e, *call).kind == EngineStatus::kDone);
  }
  CHECK(WaitGone(pids[0]));
  CHECK(WaitGone(pids[1]));
}
