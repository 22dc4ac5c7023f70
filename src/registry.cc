#include "registry.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include <fmt/format.h>

#include "bytes.h"
#include "error.h"
#include "inventory.h"

namespace pyrmap {

namespace {

namespace poff {
constexpr size_t kMagic = 0;
constexpr size_t kVersionMajor = 8;
constexpr size_t kVersionMinor = 10;
constexpr size_t kHeaderSize = 12;
constexpr size_t kOwnerPid = 16;
constexpr size_t kGeneration = 24;
constexpr size_t kIsList = 32;
constexpr size_t kCount = 36;
constexpr size_t kTableOffset = 40;
constexpr size_t kNamesOffset = 48;
constexpr size_t kNamesSize = 56;
constexpr size_t kTotalSize = 64;
constexpr size_t kReady = 72;  // u32: 1 once every payload is written
constexpr size_t kNamespace = 128;
constexpr size_t kVariable = 384;
constexpr size_t kNameField = 256;
constexpr size_t kTag = 12;  // in each ArrayDesc of the table
}  // namespace poff

constexpr uint16_t kPageVersionMajor = 1;
constexpr uint16_t kPageVersionMinor = 0;

uint64_t Align(uint64_t n) { return (n + kPayloadAlignment - 1) / kPayloadAlignment * kPayloadAlignment; }

uint64_t Fnv1a(const std::string& a, const std::string& b) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](unsigned char c) {
    h ^= c;
    h *= 1099511628211ull;
  };
  for (unsigned char c : a) mix(c);
  mix(0);
  for (unsigned char c : b) mix(c);
  return h;
}

void CheckName(const std::string& s, const char* what) {
  if (s.empty()) throw Error(ErrorKind::kUsage, fmt::format("the {} must not be empty", what));
  if (s.size() > kMaxNameBytes)
    throw Error(ErrorKind::kUsage,
                fmt::format("the {} '{}...' is longer than {} bytes", what, s.substr(0, 20), kMaxNameBytes));
  if (s.find('\0') != std::string::npos)
    throw Error(ErrorKind::kUsage, fmt::format("the {} contains a NUL character", what));
}

uint64_t RandomGeneration() {
  uint64_t g = 0;
  while (g == 0)
    if (getrandom(&g, sizeof g, 0) != sizeof g) g = static_cast<uint64_t>(getpid()) << 32 ^ 0x9e3779b9u;
  return g;
}

std::string Label(const std::string& ns, const std::string& var) {
  return fmt::format("variable '{}' of namespace '{}'", var, ns);
}

[[noreturn]] void Damaged(const std::string& segment, const std::string& why) {
  throw Error(ErrorKind::kProtocol, fmt::format("invalid page '{}': {}", segment, why));
}

