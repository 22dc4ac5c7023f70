#include "pool.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <vector>

#include "error.h"
#include "pool_message.h"
#include "segment.h"

using namespace pyrmap;

namespace {

std::string Python() {
  const char* p = getenv("PYRMAP_PYTHON");
  return p && *p ? p : "/usr/bin/python3";
}

// The source tree's Python package (the tests run in tests/unit).
std::string PackageDir() {
  char buf[4096];
  return realpath("../../python", buf) ? buf : "../../python";
}

PoolOptions Options(int workers = 1) {
  PoolOptions o;
  o.workers = workers;
  o.python = Python();
  o.package_dir = PackageDir();
  return o;
}

RunOptions Quiet() {
  RunOptions r;
  r.on_stderr = [](std::string_view) {};
  r.on_stdout = [](std::string_view) {};
  return r;
}

// A temporary script; removed with the object.
struct TempScript {
  std::string path;
  explicit TempScript(const std::string& body, const std::string& name = "s") {
    char dir[] = "/tmp/pyrmap-pool-test-XXXXXX";
    REQUIRE(mkdtemp(dir) != nullptr);
    path = std::string(dir) + "/" + name + ".py";
    Write(body);
  }
  void Write(const std::string& body) const {
    std::ofstream f(path);
    f << "import os, sys, time\nimport numpy as np\nfrom pyrmap import process_via_mmap\n\n"
      << "@process_via_mmap\ndef process(data):\n";
    size_t start = 0;
    while (start < body.size()) {
      size_t end = body.find('\n', start);
      if (end == std::string::npos) end = body.size();
      f << "    " << body.substr(start, end - start) << "\n";
      start = end + 1;
    }
    f << "\nif __name__ == '__main__':\n    process()\n";
  }
  ~TempScript() {
    unlink(path.c_str());
    rmdir(path.substr(0, path.find_last_of('/')).c_str());
  }
  Script script() const { return ParseScript(path); }
};

Input Doubles(const std::vector<double>& v) {
  auto data = std::make_shared<std::vector<double>>(v);
  Input in;
  in.desc = ArrayDesc::Make(Dtype::kFloat64, {v.size()}, Order::kF);
  in.fill = [data](Segment& seg, void (*check)(void*), void* arg) {
    seg.Write(0, data->data(), data->size() * sizeof(double), check, arg);
  };
  return in;
}

std::vector<double> Values(const Result& r) {
  std::vector<double> out(r.desc.count);
  if (!out.empty()) std::memcpy(out.data(), r.data(), out.size() * sizeof(double));
  return out;
}

bool Alive(pid_t pid) { return pid > 0 && kill(pid, 0) == 0; }

// The unnamed /dev/shm files this process holds open (a pool's areas, a
// kept input).
int UnnamedSegments() {
  int n = 0;
  for (int fd = 0; fd < 1024; ++fd) {
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t k = readlink(link, target, sizeof target - 1);
    if (k <= 0) continue;
    target[k] = 0;
    if (std::strncmp(target, "/dev/shm/#", 10) == 0) ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("a pool runs a script many times in one warm worker") {
  TempScript s("return data * 2");
  Pool pool(Options());
  pid_t pid = 0;
  for (int i = 0; i < 20; ++i) {
    Result r = pool.Run(s.script(), Doubles({1, 2, double(i)}), Quiet());
    CHECK(r.transient);  // a small result travels in the worker's area
    CHECK(Values(r) == std::vector<double>{2, 4, 2.0 * i});
    if (i == 0) pid = pool.Workers()[0].pid;
  }
  CHECK(pool.Workers()[0].pid == pid);
  CHECK(pool.Workers()[0].calls == 20);
  CHECK(pool.Workers()[0].scripts == 1);
  pool.Close();
  CHECK_FALSE(Alive(pid));
  CHECK_THROWS_AS(pool.Run(s.script(), Doubles({1}), Quiet()), Error);
}

TEST_CASE("large inputs and results travel in segments of their own") {
  TempScript s("return data + 1");
  Pool pool(Options());
  std::vector<double> big(300000);  // 2.4 MB: beyond the area
  for (size_t i = 0; i < big.size(); ++i) big[i] = double(i);
  Result r = pool.Run(s.script(), Doubles(big), Quiet());
  CHECK_FALSE(r.transient);
  REQUIRE(r.desc.count == big.size());
  std::vector<double> v = Values(r);
  CHECK(v.front() == 1);
  CHECK(v.back() == double(big.size()));
}

TEST_CASE("a reply's flags survive encoding; an old reply (0) releases nothing") {
  Reply r;
  r.ok = true;
  r.call_id = 9;
  r.flags = kReplyInputReleased;
  std::vector<uint8_t> b = EncodeReply(r);
  CHECK(DecodeReply(b.data(), b.size(), "test").flags == kReplyInputReleased);
  r.flags = 0;
  b = EncodeReply(r);
  CHECK(DecodeReply(b.data(), b.size(), "test").flags == 0);
}

TEST_CASE("a large input's segment is kept for the next call, unless keeping is off") {
  TempScript s("return data.sum()");
  std::vector<double> big(300000, 1.0);  // beyond the area
  for (double seconds : {0.0, 60.0}) {
    PoolOptions o = Options();
    o.keep_input_seconds = seconds;
    Pool pool(o);
    const int areas = UnnamedSegments();
    for (int i = 1; i <= 3; ++i) {
      std::vector<double> v(big.size(), double(i));
      Result r = pool.Run(s.script(), Doubles(v), Quiet());
      CHECK(Values(r) == std::vector<double>{double(i) * v.size()});
      CHECK(UnnamedSegments() == areas + (seconds > 0 ? 1 : 0));
    }
    pool.Close();
    CHECK(UnnamedSegments() == areas - 1);  // the area goes too
  }
}

TEST_CASE("an exception is an error for that call; the worker keeps serving") {
  TempScript s("if data[0] < 0:\n    raise ValueError('negative input')\nreturn data");
  Pool pool(Options());
  CHECK(Values(pool.Run(s.script(), Doubles({1}), Quiet())) == std::vector<double>{1});
  pid_t pid = pool.Workers()[0].pid;
  try {
    pool.Run(s.script(), Doubles({-1}), Quiet());
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kScript);
    CHECK(e.python_type() == "ValueError");
    CHECK(std::string(e.what()).find("ValueError: negative input") != std::string::npos);
    CHECK(e.python_traceback().find(s.path) != std::string::npos);
  }
  CHECK(Values(pool.Run(s.script(), Doubles({2}), Quiet())) == std::vector<double>{2});
  CHECK(pool.Workers()[0].pid == pid);
}

TEST_CASE("a worker that dies is an error for that call and is replaced") {
  TempScript s("if data[0] == 1:\n    os._exit(3)\nif data[0] == 2:\n    os.kill(os.getpid(), 9)\nreturn data");
  Pool pool(Options());
  pool.Run(s.script(), Doubles({0}), Quiet());
  pid_t first = pool.Workers()[0].pid;
  try {
    pool.Run(s.script(), Doubles({1}), Quiet());
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kScript);
    CHECK(e.exit_status() == 3);
    CHECK(std::string(e.what()).find("exited with status 3") != std::string::npos);
  }
  pid_t second = pool.Workers()[0].pid;
  CHECK(second != first);
  CHECK_FALSE(Alive(first));
  try {
    pool.Run(s.script(), Doubles({2}), Quiet());
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kScript);
    CHECK(e.signal() == SIGKILL);
  }
  CHECK(Values(pool.Run(s.script(), Doubles({5}), Quiet())) == std::vector<double>{5});
  CHECK(pool.Workers()[0].restarts == 2);
}

