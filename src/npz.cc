#include "npz.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <set>

#include <fmt/format.h>

#include "bytes.h"
#include "error.h"
#include "npy.h"
#include "table.h"

namespace pyrmap {

namespace {

[[noreturn]] void Bad(const std::string& where, const std::string& msg) {
  throw Error(ErrorKind::kUsage, fmt::format("{}: {}", where, msg));
}

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kEnd64Sig = 0x06064b50;
constexpr uint32_t kLocator64Sig = 0x07064b50;
constexpr size_t kEndSize = 22;
constexpr size_t kLocator64Size = 20;
constexpr size_t kEnd64Size = 56;
constexpr size_t kLocalSize = 30;
constexpr size_t kCentralSize = 46;
constexpr uint16_t kZip64Version = 45;
constexpr uint16_t kDosDate1980 = 0x21;  // 1980-01-01, zip's earliest date
constexpr uint16_t kUtf8Names = 1u << 11;  // general purpose flag: names are UTF-8

const std::array<uint32_t, 256>& CrcTable() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

// The zip64 extra field's values, for the fields of the fixed header that
// hold 0xFFFFFFFF (in the order zip defines: size, compressed size, offset).
void ApplyZip64(const std::vector<uint8_t>& extra, std::array<uint64_t*, 3> fields, const std::string& where) {
  size_t p = 0;
  while (p + 4 <= extra.size()) {
    const uint16_t id = Load<uint16_t>(extra.data() + p);
    const uint16_t len = Load<uint16_t>(extra.data() + p + 2);
    if (p + 4 + len > extra.size()) break;
    if (id == 1) {
      size_t q = p + 4;
      for (uint64_t* f : fields) {
        if (*f != 0xFFFFFFFFu) continue;
        if (q + 8 > p + 4 + len) Bad(where, "a zip64 extra field is too short");
        *f = Load<uint64_t>(extra.data() + q);
        q += 8;
      }
      return;
    }
    p += 4 + len;
  }
  for (uint64_t* f : fields)
    if (*f == 0xFFFFFFFFu) Bad(where, "a member's size or offset needs a zip64 field, which is missing");
}

}  // namespace

uint32_t Crc32(uint32_t crc, const void* data, uint64_t n) {
  const auto& t = CrcTable();
  const auto* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (uint64_t i = 0; i < n; ++i) crc = t[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

bool IsZip(const uint8_t* data, size_t size) {
  return size >= 4 && (Load<uint32_t>(data) == kLocalSig || Load<uint32_t>(data) == kEndSig);
}

std::vector<NpzMember> ReadNpzDirectory(const ReadAt& read, uint64_t size, const std::string& where) {
  if (size < kEndSize) Bad(where, "not a zip archive (.npz): too short");
  // The end record is the last 22 bytes, unless the archive has a comment
  // (up to 65535 bytes after it).
  const uint64_t tail_size = std::min<uint64_t>(size, kEndSize + 0xFFFF);
  std::vector<uint8_t> tail(tail_size);
  read(tail.data(), tail_size, size - tail_size);
  uint64_t end_at = UINT64_MAX;
  for (uint64_t i = tail_size - kEndSize + 1; i-- > 0;) {
    if (Load<uint32_t>(tail.data() + i) == kEndSig &&
        i + kEndSize + Load<uint16_t>(tail.data() + i + 20) == tail_size) {
      end_at = i;
      break;
    }
  }
  if (end_at == UINT64_MAX) Bad(where, "not a zip archive (.npz): no end-of-directory record");
  const uint8_t* end = tail.data() + end_at;
  uint64_t entries = Load<uint16_t>(end + 10);
  uint64_t cd_size = Load<uint32_t>(end + 12);
  uint64_t cd_offset = Load<uint32_t>(end + 16);
  const uint64_t end_pos = size - tail_size + end_at;
  if (end_pos >= kLocator64Size) {
    uint8_t loc[kLocator64Size];
    read(loc, sizeof loc, end_pos - kLocator64Size);
    if (Load<uint32_t>(loc) == kLocator64Sig) {
      const uint64_t at = Load<uint64_t>(loc + 8);
      if (at > size || size - at < kEnd64Size) Bad(where, "its zip64 end record lies outside the file");
      uint8_t e64[kEnd64Size];
      read(e64, sizeof e64, at);
      if (Load<uint32_t>(e64) != kEnd64Sig) Bad(where, "its zip64 end record is malformed");
      entries = Load<uint64_t>(e64 + 32);
      cd_size = Load<uint64_t>(e64 + 40);
      cd_offset = Load<uint64_t>(e64 + 48);
    }
  }
  if (Load<uint16_t>(end + 4) != 0 || Load<uint16_t>(end + 6) != 0)
    Bad(where, "a zip archive spanning several disks is not supported");
  if (cd_offset > size || cd_size > size - cd_offset || entries > cd_size / kCentralSize)
    Bad(where, "its zip central directory lies outside the file");
  std::vector<uint8_t> cd(cd_size);
  read(cd.data(), cd_size, cd_offset);
  std::vector<NpzMember> members;
  std::set<std::string> seen;
  uint64_t p = 0;
  for (uint64_t k = 0; k < entries; ++k) {
    if (p + kCentralSize > cd_size || Load<uint32_t>(cd.data() + p) != kCentralSig)
      Bad(where, fmt::format("zip directory entry {} is malformed", k + 1));
    const uint8_t* c = cd.data() + p;
    const uint16_t flags = Load<uint16_t>(c + 8);
    const uint16_t method = Load<uint16_t>(c + 10);
    uint64_t csize = Load<uint32_t>(c + 20);
    uint64_t usize = Load<uint32_t>(c + 24);
    const uint16_t name_len = Load<uint16_t>(c + 28);
    const uint16_t extra_len = Load<uint16_t>(c + 30);
    const uint16_t comment_len = Load<uint16_t>(c + 32);
    uint64_t local = Load<uint32_t>(c + 42);
    if (p + kCentralSize + name_len + extra_len + comment_len > cd_size)
      Bad(where, fmt::format("zip directory entry {} is malformed", k + 1));
    const std::string file(reinterpret_cast<const char*>(c + kCentralSize), name_len);
    std::vector<uint8_t> extra(c + kCentralSize + name_len, c + kCentralSize + name_len + extra_len);
    p += kCentralSize + name_len + extra_len + comment_len;
    const std::string member = fmt::format("member '{}'", file);
    ApplyZip64(extra, {&usize, &csize, &local}, where + " " + member);
    if (flags & 1) Bad(where, member + " is encrypted");
    if (method != 0)
      Bad(where, fmt::format("{} is compressed (zip method {}), as np.savez_compressed writes; "
                             "give an archive written by np.savez",
                             member, method));
    if (csize != usize) Bad(where, member + " has different stored and actual sizes");
    if (file.size() < 4 || file.compare(file.size() - 4, 4, ".npy") != 0)
      Bad(where, member + " is not an .npy file");
    NpzMember m;
    m.name = file.substr(0, file.size() - 4);
    if (!seen.insert(m.name).second) Bad(where, member + " appears twice");
    if (local > size || size - local < kLocalSize) Bad(where, member + ": its local header lies outside the file");
    uint8_t lh[kLocalSize];
    read(lh, sizeof lh, local);
    if (Load<uint32_t>(lh) != kLocalSig) Bad(where, member + ": its local header is malformed");
    const uint64_t start = local + kLocalSize + Load<uint16_t>(lh + 26) + Load<uint16_t>(lh + 28);
    if (start > size || size - start < usize) Bad(where, member + " extends beyond the end of the file");
    const std::string mwhere = where + " " + member;
    uint8_t pre[16] = {};
    const uint64_t pre_size = std::min<uint64_t>(usize, sizeof pre);
    read(pre, pre_size, start);
    const uint64_t hlen = NpyHeaderLength(pre, pre_size, mwhere);
    if (hlen == 0) Bad(mwhere, "not a .npy file (no magic)");
    if (hlen > usize) Bad(mwhere, "ends inside its .npy header");
    std::vector<uint8_t> head(hlen);
    read(head.data(), hlen, start);
    NpyHeader h = ParseNpyHeader(head.data(), head.size(), mwhere);
    if (usize - h.payload_offset != h.desc.nbytes)
      Bad(mwhere, fmt::format(".npy payload holds {} bytes, its header describes {}", usize - h.payload_offset,
                              h.desc.nbytes));
    m.desc = h.desc;
    m.payload_offset = start + h.payload_offset;
    members.push_back(std::move(m));
  }
  return members;
}

Input NpzInput(const std::vector<NpzMember>& members, const InputSource& src, const std::string& where) {
  Table t;
  TableEntry root;
  root.kind = EntryKind::kList;
  root.flags = kEntryNamed;
  root.length = members.size();
  AddEntry(t, root);
  std::vector<BufferFill> fills;
  for (const NpzMember& m : members) {
    TableEntry e;
    e.kind = EntryKind::kArray;
    e.parent = 0;
    e.name = m.name;
    e.length = m.desc.count;
    e.buffer = AddBuffer(t, m.desc.dtype, m.desc.shape, m.desc.order);
    AddEntry(t, std::move(e));
    InputSource s = src;
    s.rules.name = fmt::format("{}['{}']", where, m.name);
    if (s.fd)
      s.file_offset += m.payload_offset;
    else
      s.data += m.payload_offset;
    s.dtype = m.desc.dtype;
    fills.push_back(SourceFill(std::move(s), m.desc.dtype, m.desc.count));
  }
  LayoutTable(t);
  return TableInput(std::move(t), std::move(fills));
}

void WriteNpz(const std::vector<NpzArray>& arrays, const std::function<void(const void*, uint64_t)>& write) {
  std::set<std::string> seen;
  for (const NpzArray& a : arrays) {
    if (a.name.empty()) throw Error(ErrorKind::kUsage, "an .npz member needs a name");
    if (!seen.insert(a.name).second)
      throw Error(ErrorKind::kUsage, fmt::format("two results are named '{}', which an .npz file cannot hold", a.name));
    if (a.name.size() + 4 > 0xFFFF)
      throw Error(ErrorKind::kUsage, fmt::format("the name '{}...' is too long for an .npz member", a.name.substr(0, 40)));
  }
  uint64_t pos = 0;
  auto put = [&](const void* p, uint64_t n) {
    write(p, n);
    pos += n;
  };
  std::vector<uint8_t> central;
  for (const NpzArray& a : arrays) {
    const std::string file = a.name + ".npy";
    ArrayDesc d = a.desc;
    d.offset = 0;
    const std::string npy = FormatNpyHeader(d);
    const uint64_t size = npy.size() + d.nbytes;
    const uint32_t crc = Crc32(Crc32(0, npy.data(), npy.size()), a.data, d.nbytes);
    const uint64_t local_at = pos;
    std::vector<uint8_t> lh(kLocalSize + file.size() + 20);
    Store<uint32_t>(&lh[0], kLocalSig);
    Store<uint16_t>(&lh[4], kZip64Version);
    Store<uint16_t>(&lh[6], kUtf8Names);
    Store<uint16_t>(&lh[12], kDosDate1980);
    Store<uint32_t>(&lh[14], crc);
    Store<uint32_t>(&lh[18], 0xFFFFFFFFu);
    Store<uint32_t>(&lh[22], 0xFFFFFFFFu);
    Store<uint16_t>(&lh[26], static_cast<uint16_t>(file.size()));
    Store<uint16_t>(&lh[28], 20);
    std::memcpy(&lh[kLocalSize], file.data(), file.size());
    uint8_t* x = &lh[kLocalSize + file.size()];
    Store<uint16_t>(x, 1);
    Store<uint16_t>(x + 2, 16);
    Store<uint64_t>(x + 4, size);
    Store<uint64_t>(x + 12, size);
    put(lh.data(), lh.size());
    put(npy.data(), npy.size());
    if (d.nbytes) put(a.data, d.nbytes);
    std::vector<uint8_t> ch(kCentralSize + file.size() + 28);
    Store<uint32_t>(&ch[0], kCentralSig);
    Store<uint16_t>(&ch[4], kZip64Version);
    Store<uint16_t>(&ch[6], kZip64Version);
    Store<uint16_t>(&ch[8], kUtf8Names);
    Store<uint16_t>(&ch[14], kDosDate1980);
    Store<uint32_t>(&ch[16], crc);
    Store<uint32_t>(&ch[20], 0xFFFFFFFFu);
    Store<uint32_t>(&ch[24], 0xFFFFFFFFu);
    Store<uint16_t>(&ch[28], static_cast<uint16_t>(file.size()));
    Store<uint16_t>(&ch[30], 28);
    Store<uint32_t>(&ch[42], 0xFFFFFFFFu);
    std::memcpy(&ch[kCentralSize], file.data(), file.size());
    x = &ch[kCentralSize + file.size()];
    Store<uint16_t>(x, 1);
    Store<uint16_t>(x + 2, 24);
    Store<uint64_t>(x + 4, size);
    Store<uint64_t>(x + 12, size);
    Store<uint64_t>(x + 20, local_at);
    central.insert(central.end(), ch.begin(), ch.end());
  }
  const uint64_t cd_at = pos;
  put(central.data(), central.size());
  const uint64_t end64_at = pos;
  uint8_t e64[kEnd64Size] = {};
  Store<uint32_t>(e64, kEnd64Sig);
  Store<uint64_t>(e64 + 4, kEnd64Size - 12);
  Store<uint16_t>(e64 + 12, kZip64Version);
  Store<uint16_t>(e64 + 14, kZip64Version);
  Store<uint64_t>(e64 + 24, arrays.size());
  Store<uint64_t>(e64 + 32, arrays.size());
  Store<uint64_t>(e64 + 40, central.size());
  Store<uint64_t>(e64 + 48, cd_at);
  put(e64, sizeof e64);
  uint8_t loc[kLocator64Size] = {};
  Store<uint32_t>(loc, kLocator64Sig);
  Store<uint64_t>(loc + 8, end64_at);
  Store<uint32_t>(loc + 16, 1);
  put(loc, sizeof loc);
  uint8_t end[kEndSize] = {};
  Store<uint32_t>(end, kEndSig);
  Store<uint16_t>(end + 8, 0xFFFF);
  Store<uint16_t>(end + 10, 0xFFFF);
  Store<uint32_t>(end + 12, 0xFFFFFFFFu);
  Store<uint32_t>(end + 16, 0xFFFFFFFFu);
  put(end, sizeof end);
}

}  // namespace pyrmap
