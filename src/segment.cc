#include "segment.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>

#include <boost/interprocess/mapped_region.hpp>
#include <fmt/format.h>

#include "error.h"

namespace bip = boost::interprocess;

namespace pyrmap {

namespace {

// The largest single pwrite/pread: Linux caps one call at 0x7ffff000 bytes;
// smaller chunks also let an interrupt check run while a big input is copied.
constexpr uint64_t kIoChunk = uint64_t{64} << 20;
// Writes of kParallelWriteMin bytes or more are split between threads
// (at most kParallelWriteThreads, each at least half of kParallelWriteMin).
constexpr uint64_t kParallelWriteMin = uint64_t{32} << 20;
constexpr uint64_t kParallelWriteThreads = 4;
// What a thread populates and copies at a time (between interrupt checks).
constexpr uint64_t kPopulateChunk = uint64_t{16} << 20;
// madvise(MADV_POPULATE_WRITE), Linux 5.14 (older headers lack the name).
constexpr int kPopulateWrite = 23;
// How long RemoveIf waits for another remover of the same file.
constexpr int kRemoveLockWaitMs = 10000;

// What Boost.Interprocess maps: an open descriptor of a segment file.
struct FdMappable {
  int fd;
  bip::mapping_handle_t get_mapping_handle() const {
    return bip::ipcdetail::mapping_handle_from_file_handle(fd);
  }
};

std::string HumanBytes(uint64_t n) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} bytes", n) : fmt::format("{:.1f} {} ({} bytes)", v, units[u], n);
}

// Checks an opened segment file: a regular file of ours, mode 0600 or 0400.
void CheckOwner(const struct stat& st, const std::string& path, uid_t owner) {
  const mode_t mode = st.st_mode & 07777;
  if (S_ISREG(st.st_mode) && st.st_uid == owner && (mode == 0600 || mode == 0400)) return;
  std::string what = S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "directory" : "special file";
  if (owner != geteuid())
    throw Error(ErrorKind::kSystem,
                fmt::format("segment '{}' is a {} owned by {} with mode {:04o}, not a segment of {}",
                            path, what, DescribeUser(st.st_uid), mode, DescribeUser(owner)));
  throw Error(ErrorKind::kSystem,
              fmt::format("segment '{}' was not made by pyrmap for you: it is a {} owned by {} with "
                          "mode {:04o} (pyrmap's segments are yours, mode 0600 or 0400). pyrmap will "
                          "not use it. Remove it if you can, or ask its owner or the administrator "
                          "to; or {}",
                          path, what, DescribeUser(st.st_uid), mode, SegmentDirRemedy()));
}

// Test hook: with PYRMAP_TEST_REMOVE_PAUSE=P set, RemoveIf creates the file
// P.paused just before it removes a name and waits (at most a minute) until
// P.go exists. Only tests set it, to widen the window between a remover's
// decision and its removal.
void TestPause() {
  const char* p = getenv("PYRMAP_TEST_REMOVE_PAUSE");
  if (!p || !*p) return;
  std::string base = p;
  int fd = open((base + ".paused").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0) close(fd);
  for (int i = 0; i < 60000 && access((base + ".go").c_str(), F_OK) != 0; ++i) usleep(1000);
}

// Unmapping a large mapping takes time in proportion to its pages (tearing
// down ~200 000 page-table entries for 800 MB: 0.1-0.2 s here). Where the
// caller has better to do meanwhile, mappings of kUnmapLaterBytes or more
// are unmapped by a thread of their own, at once but beside the caller: the
// temporary mappings of WriteInParallel, and a Mapping destroyed within a
// DeferUnmaps scope (R collecting dead views at the start of a call). A
// process that forked (the thread stays in its parent) or cannot start a
// thread unmaps in place. AwaitUnmaps() returns once all are done.
constexpr uint64_t kUnmapLaterBytes = uint64_t{64} << 20;

thread_local int t_defer_unmaps = 0;
thread_local int t_serial_writes = 0;

class Unmapper {
 public:
  using Region = std::unique_ptr<bip::mapped_region>;

  // Destroys `r` (unmaps it) now, or on the unmapping thread when large and
  // within a DeferUnmaps scope.
  static void Retire(Region r, uint64_t size) {
    if (!r) return;
    Job job{std::move(r), nullptr, 0};
    if (t_defer_unmaps == 0 || size < kUnmapLaterBytes || !Get().Push(job)) job.region.reset();
  }
  // The same for a mapping made with mmap(2); large ones always go to the
  // thread.
  static void Retire(void* addr, size_t len) {
    Job job{nullptr, addr, len};
    if (len < kUnmapLaterBytes || !Get().Push(job)) munmap(addr, len);
  }