TEST_CASE("a timeout kills and replaces the worker") {
  TempScript s("if data[0] > 0:\n    time.sleep(600)\nreturn data");
  Pool pool(Options());
  pool.Run(s.script(), Doubles({0}), Quiet());
  pid_t first = pool.Workers()[0].pid;
  RunOptions o = Quiet();
  o.timeout_seconds = 1;
  CHECK_THROWS_WITH_AS(pool.Run(s.script(), Doubles({1}), o), doctest::Contains("timed out"), Error);
  CHECK_FALSE(Alive(first));
  CHECK(Values(pool.Run(s.script(), Doubles({0}), o)) == std::vector<double>{0});
}

TEST_CASE("an interrupt abandons the call and leaves a working pool") {
  TempScript s("if data[0] > 0:\n    time.sleep(600)\nreturn data");
  Pool pool(Options());
  pool.Run(s.script(), Doubles({0}), Quiet());
  RunOptions o = Quiet();
  int polls = 0;
  o.check_interrupt = [&] {
    if (++polls > 3) throw Error(ErrorKind::kInterrupt, "interrupted");
  };
  CHECK_THROWS_AS(pool.Run(s.script(), Doubles({1}), o), Error);
  CHECK(Values(pool.Run(s.script(), Doubles({0}), Quiet())) == std::vector<double>{0});
}

