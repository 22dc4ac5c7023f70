// registry.h — named variables in shared memory ("pages"), found by
// namespace and variable name from any process of the same user.
//
// A page is one segment holding one array, or a list of arrays, after a page
// header. Its name is derived from the namespace and variable name, so any
// process can open it without being told more:
//
//   pyrmap-<uid>-ns-<16 hex digits of a hash of namespace and variable>
//
// The header repeats both names (a hash collision is detected, never served)
// and records the owner's pid and a random generation, so a variable that
// was released and registered again is told apart from the old one.
//
// Page header (little-endian), then a table of `count` ArrayDescs (header.h
// layout; the u32 at +12 of each holds an opaque `tag` the caller chose,
// e.g. which R type the elements are), then the element names, then the
// payloads, each at a multiple of 64:
//
//   offset size type      field
//        0    8 u8[8]     magic: 89 50 59 52 50 41 47 45 ("\x89PYRPAGE")
//        8    2 u16       version_major (1)
//       10    2 u16       version_minor (0)
//       12    4 u32       header_size (4096)
//       16    8 i64       owner_pid
//       24    8 u64       generation (random, not 0)
//       32    4 u32       is_list: 0 one array, 1 a list of arrays
//       36    4 u32       count: number of arrays
//       40    8 u64       table_offset (4096)
//       48    8 u64       names_offset: element names, NUL-terminated each
//       56    8 u64       names_size (0: no names)
//       64    8 u64       total_size: bytes of the whole segment
//       72    4 u32       ready: 1 once every payload is written (readers
//                         refuse a page that is still being written)
//      128  256 char[256] namespace, NUL-padded UTF-8
//      384  256 char[256] variable, NUL-padded UTF-8
//
// A page is written under a temporary name of its writer
// (pyrmap-<uid>-<pid>-<hex>-page), made read-only (mode 0400) once complete,
// and only then published under its name with link(2), which fails if the
// name exists. So a page under its name is always complete, and a process
// that opens it for writing (to truncate it under a reader, which would
// kill the reader with SIGBUS) is refused — root excepted, and a deliberate
// chmod; views are private mappings, but a truncated file still faults them.
//
// Ownership: the process that registers a page owns it and is the only one
// that removes its name (Release). Mappings of the page in any process stay
// valid after that; the memory is freed when the last one is gone. A page
// whose owner died is reclaimed by the next Register of the same name and by
// CollectGarbage (inventory.h); both remove it with Segment::RemoveIf, so a
// page registered again meanwhile is never removed instead.
//
// Other users: every open checks that the file is this user's (segment.h).
// A file another user planted under a page's name (a page name is
// predictable) is never served, reclaimed or removed; registering that name
// fails with an error naming the file, its owner and what to do (a private
// segment directory, where no one else can create names, avoids it for
// good).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "header.h"
#include "segment.h"

namespace pyrmap {

inline constexpr uint8_t kPageMagic[8] = {0x89, 'P', 'Y', 'R', 'P', 'A', 'G', 'E'};
inline constexpr size_t kPageHeaderSize = 4096;
inline constexpr size_t kMaxNameBytes = 255;

// One array of a page.
struct PageArray {
  ArrayDesc desc;    // offset: where the payload starts in the segment
  uint32_t tag = 0;  // opaque to the core
  std::string name;  // element name in a list ("" if none)
};

struct PageInfo {
  std::string dir;      // the segment directory's path
  std::string segment;  // the segment's name
  std::string ns;
  std::string var;
  int64_t owner_pid = 0;
  uint64_t generation = 0;
  bool is_list = false;
  std::vector<PageArray> arrays;
  uint64_t total_size = 0;
};

// An open page: its description and a mapping of the whole segment.
struct OpenedPage {
  PageInfo info;
  std::shared_ptr<Mapping> mapping;
  // The first byte of array i's payload (null for an empty array).
  const uint8_t* data(size_t i) const;
};

// The segment name of (ns, var) for this user.
std::string PageName(const std::string& ns, const std::string& var);

// Creates the page of (ns, var) in `dir` holding `arrays` (their shapes,
// dtypes, tags and names; offsets are assigned here) and calls fill(i,
// segment, offset) to write array i's payload. Space is reserved before
// anything is written. If the name exists and its owner is dead, it is
// reclaimed first; if its owner is alive, Error(kUsage) names the owner; if
// it is another user's file, Error(kSystem) names it and its owner. On any
// failure nothing is left behind.
PageInfo CreatePage(const SegmentDir& dir, const std::string& ns, const std::string& var,
                    bool is_list, std::vector<PageArray> arrays,
                    const std::function<void(size_t, Segment&, uint64_t)>& fill);

// Reads and validates the page header of segment `segment` without mapping
// the payload. Throws Error(kProtocol) for a damaged header,
// Error(kSystem) (errno ENOENT) if it does not exist.
PageInfo ReadPageInfo(const SegmentDir& dir, const std::string& segment);
// The same for an open segment.
PageInfo ReadPageInfo(const Segment& segment);

// The page of (ns, var), read and checked (as ReadPageInfo) and opened
// read-only. Error(kNotRegistered) if no such variable is registered;
// Error(kProtocol) if the page is damaged or belongs to another (ns, var)
// with the same hash.
struct FoundPage {
  PageInfo info;
  Segment segment;
};
FoundPage FindPage(const SegmentDir& dir, const std::string& ns, const std::string& var);

// FindPage, and a mapping of the whole page.
OpenedPage OpenPage(const SegmentDir& dir, const std::string& ns, const std::string& var,
                    MapMode mode);

// Removes the name of (ns, var) if this process owns it (or its owner is
// dead). Returns false if it does not exist; throws Error(kUsage) if
// another live process owns it.
bool ReleasePage(const SegmentDir& dir, const std::string& ns, const std::string& var);

// The owner pid recorded in an open page's header, even one still being
// written; 0 if it cannot be read or is not a page.
int64_t PageOwner(const Segment& segment);

// True if `segment` is the name of a page (whatever its namespace).
bool IsPageName(const std::string& segment);

}  // namespace pyrmap