PageInfo ReadInfo(const Segment& seg) {
  const std::string name = seg.path();
  const uint64_t size = seg.Size();
  if (size < kPageHeaderSize) Damaged(name, fmt::format("{} bytes, too few for a page header", size));
  std::vector<uint8_t> h(kPageHeaderSize);
  seg.Read(0, h.data(), h.size());
  if (std::memcmp(h.data() + poff::kMagic, kPageMagic, sizeof kPageMagic) != 0)
    Damaged(name, "bad magic (not a pyrmap page)");
  uint16_t major = Load<uint16_t>(h.data() + poff::kVersionMajor);
  if (major != kPageVersionMajor)
    Damaged(name, fmt::format("page version {}.{} is not understood by this pyrmap ({}.{})", major,
                              Load<uint16_t>(h.data() + poff::kVersionMinor), kPageVersionMajor,
                              kPageVersionMinor));
  PageInfo info;
  info.dir = seg.dir().path();
  info.segment = seg.name();
  info.owner_pid = Load<int64_t>(h.data() + poff::kOwnerPid);
  info.generation = Load<uint64_t>(h.data() + poff::kGeneration);
  info.is_list = Load<uint32_t>(h.data() + poff::kIsList) != 0;
  info.total_size = Load<uint64_t>(h.data() + poff::kTotalSize);
  const uint32_t count = Load<uint32_t>(h.data() + poff::kCount);
  const uint64_t table = Load<uint64_t>(h.data() + poff::kTableOffset);
  const uint64_t names_off = Load<uint64_t>(h.data() + poff::kNamesOffset);
  const uint64_t names_size = Load<uint64_t>(h.data() + poff::kNamesSize);
  if (info.total_size != size)
    Damaged(name, fmt::format("total_size {} differs from the segment's {} bytes", info.total_size, size));
  if (Load<uint32_t>(h.data() + poff::kReady) != 1)
    throw Error(ErrorKind::kProtocol,
                fmt::format("page '{}' is still being written (or its writer died: pyrmap gc removes "
                            "it once that process is gone)",
                            name));
  const char* ns = reinterpret_cast<const char*>(h.data() + poff::kNamespace);
  const char* var = reinterpret_cast<const char*>(h.data() + poff::kVariable);
  if (strnlen(ns, poff::kNameField) == poff::kNameField || strnlen(var, poff::kNameField) == poff::kNameField)
    Damaged(name, "namespace or variable name is not terminated");
  info.ns = ns;
  info.var = var;
  if (!info.is_list && count != 1) Damaged(name, fmt::format("a single array with count {}", count));
  uint64_t table_end;
  if (table < kPageHeaderSize || __builtin_add_overflow(table, uint64_t{count} * kArrayDescSize, &table_end) ||
      table_end > size)
    Damaged(name, fmt::format("a table of {} arrays at offset {} does not fit its {} bytes", count, table, size));
  uint64_t names_end;
  if (names_size > 0 && (__builtin_add_overflow(names_off, names_size, &names_end) || names_end > size))
    Damaged(name, "the names block does not fit");
  std::vector<uint8_t> t(static_cast<size_t>(uint64_t{count} * kArrayDescSize));
  if (!t.empty()) seg.Read(table, t.data(), t.size());
  std::string names(static_cast<size_t>(names_size), '\0');
  if (names_size > 0) seg.Read(names_off, names.data(), names.size());
  size_t pos = 0;
  for (uint32_t i = 0; i < count; ++i) {
    PageArray a;
    a.desc = DecodeArrayDesc(t.data() + i * kArrayDescSize, name, "array");
    a.tag = Load<uint32_t>(t.data() + i * kArrayDescSize + poff::kTag);
    CheckPayloadFits(a.desc, size, name);
    if (names_size > 0) {
      size_t end = names.find('\0', pos);
      if (end == std::string::npos) Damaged(name, "element names are not terminated");
      a.name = names.substr(pos, end - pos);
      pos = end + 1;
    }
    info.arrays.push_back(std::move(a));
  }
  return info;
}

}  // namespace

const uint8_t* OpenedPage::data(size_t i) const {
  const ArrayDesc& d = info.arrays.at(i).desc;
  if (!mapping || d.nbytes == 0) return nullptr;
  return mapping->data() + d.offset;
}

std::string PageName(const std::string& ns, const std::string& var) {
  return fmt::format("{}{}-ns-{:016x}", kNamePrefix, geteuid(), Fnv1a(ns, var));
}

bool IsPageName(const std::string& segment) {
  std::string start = kNamePrefix;
  if (segment.rfind(start, 0) != 0) return false;
  size_t dash = segment.find('-', start.size());
  return dash != std::string::npos && segment.compare(dash, 4, "-ns-") == 0;
}

PageInfo ReadPageInfo(const Segment& segment) { return ReadInfo(segment); }

PageInfo ReadPageInfo(const SegmentDir& dir, const std::string& segment) {
  return ReadInfo(Segment::Open(dir, segment, false));
}

int64_t PageOwner(const Segment& seg) {
  try {
    uint8_t h[poff::kOwnerPid + 8];
    if (seg.Size() < sizeof h) return 0;
    seg.Read(0, h, sizeof h);
    if (std::memcmp(h, kPageMagic, sizeof kPageMagic) != 0) return 0;
    return Load<int64_t>(h + poff::kOwnerPid);
  } catch (const Error&) {
    return 0;
  }
}

