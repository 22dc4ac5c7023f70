// pyrmap ls / pyrmap gc — the segments in the segment directories, and
// removing orphans.
#include <unistd.h>

#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "inventory.h"
#include "segment.h"
#include "segment_dir.h"
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
  if (s.squatted()) return fmt::format("squatted by {}", DescribeUser(s.file_uid));
  if (s.owner_pid == 0) return "unknown";
  return fmt::format("{} ({})", s.owner_pid, s.owner_alive ? "alive" : "dead");
}

// The directories to look in: the known ones and those given.
std::vector<std::string> Dirs(const std::vector<std::string>& given) {
  std::vector<std::string> extra;
  for (const auto& g : given) {
    std::string path = ResolveSegmentDir(g);
    SegmentDir::Open(path);  // a given directory must exist and be safe: say so now
    extra.push_back(path);
  }
  return KnownSegmentDirs(extra);
}

void ReportSkipped(const std::vector<std::string>& skipped) {
  for (const auto& why : skipped) std::cerr << "pyrmap: skipped: " << why << "\n";
}

int RunLs(const std::vector<std::string>& given) {
  std::vector<std::string> dirs = Dirs(given), skipped;
  auto segs = ListSegments(dirs, &skipped);
  ReportSkipped(skipped);
  if (segs.empty()) {
    std::string where;
    for (const auto& d : dirs) where += (where.empty() ? "" : ", ") + d;
    std::cout << "no pyrmap segments in " << where << "\n";
    return kExitOk;
  }
  size_t w = 4, h = 5, o = 16;
  for (const auto& s : segs) {
    w = std::max(w, s.name.size());
    h = std::max(h, s.what.size());
    o = std::max(o, Owner(s).size());
  }
  std::cout << fmt::format("{:<{}}  {:<{}}  {:>{}}  {:>10}  {:>5}  {}\n", "NAME", w, "HOLDS", h, "OWNER", o,
                           "SIZE", "AGE", "DIR");
  for (const auto& s : segs)
    std::cout << fmt::format("{:<{}}  {:<{}}  {:>{}}  {:>10}  {:>5}  {}\n", s.name, w, s.what, h, Owner(s), o,
                             HumanSize(s.size), HumanAge(s.age_seconds), s.dir);
  return kExitOk;
}

int RunGc(bool dry_run, const std::vector<std::string>& given) {
  std::vector<std::string> dirs = Dirs(given), skipped;
  std::vector<SegmentInfo> gone;
  if (dry_run) {
    for (auto& s : ListSegments(dirs, &skipped))
      if (!s.owner_alive || (s.squatted() && geteuid() == 0)) gone.push_back(s);
  } else {
    gone = CollectGarbage(dirs, &skipped);
  }
  ReportSkipped(skipped);
  uint64_t bytes = 0;
  for (const auto& s : gone) {
    std::string why = s.squatted() ? fmt::format("squatted by {}", DescribeUser(s.file_uid))
                                   : fmt::format("owner {} is dead", s.owner_pid);
    std::cout << fmt::format("{} {} ({}, {}) in {}\n", dry_run ? "would remove" : "removed", s.name, why,
                             HumanSize(s.size), s.dir);
    bytes += s.size;
  }
  std::cout << fmt::format("{} {} segment{} ({})\n", dry_run ? "would remove" : "removed", gone.size(),
                           gone.size() == 1 ? "" : "s", HumanSize(bytes));
  return kExitOk;
}

}  // namespace

Runner SetupLs(CLI::App& app) {
  auto dirs = std::make_shared<std::vector<std::string>>();
  CLI::App* sub = app.add_subcommand(
      "ls", "List pyrmap segments (in /dev/shm and every segment directory used): owner, size, age");
  AddSegmentDirOption(sub, dirs.get());
  sub->footer(ExitCodeHelp());
  return [dirs] { return RunLs(*dirs); };
}

Runner SetupGc(CLI::App& app) {
  auto dry = std::make_shared<bool>(false);
  auto dirs = std::make_shared<std::vector<std::string>>();
  CLI::App* sub = app.add_subcommand("gc", "Remove pyrmap segments whose owner process is dead");
  sub->add_flag("-n,--dry-run", *dry, "Only list what would be removed");
  AddSegmentDirOption(sub, dirs.get());
  sub->footer(ExitCodeHelp());
  return [dry, dirs] { return RunGc(*dry, *dirs); };
}

}  // namespace pyrmap::cli
