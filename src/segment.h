// segment.h — segments (files in a segment directory) and their mappings.
//
// A segment is a regular file in a segment directory (segment_dir.h; by
// default /dev/shm), opened relative to the directory's descriptor with
// O_NOFOLLOW|O_CLOEXEC. Created exclusively (O_CREAT|O_EXCL), mode 0600, its
// space reserved with posix_fallocate before anything is written.
//
// Other users are adversaries: every open of an existing segment checks the
// open descriptor (fstat) — a regular file, owned by this user (effective
// uid), mode 0600 or 0400 — and refuses anything else with an error naming
// the file, its owner and mode. So a file planted under a segment's name by
// someone else is never read, written or removed as ours.
//
// Ownership: a Segment owns an open file descriptor, not the name. The name
// stays until Unlink()/Remove() (or an owning SegmentGuard) removes it; a
// Mapping stays valid after the name is removed and after the Segment is
// destroyed, and the memory is freed by the kernel when the last mapping and
// descriptor in any process are gone.
//
// Thread/process safety: a Segment object is not synchronised; distinct
// objects (in one or many processes) may use the same segment concurrently.
// Every failure throws pyrmap::Error naming the segment, the system call and
// the errno text (the real errno, in sys_errno()).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "error.h"
#include "segment_dir.h"

namespace boost::interprocess {
class mapped_region;
}  // namespace boost::interprocess

namespace pyrmap {

// How a segment is mapped.
enum class MapMode {
  kReadOnly,   // PROT_READ, shared: writes fault
  kReadWrite,  // PROT_READ|PROT_WRITE, shared: writes reach every process
  kPrivate,    // PROT_READ|PROT_WRITE, private: reads share the pages, a
               // write copies the page for this process only (views)
};

// A mapped range of a segment. Movable, not copyable; unmaps on destruction.
// A zero-length Mapping has data() == nullptr.
class Mapping {
 public:
  Mapping();
  Mapping(Mapping&& other) noexcept;
  Mapping& operator=(Mapping&& other) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();

  uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  friend class Segment;
  std::unique_ptr<boost::interprocess::mapped_region> region_;
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

// Within a DeferUnmaps scope (on this thread), a Mapping of 64 MiB or more
// that is destroyed is unmapped by a thread of pyrmap's beside the caller
// (a large unmap takes 0.1 s and more) instead of at once.
class DeferUnmaps {
 public:
  DeferUnmaps();
  ~DeferUnmaps();
  DeferUnmaps(const DeferUnmaps&) = delete;
  DeferUnmaps& operator=(const DeferUnmaps&) = delete;
};
// Returns once every unmapping handed to that thread is done; whether any
// was pending. Sizing or reserving a segment waits for them when the
// directory is short of space.
bool AwaitUnmaps();

// Within a SerialWrites scope (on this thread), Segment::Write uses this
// thread alone: for a caller whose other cores are busy meanwhile (a
// one-shot run starting its interpreters).
class SerialWrites {
 public:
  SerialWrites();
  ~SerialWrites();
  SerialWrites(const SerialWrites&) = delete;
  SerialWrites& operator=(const SerialWrites&) = delete;
};

// When a new segment's blocks are allocated.
enum class Reservation {
  kNow,       // at creation (posix_fallocate): a full directory is an error
              // there, and nothing written later can fault for want of space
  kByWrites,  // by the writes that fill it (Write): the segment is sized
              // after checking that its directory has that much free, and a
              // write that finds no space is an error of the same text.
              // Only for segments filled whole with Write before anyone
              // writes to them through a mapping. Saves the allocation pass
              // (and the writes of large segments then allocate in parallel).
};

class Segment {
 public:
  // Creates `name` in `dir` with O_CREAT|O_EXCL, mode 0600, and reserves
  // `size` bytes with posix_fallocate so that later writes cannot run out of
  // space. If the reservation fails the name is removed again before the
  // error is thrown; nothing is left behind. A reservation that does not fit
  // says how much was needed, how much is free, where, and how to choose
  // another segment directory.
  static Segment Create(const SegmentDir& dir, const std::string& name, uint64_t size,
                        Reservation how = Reservation::kNow);
  // Opens an existing segment, after checking its owner and mode (above).
  static Segment Open(const SegmentDir& dir, const std::string& name, bool writable);
  // The same for a segment of user `owner` (root listing other users').
  static Segment Open(const SegmentDir& dir, const std::string& name, bool writable, uid_t owner);
  // Creates an unnamed segment in directory `dir` (O_TMPFILE, mode 0600),
  // `size` bytes reserved: nothing to remove (no one else can open it by
  // name), it goes with its last descriptor and mapping. `label` names it
  // in messages (as name() and path()).
  static Segment CreateUnnamed(const std::string& dir, uint64_t size, const std::string& label,
                               Reservation how = Reservation::kNow);
  // Takes ownership of descriptor `fd` (a segment passed by another
  // process); `label` names it. No directory: Unlink() does nothing.
  static Segment Adopt(int fd, const std::string& label);
  // A read-only descriptor of this segment (open of /proc/self/fd/N), owned
  // by the caller; throws instead of ever handing out a writable one.
  int ReopenReadOnly() const;