  // Returns once nothing is queued or being unmapped; whether there was.
  static bool Await() {
    Unmapper& u = Get();
    if (u.pid_ != getpid()) return false;
    std::unique_lock<std::mutex> lock(u.mu_);
    if (u.pending_ == 0) return false;
    u.idle_.wait(lock, [&u] { return u.pending_ == 0; });
    return true;
  }

 private:
  struct Job {
    Region region;
    void* addr;
    size_t len;
  };

  // Never destroyed: the thread may run until the process exits.
  static Unmapper& Get() {
    static Unmapper* u = new Unmapper();
    return *u;
  }

  Unmapper() : pid_(getpid()) {}

  // Queues `job` (taking it) and starts the thread if need be; false (and
  // `job` untouched) in a forked child or if no thread could be started.
  bool Push(Job& job) {
    if (pid_ != getpid()) return false;
    std::unique_lock<std::mutex> lock(mu_);
    if (!started_) {
      try {
        std::thread([this] { Loop(); }).detach();
      } catch (const std::system_error&) {
        return false;
      }
      started_ = true;
    }
    queue_.push_back(std::move(job));
    ++pending_;
    work_.notify_one();
    return true;
  }

  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      work_.wait(lock, [this] { return !queue_.empty(); });
      Job job = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      job.region.reset();
      if (job.addr) munmap(job.addr, job.len);
      lock.lock();
      if (--pending_ == 0) idle_.notify_all();
    }
  }

  const pid_t pid_;
  std::mutex mu_;
  std::condition_variable work_, idle_;
  std::deque<Job> queue_;
  uint64_t pending_ = 0;  // queued or being unmapped
  bool started_ = false;
};

}  // namespace

SerialWrites::SerialWrites() { ++t_serial_writes; }
SerialWrites::~SerialWrites() { --t_serial_writes; }

DeferUnmaps::DeferUnmaps() { ++t_defer_unmaps; }
DeferUnmaps::~DeferUnmaps() { --t_defer_unmaps; }

bool AwaitUnmaps() { return Unmapper::Await(); }

// ---- Mapping ---------------------------------------------------------------