namespace {

// A page of this user whose recorded owner is dead (what may be reclaimed).
bool OwnerDead(const Segment& seg) {
  if (!seg.MadeFor(geteuid())) return false;
  int64_t owner = PageOwner(seg);
  return owner > 0 && !ProcessAlive(static_cast<pid_t>(owner));
}

// Makes way for registering (ns, var) under `name`: returns when the name is
// free (a dead owner's page was removed), throws when it is taken.
void ClearName(const SegmentDir& dir, const std::string& name, const std::string& ns,
               const std::string& var) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::optional<Segment> seg;
    try {
      seg.emplace(Segment::Open(dir, name, false));
    } catch (const Error& e) {
      if (e.sys_errno() == ENOENT) return;
      throw Error(e.kind(), fmt::format("cannot register {}: {}", Label(ns, var), e.what()))
          .with_errno(e.sys_errno());
    }
    if (OwnerDead(*seg)) {
      Segment::RemoveIf(dir, name, OwnerDead);
      continue;  // removed, or replaced meanwhile: look again
    }
    PageInfo old;
    try {
      old = ReadInfo(*seg);
    } catch (const Error& read_error) {
      throw Error(ErrorKind::kUsage,
                  fmt::format("cannot register {}: its segment '{}' exists but {}", Label(ns, var),
                              seg->path(), read_error.what()));
    }
    if (old.ns != ns || old.var != var)
      throw Error(ErrorKind::kUsage,
                  fmt::format("cannot register {}: its segment name '{}' is taken by {} (a hash "
                              "collision; choose another name)",
                              Label(ns, var), name, Label(old.ns, old.var)));
    throw Error(ErrorKind::kUsage,
                fmt::format("{} is already registered{}; release it first", Label(ns, var),
                            old.owner_pid == getpid() ? std::string(" by this session")
                                                      : fmt::format(" by process {}", old.owner_pid)));
  }
  throw Error(ErrorKind::kUsage,
              fmt::format("cannot register {}: its segment '{}' keeps being registered by other "
                          "processes",
                          Label(ns, var), dir.PathOf(name)));
}

}  // namespace

PageInfo CreatePage(const SegmentDir& dir, const std::string& ns, const std::string& var,
                    bool is_list, std::vector<PageArray> arrays,
                    const std::function<void(size_t, Segment&, uint64_t)>& fill) {
  CheckName(ns, "namespace");
  CheckName(var, "variable name");
  if (!is_list && arrays.size() != 1) throw Error(ErrorKind::kUsage, "a single-array page needs one array");
  if (arrays.size() > UINT32_MAX) throw Error(ErrorKind::kUsage, "too many list elements");
  const std::string name = PageName(ns, var);

  // Layout: header, table, names, payloads.
  PageInfo info;
  info.dir = dir.path();
  info.segment = name;
  info.ns = ns;
  info.var = var;
  info.owner_pid = getpid();
  info.generation = RandomGeneration();
  info.is_list = is_list;
  const uint64_t table = kPageHeaderSize;
  std::string names;
  bool any_name = false;
  for (const auto& a : arrays) {
    names += a.name;
    names.push_back('\0');
    any_name = any_name || !a.name.empty();
  }
  if (!any_name) names.clear();
  const uint64_t names_off = table + arrays.size() * kArrayDescSize;
  uint64_t end = Align(names_off + names.size());
  for (auto& a : arrays) {
    a.desc.offset = end;
    if (__builtin_add_overflow(end, a.desc.nbytes, &end))
      throw Error(ErrorKind::kUsage, "the variable is too large");
    end = Align(end);
  }
  info.arrays = arrays;
  info.total_size = end;

  std::vector<uint8_t> head(static_cast<size_t>(names_off) + names.size(), 0);
  std::memcpy(head.data() + poff::kMagic, kPageMagic, sizeof kPageMagic);
  Store<uint16_t>(head.data() + poff::kVersionMajor, kPageVersionMajor);
  Store<uint16_t>(head.data() + poff::kVersionMinor, kPageVersionMinor);
  Store<uint32_t>(head.data() + poff::kHeaderSize, static_cast<uint32_t>(kPageHeaderSize));
  Store<int64_t>(head.data() + poff::kOwnerPid, info.owner_pid);
  Store<uint64_t>(head.data() + poff::kGeneration, info.generation);
  Store<uint32_t>(head.data() + poff::kIsList, is_list ? 1u : 0u);
  Store<uint32_t>(head.data() + poff::kCount, static_cast<uint32_t>(arrays.size()));
  Store<uint64_t>(head.data() + poff::kTableOffset, table);
  Store<uint64_t>(head.data() + poff::kNamesOffset, names.empty() ? 0 : names_off);
  Store<uint64_t>(head.data() + poff::kNamesSize, names.size());
  Store<uint64_t>(head.data() + poff::kTotalSize, info.total_size);
  std::memcpy(head.data() + poff::kNamespace, ns.data(), ns.size());
  std::memcpy(head.data() + poff::kVariable, var.data(), var.size());
  for (size_t i = 0; i < arrays.size(); ++i) {
    uint8_t* d = head.data() + table + i * kArrayDescSize;
    EncodeArrayDesc(arrays[i].desc, d);
    Store<uint32_t>(d + poff::kTag, arrays[i].tag);
  }
  std::memcpy(head.data() + names_off, names.data(), names.size());

  // Refused before anything is copied; checked again when publishing.
  ClearName(dir, name, ns, var);
  const std::string tmp = NewCallPrefix() + "-page";
  SegmentGuard guard(dir);
  Segment seg = Segment::Create(dir, tmp, info.total_size);
  guard.Add(tmp);
  seg.Write(0, head.data(), head.size());
  for (size_t i = 0; i < arrays.size(); ++i)
    if (arrays[i].desc.nbytes > 0) fill(i, seg, arrays[i].desc.offset);
  uint32_t ready = 1;
  seg.Write(poff::kReady, &ready, sizeof ready);
  seg.MakeReadOnly();
  for (int attempt = 0;; ++attempt) {
    if (linkat(dir.fd(), tmp.c_str(), dir.fd(), name.c_str(), 0) == 0) break;
    int err = errno;
    if (err != EEXIST || attempt >= 2)
      throw SystemError(fmt::format("register {}: publish segment", Label(ns, var)), dir.PathOf(name),
                        "link", err);
    ClearName(dir, name, ns, var);  // taken meanwhile: refuse, or reclaim and retry
  }
  return info;  // the guard removes the temporary name
}