  Segment(Segment&& other) noexcept;
  Segment& operator=(Segment&& other) noexcept;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  ~Segment();

  const std::string& name() const { return name_; }
  // The directory; empty for an unnamed or adopted segment.
  const SegmentDir& dir() const { return dir_; }
  // The segment's file: dir().PathOf(name()); the label of an unnamed or
  // adopted segment.
  std::string path() const { return dir_.path().empty() ? name_ : dir_.PathOf(name_); }
  int fd() const { return fd_; }
  // Current size in bytes (fstat).
  uint64_t Size() const;
  // Grows the segment to `size` bytes and reserves them (posix_fallocate).
  void Reserve(uint64_t size);
  // Makes the file read-only (mode 0400): opening it for writing fails from
  // then on, for this user too (root excepted). Mappings already made and
  // this descriptor keep their access.
  void MakeReadOnly();
  // Sizes the segment to `size` bytes without allocating them, after
  // checking that its directory has them free (Reservation::kByWrites).
  void SizeForWrites(uint64_t size);
  // Sizes a segment that holds data already (a pool's kept input, written
  // over by the next input) to `size` bytes: shrinking frees the pages
  // beyond it; growing is checked as SizeForWrites checks, for the growth.
  void ResizeForWrites(uint64_t size);
  // Copies `n` bytes to `offset`: with pwrite, and from 32 MiB on (outside
  // a SerialWrites scope) in parts written at once by a few threads through
  // mappings whose pages are allocated in one call each
  // (MADV_POPULATE_WRITE; never a fault per 4 KiB page). A directory that is full is an error naming the sizes and the way
  // around it (as Reserve's). `check` (may be null) is called between chunks,
  // on the calling thread, and may throw to abandon the write.
  void Write(uint64_t offset, const void* src, uint64_t n,
             void (*check)(void*) = nullptr, void* check_arg = nullptr);
  // Copies `n` bytes from `offset` to `dst` with pread.
  void Read(uint64_t offset, void* dst, uint64_t n) const;
  // Maps [offset, offset + length); length 0 means "to the end". `populate`
  // pre-faults the pages (MAP_POPULATE). Throws if the range does not fit.
  Mapping Map(MapMode mode, uint64_t offset = 0, uint64_t length = 0,
              bool populate = false) const;
  // Removes the name from the directory (ENOENT is not an error). Only for
  // names of this process's own making (unique, never made again).
  void Unlink() const;
  // Removes `name` from `dir`; returns false if it did not exist. Only for
  // names of this process's own making; for anything else RemoveIf.
  static bool Remove(const SegmentDir& dir, const std::string& name);

  // The file's owner (fstat).
  uid_t OwnerUid() const;
  // Whether the file is one pyrmap made for `uid`: a regular file owned by
  // `uid`, mode 0600 or 0400.
  bool MadeFor(uid_t uid) const;

  // Removes `name` from `dir` if `decide(segment)` (called with the file
  // open, read-only, unchecked: decide checks what it needs) says so, and
  // only if the name still refers to that file when it is removed. The file
  // is locked (flock, exclusive) from the decision to the removal, and every
  // remover of names that can be made again (gc, a page's reclaim and
  // release) goes through here: a name that was removed and made again
  // meanwhile is never removed in its stead. Returns whether it removed it;
  // false also when the file cannot be opened or stays locked by another
  // remover for 10 seconds.
  static bool RemoveIf(const SegmentDir& dir, const std::string& name,
                       const std::function<bool(const Segment&)>& decide);

 private:
  void PlainWrite(uint64_t offset, const uint8_t* p, uint64_t n, void (*check)(void*), void* check_arg);
  bool WriteInParallel(uint64_t offset, const uint8_t* src, uint64_t n, void (*check)(void*),
                       void* check_arg);
  // Reserve() or SizeForWrites(), as `how` says.
  void Allocate(uint64_t size, Reservation how);
  // Sets the size to `size` after checking that the directory has `growth`
  // bytes free.
  void SizeTo(uint64_t size, uint64_t growth);
  // `e` (a failure for want of space) with the sizes and the remedy.
  Error NoSpace(Error e, uint64_t size) const;
  Segment(SegmentDir dir, std::string name, int fd);
  SegmentDir dir_;
  std::string name_;
  int fd_ = -1;
};

// Removes a set of segment names when destroyed, unless released. Used so
// that every segment a call makes is gone when the call ends, however it ends.
class SegmentGuard {
 public:
  explicit SegmentGuard(SegmentDir dir) : dir_(std::move(dir)) {}
  SegmentGuard(const SegmentGuard&) = delete;
  SegmentGuard& operator=(const SegmentGuard&) = delete;
  ~SegmentGuard();
  void Add(const std::string& name) { names_.push_back(name); }
  // The directory the names are in.
  const SegmentDir& dir() const { return dir_; }
  // Removes every name now.
  void RemoveAll();

 private:
  SegmentDir dir_;
  std::vector<std::string> names_;
};

// ---- names -----------------------------------------------------------------

inline constexpr const char* kNamePrefix = "pyrmap-";

// "pyrmap-<uid>-<pid>-<16 hex random>": the common prefix of one call's
// segments.
std::string NewCallPrefix();

}  // namespace pyrmap
