#include "table.h"

#include <cstring>

#include <fmt/format.h>

#include "bytes.h"
#include "error.h"

namespace pyrmap {

namespace {

[[noreturn]] void Reject(const std::string& where, const std::string& why) {
  throw Error(ErrorKind::kProtocol, fmt::format("invalid table in {}: {}", where, why));
}

uint64_t Align(uint64_t n) { return (n + kPayloadAlignment - 1) / kPayloadAlignment * kPayloadAlignment; }

const char* KindName(EntryKind k) {
  switch (k) {
    case EntryKind::kArray: return "array";
    case EntryKind::kString: return "string";
    case EntryKind::kCategory: return "category";
    case EntryKind::kDatetime: return "datetime";
    case EntryKind::kList: return "list";
    case EntryKind::kFrame: return "frame";
    case EntryKind::kNull: return "null";
  }
  return "?";
}

}  // namespace

uint32_t AddEntry(Table& t, TableEntry e) {
  if (t.entries.empty() != (e.parent == kNoIndex))
    throw Error(ErrorKind::kUsage, "a table has exactly one root entry, added first");
  if (e.parent != kNoIndex && e.parent >= t.entries.size())
    throw Error(ErrorKind::kUsage, "a table entry's parent must come before it");
  t.entries.push_back(std::move(e));
  const uint32_t i = static_cast<uint32_t>(t.entries.size() - 1);
  if (t.entries[i].parent != kNoIndex) t.entries[t.entries[i].parent].children.push_back(i);
  return i;
}

uint32_t AddBuffer(Table& t, Dtype dtype, std::vector<uint64_t> shape, Order order) {
  t.buffers.push_back(ArrayDesc::Make(dtype, std::move(shape), order));
  t.locations.push_back(kInBlock);
  return static_cast<uint32_t>(t.buffers.size() - 1);
}

void LayoutTable(Table& t) {
  if (t.entries.empty()) throw Error(ErrorKind::kUsage, "a table needs a root entry");
  for (TableEntry& e : t.entries) e.children.clear();
  uint64_t strings = 0;
  for (uint32_t i = 0; i < t.entries.size(); ++i) {
    TableEntry& e = t.entries[i];
    if (e.parent != kNoIndex) t.entries[e.parent].children.push_back(i);
    strings += e.name.size() + e.tz.size();
  }
  if (strings > UINT32_MAX)
    throw Error(ErrorKind::kUsage, "the names of a table exceed 4 GiB");
  const uint64_t buffers_offset = kTableHeaderSize + kTableEntrySize * t.entries.size();
  const uint64_t strings_offset = buffers_offset + kArrayDescSize * t.buffers.size();
  t.directory_size = Align(strings_offset + strings);
  uint64_t pos = t.directory_size;
  t.locations.resize(t.buffers.size(), kInBlock);
  for (size_t i = 0; i < t.buffers.size(); ++i) {
    ArrayDesc& d = t.buffers[i];
    if (t.locations[i] != kInBlock) continue;
    d.offset = pos;
    if (__builtin_add_overflow(pos, Align(d.nbytes), &pos))
      throw Error(ErrorKind::kUsage, "a table's size overflows 64 bits");
  }
  t.size = pos;
}

std::vector<uint8_t> EncodeTableDirectory(const Table& t) {
  std::vector<uint8_t> out(t.directory_size, 0);
  const uint64_t buffers_offset = kTableHeaderSize + kTableEntrySize * t.entries.size();
  const uint64_t strings_offset = buffers_offset + kArrayDescSize * t.buffers.size();
  uint8_t* p = out.data();
  std::memcpy(p, kTableMagic, 8);
  Store<uint32_t>(p + 8, kTableVersion);
  Store<uint32_t>(p + 12, static_cast<uint32_t>(t.entries.size()));
  Store<uint32_t>(p + 16, static_cast<uint32_t>(t.buffers.size()));
  Store<uint64_t>(p + 24, kTableHeaderSize);
  Store<uint64_t>(p + 32, buffers_offset);
  Store<uint64_t>(p + 40, strings_offset);
  uint64_t spos = 0;
  for (size_t i = 0; i < t.entries.size(); ++i) {
    const TableEntry& e = t.entries[i];
    uint8_t* q = p + kTableHeaderSize + kTableEntrySize * i;
    Store<uint32_t>(q + 0, static_cast<uint32_t>(e.kind));
    Store<uint32_t>(q + 4, e.parent);
    Store<uint32_t>(q + 8, static_cast<uint32_t>(e.role));
    Store<uint32_t>(q + 12, e.flags);
    Store<uint64_t>(q + 16, e.length);
    Store<uint32_t>(q + 24, e.buffer);
    Store<uint32_t>(q + 28, e.mask);
    Store<uint32_t>(q + 32, static_cast<uint32_t>(spos));
    Store<uint32_t>(q + 36, static_cast<uint32_t>(e.name.size()));
    std::memcpy(p + strings_offset + spos, e.name.data(), e.name.size());
    spos += e.name.size();
    Store<uint32_t>(q + 40, static_cast<uint32_t>(spos));
    Store<uint32_t>(q + 44, static_cast<uint32_t>(e.tz.size()));
    std::memcpy(p + strings_offset + spos, e.tz.data(), e.tz.size());
    spos += e.tz.size();
    Store<uint32_t>(q + 48, e.unit);
    Store<uint32_t>(q + 52, static_cast<uint32_t>(e.children.size()));
  }
  for (size_t i = 0; i < t.buffers.size(); ++i) {
    EncodeArrayDesc(t.buffers[i], p + buffers_offset + kArrayDescSize * i);
    Store<uint32_t>(p + buffers_offset + kArrayDescSize * i + 12,
                    i < t.locations.size() ? t.locations[i] : kInBlock);
  }
  Store<uint64_t>(p + 48, spos);
  Store<uint64_t>(p + 56, t.size);
  return out;
}

std::string EntryPath(const Table& t, uint32_t i) {
  std::string path;
  while (i != kNoIndex && i < t.entries.size()) {
    const TableEntry& e = t.entries[i];
    const uint32_t parent = e.parent;
    if (parent == kNoIndex) break;
    const TableEntry& pe = t.entries[parent];
    std::string part;
    if (e.role == EntryRole::kNames)
      part = pe.kind == EntryKind::kFrame ? "the row names" : "the names";
    else if (e.role == EntryRole::kLevels)
      part = "the levels";
    else if (pe.kind == EntryKind::kFrame)
      part = fmt::format("column '{}'", e.name);
    else if (pe.flags & kEntryNamed)
      part = fmt::format("element '{}'", e.name);
    else {
      size_t k = 0;
      for (uint32_t c : pe.children) {
        if (c == i) break;
        if (t.entries[c].role == EntryRole::kElement) ++k;
      }
      part = fmt::format("element {}", k + 1);
    }
    path += (path.empty() ? "" : " of ") + part;
    i = parent;
  }
  return path.empty() ? "the table's root" : path;
}

bool RefersToInput(const Table& t) {
  for (uint32_t l : t.locations)
    if (l == kInInput) return true;
  return false;
}

Table DecodeTable(const uint8_t* p, uint64_t size, const std::string& where,
                  std::optional<uint64_t> input_size) {
  if (size < kTableHeaderSize)
    Reject(where, fmt::format("{} bytes, too few for a table header", size));
  if (std::memcmp(p, kTableMagic, 8) != 0) Reject(where, "bad magic (not a pyrmap table)");
  const uint32_t version = Load<uint32_t>(p + 8);
  if (version != kTableVersion)
    Reject(where, fmt::format("table version {} is not the {} this pyrmap reads", version, kTableVersion));
  const uint32_t nentries = Load<uint32_t>(p + 12), nbuffers = Load<uint32_t>(p + 16);
  const uint64_t entries_offset = Load<uint64_t>(p + 24), buffers_offset = Load<uint64_t>(p + 32);
  const uint64_t strings_offset = Load<uint64_t>(p + 40), strings_size = Load<uint64_t>(p + 48);
  const uint64_t block_size = Load<uint64_t>(p + 56);
  if (nentries == 0 || nentries > kMaxTableEntries || nbuffers > kMaxTableEntries * 3)
    Reject(where, fmt::format("{} entries and {} buffers", nentries, nbuffers));
  if (entries_offset != kTableHeaderSize ||
      buffers_offset != entries_offset + uint64_t{kTableEntrySize} * nentries ||
      strings_offset != buffers_offset + uint64_t{kArrayDescSize} * nbuffers)
    Reject(where, "the directory's offsets do not follow its counts");
  if (block_size > size)
    Reject(where, fmt::format("block_size {} exceeds the {} bytes it was given", block_size, size));
  uint64_t strings_end;
  if (__builtin_add_overflow(strings_offset, strings_size, &strings_end) || strings_end > block_size)
    Reject(where, "the strings area runs past the block");
  Table t;
  t.size = block_size;
  t.directory_size = Align(strings_end);
  t.buffers.reserve(nbuffers);
  for (uint32_t i = 0; i < nbuffers; ++i) {
    const std::string what = fmt::format("buffer {}", i);
    ArrayDesc d = DecodeArrayDesc(p + buffers_offset + kArrayDescSize * i, where, what.c_str());
    if (d.dtype == Dtype::kNone) Reject(where, fmt::format("buffer {} has no dtype", i));
    const uint32_t location = Load<uint32_t>(p + buffers_offset + kArrayDescSize * i + 12);
    uint64_t limit = block_size, low = strings_end;
    if (location == kInInput) {
      if (!input_size)
        Reject(where, fmt::format("buffer {} lies in the input block, which this reader does not have", i));
      limit = *input_size;
      low = 0;
    } else if (location != kInBlock) {
      Reject(where, fmt::format("buffer {} location {} is unknown", i, location));
    }
    uint64_t end;
    if (__builtin_add_overflow(d.offset, d.nbytes, &end) || end > limit || d.offset < low)
      Reject(where, fmt::format("buffer {} ({} at offset {}) lies outside the block's payload area", i,
                                d.Describe(), d.offset));
    t.buffers.push_back(std::move(d));
    t.locations.push_back(location);
  }
  auto str = [&](uint32_t off, uint32_t len, uint32_t i, const char* what) {
    if (uint64_t{off} + len > strings_size)
      Reject(where, fmt::format("entry {}'s {} lies outside the strings area", i, what));
    return std::string(reinterpret_cast<const char*>(p + strings_offset + off), len);
  };
  t.entries.reserve(nentries);
  for (uint32_t i = 0; i < nentries; ++i) {
    const uint8_t* q = p + entries_offset + kTableEntrySize * i;
    TableEntry e;
    const uint32_t kind = Load<uint32_t>(q + 0);
    if (kind < 1 || kind > kMaxEntryKind) Reject(where, fmt::format("entry {} has unknown kind {}", i, kind));
    e.kind = static_cast<EntryKind>(kind);
    e.parent = Load<uint32_t>(q + 4);
    if ((i == 0) != (e.parent == kNoIndex) || (i > 0 && e.parent >= i))
      Reject(where, fmt::format("entry {}'s parent {} does not come before it", i, e.parent));
    const uint32_t role = Load<uint32_t>(q + 8);
    if (role > 2) Reject(where, fmt::format("entry {} has unknown role {}", i, role));
    e.role = static_cast<EntryRole>(role);
    e.flags = Load<uint32_t>(q + 12);
    e.length = Load<uint64_t>(q + 16);
    e.buffer = Load<uint32_t>(q + 24);
    e.mask = Load<uint32_t>(q + 28);
    e.name = str(Load<uint32_t>(q + 32), Load<uint32_t>(q + 36), i, "name");
    e.tz = str(Load<uint32_t>(q + 40), Load<uint32_t>(q + 44), i, "time zone");
    e.unit = Load<uint32_t>(q + 48);
    if (e.parent != kNoIndex) t.entries[e.parent].children.push_back(i);
    t.entries.push_back(std::move(e));  // (children counts are checked below)
  }
  // Children counts as recorded, and each kind's buffers.
  for (uint32_t i = 0; i < nentries; ++i) {
    const TableEntry& e = t.entries[i];
    const uint32_t recorded = Load<uint32_t>(p + entries_offset + kTableEntrySize * i + 52);
    const std::string who = fmt::format("entry {} ({}, {})", i, KindName(e.kind), EntryPath(t, i));
    if (recorded != e.children.size())
      Reject(where, fmt::format("{} records {} children but has {}", who, recorded, e.children.size()));
    auto need = [&](uint32_t b, Dtype dtype, const char* what) -> const ArrayDesc& {
      if (b >= t.buffers.size()) Reject(where, fmt::format("{} has no {} buffer", who, what));
      const ArrayDesc& d = t.buffers[b];
      if (dtype != Dtype::kNone && d.dtype != dtype)
        Reject(where, fmt::format("{}'s {} is {}, not {}", who, what, d.Describe(), DtypeName(dtype)));
      return d;
    };
    const bool masked = e.mask != kNoIndex;
    if (masked != ((e.flags & kEntryMasked) != 0))
      Reject(where, fmt::format("{}: its mask flag and mask buffer disagree", who));
    if (masked) {
      const ArrayDesc& m = need(e.mask, Dtype::kBool, "mask");
      if (m.count != e.length) Reject(where, fmt::format("{}'s mask has {} elements for {}", who, m.count, e.length));
    }
    uint32_t names = 0, levels = 0;
    for (uint32_t c : e.children) {
      const TableEntry& ce = t.entries[c];
      if (ce.role == EntryRole::kNames) {
        ++names;
        const bool ok = ce.kind == EntryKind::kString ||
                        (e.kind == EntryKind::kFrame && ce.kind == EntryKind::kArray);
        if (!ok || (e.kind != EntryKind::kFrame && e.kind != EntryKind::kArray))
          Reject(where, fmt::format("{} has names of kind {}", who, KindName(ce.kind)));
      } else if (ce.role == EntryRole::kLevels) {
        ++levels;
        if (e.kind != EntryKind::kCategory || ce.kind != EntryKind::kString || ce.mask != kNoIndex)
          Reject(where, fmt::format("{} has levels it cannot have", who));
      } else if (e.kind != EntryKind::kList && e.kind != EntryKind::kFrame) {
        Reject(where, fmt::format("{} cannot have elements", who));
      }
    }
    if (names > 1 || levels > 1) Reject(where, fmt::format("{} has more than one set of names or levels", who));
    switch (e.kind) {
      case EntryKind::kArray: {
        const ArrayDesc& d = need(e.buffer, Dtype::kNone, "data");
        if (d.count != e.length) Reject(where, fmt::format("{}: data of {} elements for length {}", who, d.count, e.length));
        if ((e.flags & kEntryInteger64) && d.dtype != Dtype::kInt64)
          Reject(where, fmt::format("{} is marked integer64 but holds {}", who, DtypeName(d.dtype)));
        break;
      }
      case EntryKind::kString: {
        const ArrayDesc& o = need(e.buffer, Dtype::kInt64, "offsets");
        if (e.buffer + 1 == kNoIndex) Reject(where, fmt::format("{} has no bytes buffer", who));
        const ArrayDesc& b = need(e.buffer + 1, Dtype::kUInt8, "bytes");
        if (o.shape.size() != 1 || o.count != e.length + 1 || b.shape.size() != 1)
          Reject(where, fmt::format("{}: {} offsets for {} strings", who, o.count, e.length));
        break;
      }
      case EntryKind::kCategory: {
        if (e.unit != 1 && e.unit != 2 && e.unit != 4)
          Reject(where, fmt::format("{}: code width {} is not 1, 2 or 4", who, e.unit));
        const ArrayDesc& c = need(e.buffer, Dtype::kUInt8, "codes");
        if (c.count != e.length * e.unit)
          Reject(where, fmt::format("{}: {} bytes of codes for {} codes of {} bytes", who, c.count, e.length, e.unit));
        if (levels != 1) Reject(where, fmt::format("{} has no levels", who));
        break;
      }
      case EntryKind::kDatetime: {
        if (e.unit > static_cast<uint32_t>(TimeUnit::kNano))
          Reject(where, fmt::format("{}: time unit {} is unknown", who, e.unit));
        const ArrayDesc& d = need(e.buffer, Dtype::kInt64, "data");
        if (d.count != e.length) Reject(where, fmt::format("{}: data of {} elements for length {}", who, d.count, e.length));
        break;
      }
      case EntryKind::kList:
      case EntryKind::kFrame:
      case EntryKind::kNull:
        if (e.buffer != kNoIndex || masked) Reject(where, fmt::format("{} cannot have buffers", who));
        break;
    }
    if (e.kind == EntryKind::kFrame) {
      for (uint32_t c : e.children) {
        const TableEntry& ce = t.entries[c];
        const bool vector = ce.kind == EntryKind::kArray || ce.kind == EntryKind::kString ||
                            ce.kind == EntryKind::kCategory || ce.kind == EntryKind::kDatetime;
        if (!vector || ce.length != e.length ||
            (ce.kind == EntryKind::kArray && t.buffers[ce.buffer].shape.size() != 1))
          Reject(where, fmt::format("{}: {} is not a column of {} rows", who, EntryPath(t, c), e.length));
      }
    }
  }
  return t;
}

Input TableInput(Table t, std::vector<BufferFill> fills) {
  if (fills.size() != t.buffers.size())
    throw Error(ErrorKind::kUsage, "a table input needs one fill per buffer");
  Input in;
  in.kind = kKindTable;
  in.desc = ArrayDesc::Make(Dtype::kUInt8, {t.size});
  auto table = std::make_shared<const Table>(std::move(t));
  auto directory = std::make_shared<const std::vector<uint8_t>>(EncodeTableDirectory(*table));
  auto f = std::make_shared<const std::vector<BufferFill>>(std::move(fills));
  in.fill = [table, directory, f](Segment& seg, void (*check)(void*), void* arg) {
    seg.Write(0, directory->data(), directory->size(), check, arg);
    for (size_t i = 0; i < f->size(); ++i) {
      if (table->buffers[i].nbytes == 0) continue;
      (*f)[i](seg, table->buffers[i].offset, check, arg);
    }
  };
  return in;
}

BufferFill SourceFill(InputSource src, Dtype to, uint64_t count) {
  return [src = std::move(src), to, count](Segment& seg, uint64_t offset, void (*check)(void*), void* arg) {
    FillSource(src, to, count, seg, offset, check, arg);
  };
}

}  // namespace pyrmap
