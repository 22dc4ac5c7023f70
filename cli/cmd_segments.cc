// pyrmap ls / pyrmap gc — the segments in the segment directories, and
// removing orphans.
#include <unistd.h>

#include <iostream>
#include <cstdlib>
#include <memory>

#include <fmt/format.h>

#include "inventory.h"
#include "segment.h"
#include "segment_dir.h"
#include "commands.h"
#include "common.h"
#include "help.h"
#include "registry.h"

namespace pyrmap::cli {

namespace {

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

std::string Pids(const std::vector<pid_t>& pids) {
  std::string out;
  for (pid_t p : pids) out += (out.empty() ? "" : ",") + std::to_string(p);
  return out;
}

// What a segment holds, in the ls table: a call segment's role (the end
// of its name), a page's "<namespace>.<variable>".
std::string Holds(const SegmentInfo& s) { return s.squatted() ? "?" : s.what; }

// The same in words, for gc's report.
std::string HoldsInWords(const SegmentInfo& s) {
  if (s.squatted()) return "another user's file";
  if (IsPageName(s.name))
    return s.what == "page" ? "a shared variable's page" : "the shared variable " + s.what;
  auto number = [&](size_t at) { return std::to_string(std::strtoul(s.what.c_str() + at, nullptr, 10) + 1); };
  if (s.what == "data") return "a run's input";
  if (s.what.rfind("meta-", 0) == 0) return "the header of a run's script " + number(5);
  if (s.what.rfind("res-", 0) == 0) return "the result of a run's script " + number(4);
  if (s.what == "page") return "a shared variable being registered";
  return s.what;
}

// A JSON string: quotes, backslashes and control characters escaped (the
// text is UTF-8 already).
std::string Json(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      out += fmt::format("\\u{:04x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
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

void PrintJson(const std::vector<SegmentInfo>& segs, const std::vector<UnnamedSegment>& unnamed) {
  std::cout << "[";
  const char* sep = "\n";
  for (const auto& s : segs) {
    std::cout << sep << fmt::format(
        "  {{\"name\": {}, \"dir\": {}, \"named\": true, \"kind\": {}, \"holds\": {}, \"uid\": {}, "
        "\"owner_pid\": {}, \"owner_alive\": {}, \"squatted_by_uid\": {}, \"size\": {}, "
        "\"age_seconds\": {:.3f}}}",
        Json(s.name), Json(s.dir), Json(IsPageName(s.name) ? "page" : "call"), Json(s.what), s.uid,
        s.owner_pid == 0 ? std::string("null") : std::to_string(s.owner_pid),
        s.owner_alive ? "true" : "false", s.squatted() ? std::to_string(s.file_uid) : std::string("null"),
        s.size, s.age_seconds);
    sep = ",\n";
  }
  for (const auto& u : unnamed) {
    std::string holders;
    for (pid_t p : u.holders) holders += (holders.empty() ? "" : ", ") + std::to_string(p);
    std::cout << sep << fmt::format(
        "  {{\"name\": {}, \"dir\": {}, \"named\": false, \"kind\": {}, \"holds\": {}, \"uid\": {}, "
        "\"owner_pid\": {}, \"size\": {}, \"size_from_mappings\": {}, \"holders\": [{}]}}",
        Json(u.name), Json(u.dir), Json(u.what == "page" ? "page" : "call"), Json(u.what), u.uid,
        u.owner_pid == 0 ? std::string("null") : std::to_string(u.owner_pid), u.size,
        u.size_from_mappings ? "true" : "false", holders);
    sep = ",\n";
  }
  std::cout << (segs.empty() && unnamed.empty() ? "]\n" : "\n]\n");
}

int RunLs(const std::vector<std::string>& given, bool json) {
  std::vector<std::string> dirs = Dirs(given), skipped;
  auto segs = ListSegments(dirs, &skipped);
  auto unnamed = ListUnnamedSegments(dirs);
  ReportSkipped(skipped);
  if (json) {
    PrintJson(segs, unnamed);
    return kExitOk;
  }
  if (segs.empty() && unnamed.empty()) {
    std::string where;
    for (const auto& d : dirs) where += (where.empty() ? "" : ", ") + d;
    std::cout << "no pyrmap segments in " << where << "\n";
    return kExitOk;
  }
  // One row per segment: named ones as the directory lists them, then
  // those whose name is gone but whose memory a process still holds (a
  // running call's input, a result a view maps): their real size, and who
  // holds them.
  struct Row {
    std::string name, holds, owner, size, age, dir;
  };
  std::vector<Row> rows;
  for (const auto& s : segs)
    rows.push_back({s.name, Holds(s), Owner(s), HumanSize(s.size), HumanAge(s.age_seconds), s.dir});
  for (const auto& u : unnamed)
    rows.push_back({u.name, u.what + " (name removed)", "held by " + Pids(u.holders),
                    (u.size_from_mappings ? ">= " : "") + HumanSize(u.size), "-", u.dir});
  size_t w = 4, h = 5, o = 5, z = 4;
  for (const auto& r : rows) {
    w = std::max(w, r.name.size());
    h = std::max(h, r.holds.size());
    o = std::max(o, r.owner.size());
    z = std::max(z, r.size.size());
  }
  std::cout << fmt::format("{:<{}}  {:<{}}  {:<{}}  {:>{}}  {:>5}  {}\n", "NAME", w, "HOLDS", h, "OWNER", o,
                           "SIZE", z, "AGE", "DIR");
  for (const auto& r : rows)
    std::cout << fmt::format("{:<{}}  {:<{}}  {:<{}}  {:>{}}  {:>5}  {}\n", r.name, w, r.holds, h, r.owner, o,
                             r.size, z, r.age, r.dir);
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
                      : s.owner_pid == 0 ? std::string("its writer is gone")
                                         : fmt::format("owner {} is dead", s.owner_pid);
    std::cout << fmt::format("{} {} ({}): {}, {}, in {}\n", dry_run ? "would remove" : "removed", s.name,
                             why, HoldsInWords(s), HumanSize(s.size), s.dir);
    bytes += s.size;
  }
  std::cout << fmt::format("{} {} segment{} ({}){}\n", dry_run ? "would remove" : "removed", gone.size(),
                           gone.size() == 1 ? "" : "s", HumanSize(bytes),
                           gone.empty() ? ": none has a dead owner" : "");
  return kExitOk;
}

}  // namespace

Runner SetupLs(CLI::App& app) {
  auto dirs = std::make_shared<std::vector<std::string>>();
  auto json = std::make_shared<bool>(false);
  CLI::App* sub = app.add_subcommand(
      "ls", "List pyrmap segments (in /dev/shm and every segment directory used): what they hold, "
            "owner, size, age; and those whose name is gone but whose memory a process still holds");
  sub->add_flag("--json", *json,
                "Print a JSON array, one object per segment (name, dir, named, kind, holds, uid, "
                "owner_pid, size, ...)");
  AddSegmentDirOption(sub, dirs.get());
  sub->footer(HelpFooter({{"pyrmap ls", "this user's segments, a table"},
                          {"pyrmap ls --json", "the same as JSON"},
                          {"pyrmap ls --segment-dir DISK", "also look in the DISK directory"}},
                         kSegmentCommands));
  return [dirs, json] { return RunLs(*dirs, *json); };
}

Runner SetupGc(CLI::App& app) {
  auto dry = std::make_shared<bool>(false);
  auto dirs = std::make_shared<std::vector<std::string>>();
  CLI::App* sub = app.add_subcommand(
      "gc", "Remove pyrmap segments whose owner process is dead, saying what each held");
  sub->add_flag("-n,--dry-run", *dry, "Dry run: say what would be removed, and remove nothing");
  AddSegmentDirOption(sub, dirs.get());
  sub->footer(HelpFooter({{"pyrmap gc -n", "what gc would remove (a dry run)"},
                          {"pyrmap gc", "remove the segments of dead processes"}},
                         kSegmentCommands));
  return [dry, dirs] { return RunGc(*dry, *dirs); };
}

}  // namespace pyrmap::cli
