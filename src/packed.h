// packed.h — many arrays in one segment, read by index: a table of compact
// entries and the payloads after it.
//
// Made for a parallel call's data: a list of 20 000 small vectors becomes
// one table (32 bytes an element) and one run of payloads, written with a
// few large pwrites, instead of a page header and a 64-byte-aligned payload
// per element. A worker reads element i in constant time, checked against
// the segment's bounds.
//
// A table (at a multiple of 64 in its segment; little-endian):
//
//   offset size type   field
//        0    8 u64    count: entries
//        8    4 u32    flags (opaque to the core)
//       12    4 u32    reserved (0)
//       16   32*count  entries:
//                        0 u32 tag (opaque: e.g. which R type and whether
//                              the object had a dim attribute)
//                        4 u16 dtype code (dtype.h)
//                        6 u16 ndim (0..16; 0: a plain vector of `count`)
//                        8 u64 count: elements (the product of the shape)
//                       16 u64 offset: payload start in the segment (a
//                              multiple of 8; of 64 for 4 KiB or more)
//                       24 u64 shape_at: offset of ndim u64 dims (0 if none)
//   then the dims of every entry, then the payloads in entry order.
//
// Thread/process safety: a written table is only read.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dtype.h"
#include "segment.h"

namespace pyrmap {

inline constexpr uint32_t kMaxPackedDims = 16;

// An array to pack: `count` elements of `dtype` at `data` (not owned; must
// stay valid until Write()).
struct PackedSource {
  uint32_t tag = 0;
  Dtype dtype = Dtype::kFloat64;
  std::vector<uint64_t> shape;  // empty: a plain vector
  uint64_t count = 0;
  const void* data = nullptr;
};

// Lays out and writes one table.
class PackedWriter {
 public:
  explicit PackedWriter(uint32_t flags = 0) : flags_(flags) {}
  // Adds an array. Throws Error(kUsage) for more than kMaxPackedDims dims or
  // a shape whose product is not `count`.
  void Add(PackedSource source);
  // Bytes the table, the dims and the payloads take when written at an
  // offset that is a multiple of 64.
  uint64_t Size() const;
  size_t entries() const { return sources_.size(); }
  // Writes everything into `segment` at `at` (a multiple of 64; the
  // segment already holds at + Size() bytes). Small payloads are gathered
  // and written in large pwrites, large ones straight from their memory.
  // `check` (may be null) is called between writes and may throw.
  void Write(Segment& segment, uint64_t at, void (*check)(void*) = nullptr, void* check_arg = nullptr) const;

 private:
  uint32_t flags_;
  std::vector<PackedSource> sources_;
  uint64_t dims_ = 0;       // total dims of all entries
  uint64_t payloads_ = 0;   // bytes of payloads with their alignment, from a 64-aligned start
};

// One entry, as read.
struct PackedEntry {
  uint32_t tag = 0;
  Dtype dtype = Dtype::kNone;
  uint32_t ndim = 0;
  const uint64_t* shape = nullptr;  // ndim dims (in the mapping)
  uint64_t count = 0;
  uint64_t offset = 0;              // the payload's offset in the segment
  const uint8_t* data = nullptr;    // the payload in the mapping (null if count is 0)
  uint64_t nbytes = 0;
};

// A table in a mapping of [origin, origin + size) of a segment.
class PackedTable {
 public:
  PackedTable() = default;
  // Reads the table at segment offset `at`. Throws Error(kProtocol) naming
  // `label` if the table does not fit in the mapping.
  PackedTable(const uint8_t* mapping, uint64_t origin, uint64_t size, uint64_t at, std::string label);
  uint64_t size() const { return count_; }
  uint32_t flags() const { return flags_; }
  // Entry i (< size()). Throws Error(kProtocol) naming the label and the
  // entry for an unknown dtype, too many dims, a shape that does not match
  // the count, or a payload outside the mapping.
  PackedEntry at(uint64_t i) const;

 private:
  const uint8_t* map_ = nullptr;
  uint64_t origin_ = 0, size_ = 0, table_ = 0, count_ = 0;
  uint32_t flags_ = 0;
  std::string label_;
};

}  // namespace pyrmap