TEST_CASE("scripts of a shared call run at once on the pool's workers") {
  // Each script records when it started and ended; with two workers the
  // two runs overlap (each sleeps long enough that a loaded machine still
  // starts the other before it ends).
  TempScript a("t0 = time.time()\ntime.sleep(2)\nreturn np.array([t0, time.time()])", "a");
  TempScript b("t0 = time.time()\ntime.sleep(2)\nreturn np.array([t0, time.time()])", "b");
  Pool pool(Options(2));
  std::vector<Result> rs = pool.Shared({a.script(), b.script()}, Doubles({1}), Quiet());
  REQUIRE(rs.size() == 2);
  std::vector<double> ta = Values(rs[0]), tb = Values(rs[1]);
  CHECK(tb[0] < ta[1]);
  CHECK(ta[0] < tb[1]);
  CHECK(pool.Workers()[0].calls + pool.Workers()[1].calls == 2);
}

TEST_CASE("more scripts than workers: every result stays intact") {
  TempScript a("return data + 1", "a");
  TempScript b("return data + 2", "b");
  TempScript c("return data + 3", "c");
  Pool pool(Options(1));
  std::vector<Result> rs = pool.Shared({a.script(), b.script(), c.script()}, Doubles({10}), Quiet());
  REQUIRE(rs.size() == 3);
  CHECK(Values(rs[0]) == std::vector<double>{11});
  CHECK(Values(rs[1]) == std::vector<double>{12});
  CHECK(Values(rs[2]) == std::vector<double>{13});
}

TEST_CASE("a pipeline runs on one worker; a scalar stage feeds the next") {
  TempScript total("return np.sum(data)", "total");
  TempScript plus_one("return data[0] + 1", "plus_one");
  Pool pool(Options());
  std::vector<Result> last = pool.Pipeline({total.script(), plus_one.script()}, Doubles({1, 2, 3}),
                                           Quiet(), false);
  REQUIRE(last.size() == 1);
  CHECK(Values(last[0]) == std::vector<double>{7});
  std::vector<Result> all = pool.Pipeline({total.script(), plus_one.script()}, Doubles({1, 2, 3}),
                                          Quiet(), true);
  REQUIRE(all.size() == 2);
  CHECK(Values(all[0]) == std::vector<double>{6});
  CHECK(Values(all[1]) == std::vector<double>{7});
}

TEST_CASE("a script is reloaded when its file changes") {
  TempScript s("return data * 2");
  Pool pool(Options());
  CHECK(Values(pool.Run(s.script(), Doubles({3}), Quiet())) == std::vector<double>{6});
  s.Write("return data * 3");
  // A new modification time even on a coarse clock.
  struct timespec later[2] = {{0, UTIME_OMIT}, {time(nullptr) + 5, 0}};
  utimensat(AT_FDCWD, s.path.c_str(), later, 0);
  CHECK(Values(pool.Run(s.script(), Doubles({3}), Quiet())) == std::vector<double>{9});
}

TEST_CASE("a script with no decorated function is an error naming the remedy") {
  TempScript s("return data");
  {
    std::ofstream f(s.path);
    f << "def helper(x):\n    return x\n";
  }
  Pool pool(Options());
  CHECK_THROWS_WITH_AS(pool.Run(s.script(), Doubles({1}), Quiet()),
                       doctest::Contains("no @process_via_mmap function"), Error);
  CHECK(Values(pool.Run(ParseScript(s.path + "::helper"), Doubles({4}), Quiet())) ==
        std::vector<double>{4});
}

TEST_CASE("an interpreter that is not Python is an interpreter error") {
  TempScript s("return data");
  PoolOptions o = Options();
  o.python = "/bin/false";
  Pool pool(o);
  try {
    pool.Run(s.script(), Doubles({1}), Quiet());
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kInterpreter);
    CHECK(std::string(e.what()).find("/bin/false") != std::string::npos);
  }
}
