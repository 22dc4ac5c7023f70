// segment.h — POSIX shared-memory segments in /dev/shm, and their mappings.
//
// Ownership: a Segment owns an open file descriptor, not the name. The name
// stays in /dev/shm until Unlink() (or an owning SegmentGuard) removes it;
// a Mapping stays valid after the name is removed and after the Segment is
// destroyed, and the memory is freed by the kernel when the last mapping and
// descriptor in any process are gone.
//
// Thread/process safety: a Segment object is not synchronised; distinct
// objects (in one or many processes) may use the same segment concurrently.
// Every failure throws pyrmap::Error naming the segment, the system call and
// the errno text.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace boost::interprocess {
class mapped_region;
class shared_memory_object;
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

class Segment {
 public:
  // Creates `name` (no leading slash) with O_CREAT|O_EXCL, mode 0600, and
  // reserves `size` bytes with posix_fallocate so that later writes cannot
  // run out of space. If the reservation fails the name is removed again
  // before the error is thrown; nothing is left behind.
  static Segment Create(const std::string& name, uint64_t size);
  // Opens an existing segment.
  static Segment Open(const std::string& name, bool writable);
  // Creates an unnamed segment in directory `dir` (O_TMPFILE, mode 0600),
  // `size` bytes reserved: nothing to remove, it goes with its last
  // descriptor and mapping. `label` names it in messages.
  static Segment CreateUnnamed(const std::string& dir, uint64_t size, const std::string& label);
  // Takes ownership of descriptor `fd` (a segment passed by another process).
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
  int fd() const;
  // Current size in bytes (fstat).
  uint64_t Size() const;
  // Grows the segment to `size` bytes and reserves them (posix_fallocate).
  void Reserve(uint64_t size);
  // Copies `n` bytes to `offset` with pwrite. On fresh tmpfs pages this is
  // several times faster than writing through a mapping, which pays a page
  // fault per 4 KiB page. `check` (may be null) is called between chunks
  // and may throw to abandon the write.
  void Write(uint64_t offset, const void* src, uint64_t n,
             void (*check)(void*) = nullptr, void* check_arg = nullptr);
  // Copies `n` bytes from `offset` to `dst` with pread.
  void Read(uint64_t offset, void* dst, uint64_t n) const;
  // Maps [offset, offset + length); length 0 means "to the end". `populate`
  // pre-faults the pages (MAP_POPULATE). Throws if the range does not fit.
  Mapping Map(MapMode mode, uint64_t offset = 0, uint64_t length = 0,
              bool populate = false) const;
  // Removes the name from /dev/shm (ENOENT is not an error).
  void Unlink() const;
  // Removes `name`; returns false if it did not exist.
  static bool Remove(const std::string& name);

 private:
  Segment(std::string name,
          std::unique_ptr<boost::interprocess::shared_memory_object> shm);
  std::string name_;
  std::unique_ptr<boost::interprocess::shared_memory_object> shm_;
  int own_fd_ = -1;  // an unnamed or adopted segment's descriptor (no shm_)
};

// Removes a set of segment names when destroyed, unless released. Used so
// that every segment a call makes is gone when the call ends, however it ends.
class SegmentGuard {
 public:
  SegmentGuard() = default;
  SegmentGuard(const SegmentGuard&) = delete;
  SegmentGuard& operator=(const SegmentGuard&) = delete;
  ~SegmentGuard();
  void Add(const std::string& name) { names_.push_back(name); }
  // Removes every name now.
  void RemoveAll();

 private:
  std::vector<std::string> names_;
};

// ---- names -----------------------------------------------------------------

inline constexpr const char* kNamePrefix = "pyrmap-";
inline constexpr const char* kShmDir = "/dev/shm";

// "pyrmap-<uid>-<pid>-<16 hex random>": the common prefix of one call's
// segments.
std::string NewCallPrefix();

}  // namespace pyrmap
