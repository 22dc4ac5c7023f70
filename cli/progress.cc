#include "progress.h"

#include <unistd.h>

#include <cmath>

#include <fmt/format.h>

#include "unix_io.h"

namespace pyrmap::cli {

namespace {

// One line on stderr, written at once (scripts write there too).
void Line(const std::string& text) {
  std::string line = "pyrmap: " + text + "\n";
  WriteAllToStderr(line);
}

std::string Position(const RunEvent& e) {
  if (e.count <= 1) return "";
  if (e.first == e.last) return fmt::format("[{}/{}] ", e.first + 1, e.count);
  return fmt::format("[{}-{}/{}] ", e.first + 1, e.last + 1, e.count);
}

}  // namespace

std::string HumanSize(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", n) : fmt::format("{:.1f} {}", v, units[u]);
}

std::string HumanSeconds(double s) {
  if (s < 0) s = 0;
  if (s < 1) return fmt::format("{:.3f} s", s);
  if (s < 60) return fmt::format("{:.2f} s", s);
  const auto whole = static_cast<long long>(std::llround(s));
  return fmt::format("{}m{:02}s", whole / 60, whole % 60);
}

std::string DescribeArray(const ArrayDesc& d) {
  return fmt::format("{}, {}", d.Describe(), HumanSize(d.nbytes));
}

void Progress::Input(const std::string& name, const ArrayDesc& desc) const {
  if (enabled_) Line(fmt::format("input: {}: {}", name, DescribeArray(desc)));
}

std::function<void(const RunEvent&)> Progress::Events() const {
  if (!enabled_) return nullptr;
  return [](const RunEvent& e) {
    switch (e.kind) {
      case RunEvent::Kind::kStarted:
        Line(fmt::format("{}{}: started on {}", Position(e), e.what, DescribeArray(e.input)));
        break;
      case RunEvent::Kind::kFinished:
        Line(fmt::format("{}{}: done in {}: {}", Position(e), e.what, HumanSeconds(e.seconds),
                         DescribeArray(e.result)));
        break;
      case RunEvent::Kind::kFailed:
        Line(fmt::format("{}{}: failed after {}", Position(e), e.what, HumanSeconds(e.seconds)));
        break;
    }
  };
}

void Progress::Output(const std::string& where, uint64_t bytes, double seconds) const {
  if (enabled_) Line(fmt::format("output: {}: {} in {}", where, HumanSize(bytes), HumanSeconds(seconds)));
}

}  // namespace pyrmap::cli
