// table.h — tables: several named arrays, data frames, strings, categories
// and date-times in one block of bytes.
//
// This file is the reference for the block's layout (docs/protocol.md,
// "Tables", has the same tables in prose); python/pyrmap/_table.py is its
// twin, and tests/golden/table_*.bin pin both to the same bytes. A block is
// carried wherever one array can be (a call's data or result segment, a pool
// worker's area, a passed segment): the exchange header describes it as
// uint8[n] with kind kKindTable (header.h). Every payload lies in the block
// at a multiple of 64 from its start, so that numeric columns are zero-copy
// views on both sides.
//
// All integers are little-endian. Offsets are from the start of the block.
//
//   Block header (64 bytes)
//   offset size type    field
//        0    8 u8[8]   magic 89 50 59 52 54 41 42 0A ("\x89PYRTAB\n")
//        8    4 u32     version (1)
//       12    4 u32     entries (>= 1; entry 0 is the root)
//       16    4 u32     buffers
//       20    4 -       reserved (0)
//       24    8 u64     entries_offset (64)
//       32    8 u64     buffers_offset (entries_offset + 64 * entries)
//       40    8 u64     strings_offset (buffers_offset + 192 * buffers)
//       48    8 u64     strings_size (names and time zones, UTF-8)
//       56    8 u64     block_size
//
//   Entry (64 bytes; every entry comes after its parent, children in order)
//        0    4 u32     kind (EntryKind)
//        4    4 u32     parent entry (kNoIndex for the root)
//        8    4 u32     role (EntryRole)
//       12    4 u32     flags (kEntry*)
//       16    8 u64     length: elements, or a frame's rows, or a list's
//                       elements
//       24    4 u32     buffer: the first payload buffer (kNoIndex: none)
//       28    4 u32     mask buffer (kNoIndex: none)
//       32    4 u32     name offset in the strings area
//       36    4 u32     name length
//       40    4 u32     time zone offset in the strings area
//       44    4 u32     time zone length (0: naive)
//       48    4 u32     unit (datetime: TimeUnit) or code width (category:
//                       1, 2 or 4 bytes)
//       52    4 u32     children
//       56    8 -       reserved (0)
//
//   Buffers: one ArrayDesc (header.h, 192 bytes) each, offset from the
//   block's start. In a result's table the u32 at +12 (reserved in the
//   header) says where the buffer lies: 0 in this block, 1 in the call's
//   input block, at that offset of it (a column the script returned
//   unchanged; only when the caller allowed it with header flag bit 5).
//
// Kinds and their buffers:
//   array     data (any dtype and shape); mask: bool per element, true =
//             missing. Under the mask, float64, int32 and int64 data hold
//             R's missing values (NA_real_'s bits, -2^31, -2^63).
//   string    data: int64 offsets (length + 1, from 0, non-decreasing);
//             buffer + 1: uint8 UTF-8 bytes; mask: missing strings.
//   category  data: codes, signed little-endian of `unit` bytes (1, 2, 4)
//             in a uint8 buffer, 0-based, -1 missing; levels: its child of
//             role kLevels (a string entry without a mask).
//   datetime  data: int64 `unit`s since 1970-01-01 00:00 UTC, INT64_MIN
//             missing; the time zone names an IANA zone ("": naive). R
//             reads a naive one as UTC, unless flag kEntryNoTzone (an R
//             POSIXct without a tzone attribute) or kEntryLocalTime (tzone
//             "", R's local time) says how it came from R.
//   list      its children are its elements (named: flag kEntryNamed).
//   frame     children of role kElement are its columns (length = rows);
//             one child of role kNames its row names (a string entry or an
//             int32 array); none: automatic row names.
//   null      nothing.
// An array may have one child of role kNames (a string entry): element
// names.
//
// Thread safety: plain values; no shared state.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "header.h"
#include "input.h"

