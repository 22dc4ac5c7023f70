// pyrmap ls / pyrmap gc — the segments in /dev/shm, and removing orphans.
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "inventory.h"
#include "segment.h"
#include "commands.h"
#include "common.h"

namespace pyrmap::cli {

namespace {

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

std::string HumanAge(double s) {
  if (s < 120) return fmt::format("{:.0f}s", s);
  if (s < 7200) return fmt::format("{:.0f}m", s / 60);
  if (s < 172800) return fmt::format("{:.0f}h", s / 3600);
  return fmt::format("{:.0f}d", s / 86400);
}

std::string Owner(const SegmentInfo& s) {
  if (s.owner_pid == 0) return "unknown";
  return fmt::format("{} ({})", s.owner_pid, s.owner_alive ? "alive" : "dead");
}

int RunLs() {
  auto segs = ListSegments();
  if (segs.empty()) {
    std::cout << "no pyrmap segments in " << kShmDir << "\n";
    return kExitOk;
  }
  size_t w = 4, h = 5;
  for (const auto& s : segs) {
    w = std::max(w, s.name.size());
    h = std::max(h, s.what.size());
  }
  std::cout << fmt::format("{:<{}}  {:<{}}  {:>16}  {:>10}  {:>5}\n", "NAME", w, "HOLDS", h, "OWNER",
                           "SIZE", "AGE");
  for (const auto& s : segs)
    std::cout << fmt::format("{:<{}}  {:<{}}  {:>16}  {:>10}  {:>5}\n", s.name, w, s.what, h, Owner(s),
                             HumanSize(s.size), HumanAge(s.age_seconds));
  return kExitOk;
}

int RunGc(bool dry_run) {
  std::vector<SegmentInfo> gone;
  if (dry_run) {
    for (auto& s : ListSegments())
      if (!s.owner_alive) gone.push_back(s);
  } else {
    gone = CollectGarbage();
  }
  uint64_t bytes = 0;
  for (const auto& s : gone) {
    std::cout << fmt::format("{} {} (owner {} is dead, {})\n", dry_run ? "would remove" : "removed",
                             s.name, s.owner_pid, HumanSize(s.size));
    bytes += s.size;
  }
  std::cout << fmt::format("{} {} segment{} ({})\n", dry_run ? "would remove" : "removed", gone.size(),
                           gone.size() == 1 ? "" : "s", HumanSize(bytes));
  return kExitOk;
}

}  // namespace

Runner SetupLs(CLI::App& app) {
  CLI::App* sub = app.add_subcommand("ls", "List pyrmap segments in /dev/shm: owner, size, age");
  sub->footer(ExitCodeHelp());
  return [] { return RunLs(); };
}

Runner SetupGc(CLI::App& app) {
  auto dry = std::make_shared<bool>(false);
  CLI::App* sub = app.add_subcommand("gc", "Remove pyrmap segments whose owner process is dead");
  sub->add_flag("-n,--dry-run", *dry, "Only list what would be removed");
  sub->footer(ExitCodeHelp());
  return [dry] { return RunGc(*dry); };
}

}  // namespace pyrmap::cli