FoundPage FindPage(const SegmentDir& dir, const std::string& ns, const std::string& var) {
  CheckName(ns, "namespace");
  CheckName(var, "variable name");
  const std::string name = PageName(ns, var);
  std::optional<Segment> seg;
  try {
    seg.emplace(Segment::Open(dir, name, false));
  } catch (const Error& e) {
    if (e.sys_errno() == ENOENT)
      throw Error(ErrorKind::kNotRegistered,
                  fmt::format("{} is not registered{}", Label(ns, var),
                              dir.path() == kShmDir ? std::string()
                                                    : fmt::format(" in segment directory '{}'", dir.path())));
    throw;
  }
  PageInfo info = ReadInfo(*seg);
  if (info.ns != ns || info.var != var)
    throw Error(ErrorKind::kProtocol,
                fmt::format("segment '{}' holds {}, not {} (a hash collision)", seg->path(),
                            Label(info.ns, info.var), Label(ns, var)));
  return FoundPage{std::move(info), std::move(*seg)};
}

OpenedPage OpenPage(const SegmentDir& dir, const std::string& ns, const std::string& var,
                    MapMode mode) {
  FoundPage f = FindPage(dir, ns, var);
  OpenedPage p;
  p.info = std::move(f.info);
  p.mapping = std::make_shared<Mapping>(f.segment.Map(mode, 0, p.info.total_size));
  return p;
}

bool ReleasePage(const SegmentDir& dir, const std::string& ns, const std::string& var) {
  const std::string name = PageName(ns, var);
  PageInfo info;
  try {
    info = ReadPageInfo(dir, name);
  } catch (const Error& e) {
    if (e.sys_errno() == ENOENT) return false;
    throw;
  }
  if (info.ns != ns || info.var != var) return false;
  if (info.owner_pid != getpid() && ProcessAlive(static_cast<pid_t>(info.owner_pid)))
    throw Error(ErrorKind::kUsage,
                fmt::format("{} is owned by process {}; only it can release it", Label(ns, var),
                            info.owner_pid));
  // Only the page just read: not one registered again meanwhile.
  return Segment::RemoveIf(dir, name, [&](const Segment& seg) {
    if (!seg.MadeFor(geteuid())) return false;
    try {
      return ReadInfo(seg).generation == info.generation;
    } catch (const Error&) {
      return false;
    }
  });
}

}  // namespace pyrmap