namespace pyrmap {

inline constexpr uint8_t kTableMagic[8] = {0x89, 'P', 'Y', 'R', 'T', 'A', 'B', '\n'};
inline constexpr uint32_t kTableVersion = 1;
inline constexpr size_t kTableHeaderSize = 64;
inline constexpr size_t kTableEntrySize = 64;
inline constexpr uint32_t kNoIndex = 0xFFFFFFFFu;
// Bounds a reader enforces before it allocates anything.
inline constexpr uint32_t kMaxTableEntries = 1u << 24;
// Where a buffer lies.
inline constexpr uint32_t kInBlock = 0;
inline constexpr uint32_t kInInput = 1;

enum class EntryKind : uint32_t {
  kArray = 1,
  kString = 2,
  kCategory = 3,
  kDatetime = 4,
  kList = 5,
  kFrame = 6,
  kNull = 7,
};
inline constexpr uint32_t kMaxEntryKind = 7;

enum class EntryRole : uint32_t { kElement = 0, kNames = 1, kLevels = 2 };

inline constexpr uint32_t kEntryMasked = 1u << 0;
inline constexpr uint32_t kEntryNamed = 1u << 1;
inline constexpr uint32_t kEntryOrdered = 1u << 2;
inline constexpr uint32_t kEntryInteger64 = 1u << 3;
inline constexpr uint32_t kEntryNoTzone = 1u << 4;
inline constexpr uint32_t kEntryLocalTime = 1u << 5;

enum class TimeUnit : uint32_t { kDay = 0, kSecond = 1, kMilli = 2, kMicro = 3, kNano = 4 };

struct TableEntry {
  EntryKind kind = EntryKind::kNull;
  uint32_t parent = kNoIndex;
  EntryRole role = EntryRole::kElement;
  uint32_t flags = 0;
  uint64_t length = 0;
  uint32_t buffer = kNoIndex;
  uint32_t mask = kNoIndex;
  std::string name;
  std::string tz;
  uint32_t unit = 0;  // datetime: TimeUnit; category: code width
  // Filled by LayoutTable and DecodeTable: the indices of the children.
  std::vector<uint32_t> children;
};

struct Table {
  std::vector<TableEntry> entries;
  std::vector<ArrayDesc> buffers;  // offsets from the block's start
  std::vector<uint32_t> locations;  // per buffer: kInBlock or kInInput
  uint64_t directory_size = 0;     // header, entries, buffers, strings (padded)
  uint64_t size = 0;               // the whole block
};

// Adds an entry under `parent` (kNoIndex: the root, which must come first)
// and returns its index.
uint32_t AddEntry(Table& t, TableEntry e);
// Adds a buffer (offset assigned by LayoutTable) and returns its index.
uint32_t AddBuffer(Table& t, Dtype dtype, std::vector<uint64_t> shape, Order order = Order::kC);

// Assigns every buffer's offset (after the directory, each at a multiple of
// 64), the children lists and the sizes. Throws Error(kUsage) when a name is
// longer than the strings area can address or sizes overflow.
void LayoutTable(Table& t);

// The directory's bytes (t.directory_size of them; after LayoutTable).
std::vector<uint8_t> EncodeTableDirectory(const Table& t);

// Reads and validates the block at `p` (`size` bytes readable). Buffers in
// the call's input block are allowed when `input_size` is given (its size)
// and checked against it. Throws Error(kProtocol) naming `where` and the
// entry for anything it relies on that is wrong (see docs/protocol.md);
// values are checked where they are converted.
Table DecodeTable(const uint8_t* p, uint64_t size, const std::string& where,
                  std::optional<uint64_t> input_size = std::nullopt);
// Whether any buffer of `t` lies in the input block.
bool RefersToInput(const Table& t);

// "column 'x' of element 'df'", for messages; "the input" for the root.
std::string EntryPath(const Table& t, uint32_t i);

// A buffer's bytes are written by a fill: (segment, byte offset of the
// buffer in the segment, interrupt check and its argument).
using BufferFill = std::function<void(Segment& seg, uint64_t offset, void (*check)(void*), void* arg)>;

// The input of a call that carries table `t` (after LayoutTable), whose
// buffer i is written by fills[i]. The block is written at offset 0.
Input TableInput(Table t, std::vector<BufferFill> fills);

// A fill that writes `src`'s `count` elements converted to `to` (input.h).
BufferFill SourceFill(InputSource src, Dtype to, uint64_t count);

}  // namespace pyrmap