Mapping::Mapping(Mapping&& other) noexcept
    : region_(std::move(other.region_)), data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    Unmapper::Retire(std::move(region_), size_);
    region_ = std::move(other.region_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

Mapping::Mapping() = default;
Mapping::~Mapping() { Unmapper::Retire(std::move(region_), size_); }

// ---- Segment ---------------------------------------------------------------

Segment::Segment(SegmentDir dir, std::string name, int fd)
    : dir_(std::move(dir)), name_(std::move(name)), fd_(fd) {}

Segment::Segment(Segment&& other) noexcept
    : dir_(other.dir_), name_(std::move(other.name_)), fd_(other.fd_) {
  other.fd_ = -1;
}

Segment& Segment::operator=(Segment&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    dir_ = other.dir_;
    name_ = std::move(other.name_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

Segment::~Segment() {
  if (fd_ >= 0) close(fd_);
}

Segment Segment::Create(const SegmentDir& dir, const std::string& name, uint64_t size,
                        Reservation how) {
  int fd = openat(dir.fd(), name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) throw SystemError("create segment", dir.PathOf(name), "open", errno);
  Segment seg(dir, name, fd);
  try {
    seg.Allocate(size, how);
  } catch (...) {
    seg.Unlink();
    throw;
  }
  return seg;
}

Segment Segment::Open(const SegmentDir& dir, const std::string& name, bool writable) {
  return Open(dir, name, writable, geteuid());
}

Segment Segment::Open(const SegmentDir& dir, const std::string& name, bool writable, uid_t owner) {
  // O_NONBLOCK: a FIFO planted under the name must not block the open; it
  // changes nothing for regular files.
  int fd = openat(dir.fd(), name.c_str(),
                  (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw SystemError("open segment", dir.PathOf(name), "open", errno);
  Segment seg(dir, name, fd);
  struct stat st;
  if (fstat(fd, &st) != 0) throw SystemError("open segment", seg.path(), "fstat", errno);
  CheckOwner(st, seg.path(), owner);
  return seg;
}

Segment Segment::CreateUnnamed(const std::string& dir, uint64_t size, const std::string& label,
                               Reservation how) {
  int fd = open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) throw SystemError("create unnamed segment in", dir, "open(O_TMPFILE)", errno);
  Segment seg = Adopt(fd, label);
  seg.Allocate(size, how);
  return seg;
}

Segment Segment::Adopt(int fd, const std::string& label) { return Segment(SegmentDir(), label, fd); }

int Segment::ReopenReadOnly() const {
  int fd = open(fmt::format("/proc/self/fd/{}", fd_).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw SystemError("reopen segment read-only", path(), "open", errno);
  return fd;
}

uint64_t Segment::Size() const {
  struct stat st;
  if (fstat(fd_, &st) != 0) throw SystemError("stat segment", path(), "fstat", errno);
  return static_cast<uint64_t>(st.st_size);
}

void Segment::Reserve(uint64_t size) {
  if (size == 0) return;
  // posix_fallocate grows the file and allocates every block now, so a full
  // directory is reported here instead of as SIGBUS on a later write.
  int err = posix_fallocate(fd_, 0, static_cast<off_t>(size));
  // (Memory still being unmapped beside the caller is free once that ends.)
  if (err == ENOSPC && AwaitUnmaps()) err = posix_fallocate(fd_, 0, static_cast<off_t>(size));
  if (err == 0) return;
  Error e = SystemError("reserve segment", path(), "posix_fallocate", err);
  if (err == ENOSPC || err == EFBIG) throw NoSpace(std::move(e), size);
  throw e;
}

void Segment::Allocate(uint64_t size, Reservation how) {
  if (how == Reservation::kNow) Reserve(size);
  else SizeForWrites(size);
}

void Segment::SizeForWrites(uint64_t size) {
  if (size == 0) return;
  SizeTo(size, size);
}

void Segment::ResizeForWrites(uint64_t size) {
  const uint64_t now = Size();
  if (size == now) return;
  SizeTo(size, size > now ? size - now : 0);
}

void Segment::SizeTo(uint64_t size, uint64_t growth) {
  struct statvfs v;
  auto short_of_space = [&] {
    return growth > 0 && fstatvfs(fd_, &v) == 0 && static_cast<uint64_t>(v.f_bavail) * v.f_frsize < growth;
  };
  // (Memory still being unmapped beside the caller is free once that ends.)
  if (short_of_space() && (!AwaitUnmaps() || short_of_space()))
    throw NoSpace(Error(ErrorKind::kSystem, fmt::format("reserve segment '{}': not enough free space ({}, {})",
                                                        path(), ENOSPC, ErrnoText(ENOSPC)))
                      .with_errno(ENOSPC),
                  size);
  if (ftruncate(fd_, static_cast<off_t>(size)) != 0) {
    const int err = errno;
    Error e = SystemError("size segment", path(), "ftruncate", err);
    if (err == EFBIG) throw NoSpace(std::move(e), size);
    throw e;
  }
}

Error Segment::NoSpace(Error e, uint64_t size) const {
  std::string free_text = "unknown";
  struct statvfs v;
  if (fstatvfs(fd_, &v) == 0) free_text = HumanBytes(static_cast<uint64_t>(v.f_bavail) * v.f_frsize);
  const int err = e.sys_errno();
  return Error(ErrorKind::kSystem,
               fmt::format("{}: the segment needs {}, {} has {} free; {}", e.what(), HumanBytes(size),
                           dir_.path().empty() ? "its directory" : dir_.path(), free_text,
                           SegmentDirRemedy()))
      .with_errno(err);
}

void Segment::MakeReadOnly() {
  if (fchmod(fd_, 0400) != 0) throw SystemError("make segment read-only", path(), "fchmod", errno);
}

void Segment::Write(uint64_t offset, const void* src, uint64_t n,
                    void (*check)(void*), void* check_arg) {
  const uint8_t* p = static_cast<const uint8_t*>(src);
  if (n >= kParallelWriteMin && WriteInParallel(offset, p, n, check, check_arg)) return;
  PlainWrite(offset, p, n, check, check_arg);
}

void Segment::PlainWrite(uint64_t offset, const uint8_t* p, uint64_t n,
                         void (*check)(void*), void* check_arg) {
  while (n > 0) {
    if (check) check(check_arg);
    size_t chunk = static_cast<size_t>(std::min(n, kIoChunk));
    ssize_t w = pwrite(fd_, p, chunk, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      Error e = SystemError("write segment", path(), "pwrite", err);
      if (err == ENOSPC || err == EFBIG) throw NoSpace(std::move(e), Size());
      throw e;
    }
    p += w;
    offset += static_cast<uint64_t>(w);
    n -= static_cast<uint64_t>(w);
  }
}

// A large write goes through mappings, in parts written at once by a few
// threads: each maps its part, has the kernel allocate and map all its
// pages in one call (MADV_POPULATE_WRITE: no fault per page), copies, and
// unmaps. On this kind of machine the pages a tmpfs file gets are the
// costly part (zeroed, and on a virtual machine often not yet backed by the
// host), and that cost scales with the cores. Returns the bytes written:
// all of them, or fewer when the kernel cannot populate (older than 5.14:
// EINVAL) or a page could not be had (a full directory: the fault would be
// SIGBUS): those parts are then written with pwrite, which reports why.
// Returns false, having written nothing, when one thread would do.
bool Segment::WriteInParallel(uint64_t offset, const uint8_t* src, uint64_t n,
                                  void (*check)(void*), void* check_arg) {
  static std::atomic<bool> unsupported{false};
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const unsigned parts = static_cast<unsigned>(
      std::min<uint64_t>({cores, kParallelWriteThreads, n / (kParallelWriteMin / 2)}));
  if (parts < 2 || unsupported.load() || t_serial_writes > 0) return false;
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  // Part k is [bounds[k], bounds[k + 1]) of the file; inner bounds on pages.
  std::vector<uint64_t> bounds(parts + 1);
  bounds[0] = offset;
  bounds[parts] = offset + n;
  for (unsigned k = 1; k < parts; ++k) bounds[k] = (offset + n / parts * k) / page * page;
  // One mapping for all parts, made before the threads start: mapping and
  // unmapping take the address space's lock for writing, which would wait
  // for the other threads' populating.
  const uint64_t map_start = offset / page * page;
  const size_t len = static_cast<size_t>(offset + n - map_start);
  void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, static_cast<off_t>(map_start));
  if (m == MAP_FAILED) return false;
  uint8_t* base = static_cast<uint8_t*>(m) - map_start;  // file offset -> address
  std::atomic<bool> stop{false};
  std::vector<uint64_t> written(parts, 0);  // bytes of each part written
  auto write_part = [&](unsigned k, bool on_caller) {
    const uint64_t start = bounds[k], end = bounds[k + 1];
    for (uint64_t at = start; at < end && !stop.load();) {
      if (on_caller && check) check(check_arg);  // a throw stops the others (below)
      const uint64_t chunk = std::min(end - at, kPopulateChunk);
      // The populated range: whole pages around [at, at + chunk).
      uint8_t* from = base + at;
      uint8_t* pfrom = base + at / page * page;
      if (madvise(pfrom, static_cast<size_t>(from + chunk - pfrom), kPopulateWrite) != 0) {
        if (errno == EINVAL) unsupported = true;
        break;
      }
      std::memcpy(from, src + (at - offset), static_cast<size_t>(chunk));
      at += chunk;
      written[k] = at - start;
    }
  };
  std::vector<std::thread> helpers;
  for (unsigned k = 1; k < parts; ++k) {
    try {
      helpers.emplace_back(write_part, k, false);
    } catch (const std::system_error&) {
      break;  // fewer threads: the parts left are written below
    }
  }
  try {
    write_part(0, true);
  } catch (...) {
    stop = true;
    for (auto& t : helpers) t.join();
    Unmapper::Retire(m, len);
    throw;
  }
  for (auto& t : helpers) t.join();
  Unmapper::Retire(m, len);
  // Parts left unfinished (no thread, no page) are written with pwrite.
  for (unsigned k = 0; k < parts; ++k) {
    const uint64_t at = bounds[k] + written[k];
    if (at < bounds[k + 1]) PlainWrite(at, src + (at - offset), bounds[k + 1] - at, check, check_arg);
  }
  return true;
}

void Segment::Read(uint64_t offset, void* dst, uint64_t n) const {
  uint8_t* p = static_cast<uint8_t*>(dst);
  while (n > 0) {
    size_t chunk = static_cast<size_t>(std::min(n, kIoChunk));
    ssize_t r = pread(fd_, p, chunk, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw SystemError("read segment", path(), "pread", errno);
    }
    if (r == 0)
      throw Error(ErrorKind::kProtocol,
                  fmt::format("read segment '{}': ends before offset {}", path(), offset));
    p += r;
    offset += static_cast<uint64_t>(r);
    n -= static_cast<uint64_t>(r);
  }
}

Mapping Segment::Map(MapMode mode, uint64_t offset, uint64_t length, bool populate) const {
  uint64_t size = Size();
  if (offset > size || (length > 0 && length > size - offset))
    throw Error(ErrorKind::kProtocol,
                fmt::format("map segment '{}': range [{}, {}) exceeds its {} bytes", path(), offset,
                            offset + length, size));
  if (length == 0) length = size - offset;
  Mapping m;
  if (length == 0) return m;  // nothing to map; data() stays null
  bip::mode_t bmode = mode == MapMode::kReadOnly    ? bip::read_only
                      : mode == MapMode::kReadWrite ? bip::read_write
                                                    : bip::copy_on_write;
  int flags = populate ? MAP_POPULATE : 0;
  try {
    m.region_ = std::make_unique<bip::mapped_region>(FdMappable{fd_}, bmode,
                                                     static_cast<bip::offset_t>(offset),
                                                     static_cast<size_t>(length), nullptr, flags);
  } catch (const bip::interprocess_exception& e) {
    // Boost records errno for a failed system call; anything else (no errno)
    // is reported with Boost's own text, never with an invented errno.
    if (int err = e.get_native_error()) throw SystemError("map segment", path(), "mmap", err);
    throw Error(ErrorKind::kSystem, fmt::format("map segment '{}': {}", path(), e.what()));
  }
  m.data_ = static_cast<uint8_t*>(m.region_->get_address());
  m.size_ = length;
  return m;
}

void Segment::Unlink() const {
  if (!dir_.path().empty()) Remove(dir_, name_);
}

bool Segment::Remove(const SegmentDir& dir, const std::string& name) {
  return unlinkat(dir.fd(), name.c_str(), 0) == 0;
}

uid_t Segment::OwnerUid() const {
  struct stat st;
  if (fstat(fd_, &st) != 0) throw SystemError("stat segment", path(), "fstat", errno);
  return st.st_uid;
}

bool Segment::MadeFor(uid_t uid) const {
  struct stat st;
  if (fstat(fd_, &st) != 0) return false;
  const mode_t mode = st.st_mode & 07777;
  return S_ISREG(st.st_mode) && st.st_uid == uid && (mode == 0600 || mode == 0400);
}

bool Segment::RemoveIf(const SegmentDir& dir, const std::string& name,
                       const std::function<bool(const Segment&)>& decide) {
  int fd = openat(dir.fd(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return false;
  Segment seg(dir, name, fd);
  // Removers of one file take turns: whoever comes second finds the name
  // gone or naming another file, below.
  for (int waited_ms = 0;; ++waited_ms) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) break;
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK || waited_ms >= kRemoveLockWaitMs) return false;
    usleep(1000);
  }
  if (!decide(seg)) return false;
  // The name must still be this file. It cannot change from here to the
  // unlink: only a remover can take it away (holding this lock), and a new
  // file gets the name only once it is free (O_EXCL / link).
  struct stat held, named;
  if (fstat(fd, &held) != 0 ||
      fstatat(dir.fd(), name.c_str(), &named, AT_SYMLINK_NOFOLLOW) != 0 ||
      held.st_dev != named.st_dev || held.st_ino != named.st_ino)
    return false;
  TestPause();
  return unlinkat(dir.fd(), name.c_str(), 0) == 0;
}

// ---- SegmentGuard ----------------------------------------------------------

SegmentGuard::~SegmentGuard() { RemoveAll(); }

void SegmentGuard::RemoveAll() {
  for (const auto& n : names_) Segment::Remove(dir_, n);
  names_.clear();
}

// ---- names -------------------------------------------------------------------

std::string NewCallPrefix() {
  uint64_t r = 0;
  if (getrandom(&r, sizeof r, 0) != sizeof r) {
    // getrandom cannot fail for 8 bytes once the pool is ready; fall back to
    // the clock so a name is still unique within this process.
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    r = static_cast<uint64_t>(ts.tv_nsec) ^ (static_cast<uint64_t>(ts.tv_sec) << 32);
  }
  return fmt::format("{}{}-{}-{:016x}", kNamePrefix, geteuid(), getpid(), r);
}

}  // namespace pyrmap
