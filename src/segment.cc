#include "segment.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <fmt/format.h>

#include "error.h"

namespace bip = boost::interprocess;

namespace pyrmap {

namespace {

// The largest single pwrite/pread: Linux caps one call at 0x7ffff000 bytes;
// smaller chunks also let an interrupt check run while a big input is copied.
constexpr uint64_t kIoChunk = uint64_t{64} << 20;

// Lets mapped_region map any descriptor (named, unnamed or adopted).
struct FdMappable {
  int fd;
  bip::mapping_handle_t get_mapping_handle() const {
    return bip::ipcdetail::mapping_handle_from_file_handle(fd);
  }
};

int NativeError(const bip::interprocess_exception& e) {
  int err = e.get_native_error();
  return err ? err : EIO;
}

}  // namespace

// ---- Mapping ---------------------------------------------------------------

Mapping::Mapping(Mapping&& other) noexcept
    : region_(std::move(other.region_)), data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    region_ = std::move(other.region_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

Mapping::Mapping() = default;
Mapping::~Mapping() = default;

// ---- Segment ---------------------------------------------------------------

Segment::Segment(std::string name,
                 std::unique_ptr<bip::shared_memory_object> shm)
    : name_(std::move(name)), shm_(std::move(shm)) {}

Segment::Segment(Segment&& other) noexcept
    : name_(std::move(other.name_)), shm_(std::move(other.shm_)), own_fd_(std::exchange(other.own_fd_, -1)) {}

Segment& Segment::operator=(Segment&& other) noexcept {
  if (this != &other) {
    if (own_fd_ >= 0) close(own_fd_);
    name_ = std::move(other.name_);
    shm_ = std::move(other.shm_);
    own_fd_ = std::exchange(other.own_fd_, -1);
  }
  return *this;
}

Segment::~Segment() {
  if (own_fd_ >= 0) close(own_fd_);
}

int Segment::fd() const { return shm_ ? shm_->get_mapping_handle().handle : own_fd_; }

Segment Segment::CreateUnnamed(const std::string& dir, uint64_t size, const std::string& label) {
  int fd = open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) throw SystemError("create unnamed segment in", dir, "open(O_TMPFILE)", errno);
  Segment seg = Adopt(fd, label);
  if (size > 0) seg.Reserve(size);
  return seg;
}

Segment Segment::Adopt(int fd, const std::string& label) {
  Segment seg(label, nullptr);
  seg.own_fd_ = fd;
  return seg;
}

int Segment::ReopenReadOnly() const {
  int fd = open(fmt::format("/proc/self/fd/{}", this->fd()).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw SystemError("reopen segment read-only", name_, "open", errno);
  return fd;
}

Segment Segment::Create(const std::string& name, uint64_t size) {
  std::unique_ptr<bip::shared_memory_object> shm;
  try {
    bip::permissions perm(0600);
    shm = std::make_unique<bip::shared_memory_object>(
        bip::create_only, name.c_str(), bip::read_write, perm);
  } catch (const bip::interprocess_exception& e) {
    throw SystemError("create segment", name, "shm_open", NativeError(e));
  }
  Segment seg(name, std::move(shm));
  try {
    if (size > 0) seg.Reserve(size);
  } catch (...) {
    seg.Unlink();
    throw;
  }
  return seg;
}

Segment Segment::Open(const std::string& name, bool writable) {
  try {
    auto shm = writable ? std::make_unique<bip::shared_memory_object>(
                              bip::open_only, name.c_str(), bip::read_write)
                        : std::make_unique<bip::shared_memory_object>(
                              bip::open_only, name.c_str(), bip::read_only);
    return Segment(name, std::move(shm));
  } catch (const bip::interprocess_exception& e) {
    throw SystemError("open segment", name, "shm_open", NativeError(e));
  }
}

uint64_t Segment::Size() const {
  struct stat st;
  if (fstat(fd(), &st) != 0) throw SystemError("stat segment", name_, "fstat", errno);
  return static_cast<uint64_t>(st.st_size);
}

void Segment::Reserve(uint64_t size) {
  if (size == 0) return;
  // posix_fallocate grows the file and allocates every page now, so a full
  // /dev/shm is reported here instead of as SIGBUS on a later write.
  int err = posix_fallocate(fd(), 0, static_cast<off_t>(size));
  if (err != 0) {
    Error e = SystemError("reserve segment", name_, "posix_fallocate", err);
    if (err == ENOSPC)
      e = Error(ErrorKind::kSystem,
                fmt::format("{} (needed {} bytes in {})", e.what(), size, kShmDir))
              .with_errno(err);
    throw e;
  }
}

void Segment::Write(uint64_t offset, const void* src, uint64_t n,
                    void (*check)(void*), void* check_arg) {
  const uint8_t* p = static_cast<const uint8_t*>(src);
  while (n > 0) {
    if (check) check(check_arg);
    size_t chunk = static_cast<size_t>(std::min(n, kIoChunk));
    ssize_t w = pwrite(fd(), p, chunk, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw SystemError("write segment", name_, "pwrite", errno);
    }
    p += w;
    offset += static_cast<uint64_t>(w);
    n -= static_cast<uint64_t>(w);
  }
}

void Segment::Read(uint64_t offset, void* dst, uint64_t n) const {
  uint8_t* p = static_cast<uint8_t*>(dst);
  while (n > 0) {
    size_t chunk = static_cast<size_t>(std::min(n, kIoChunk));
    ssize_t r = pread(fd(), p, chunk, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw SystemError("read segment", name_, "pread", errno);
    }
    if (r == 0)
      throw Error(ErrorKind::kProtocol,
                  fmt::format("read segment '{}': ends before offset {}", name_,
                              offset));
    p += r;
    offset += static_cast<uint64_t>(r);
    n -= static_cast<uint64_t>(r);
  }
}

Mapping Segment::Map(MapMode mode, uint64_t offset, uint64_t length,
                     bool populate) const {
  uint64_t size = Size();
  if (offset > size || (length > 0 && length > size - offset))
    throw Error(ErrorKind::kProtocol,
                fmt::format("map segment '{}': range [{}, {}) exceeds its {} "
                            "bytes",
                            name_, offset, offset + length, size));
  if (length == 0) length = size - offset;
  Mapping m;
  if (length == 0) return m;  // nothing to map; data() stays null
  bip::mode_t bmode = mode == MapMode::kReadOnly    ? bip::read_only
                      : mode == MapMode::kReadWrite ? bip::read_write
                                                    : bip::copy_on_write;
  int flags = populate ? MAP_POPULATE : 0;
  try {
    m.region_ = std::make_unique<bip::mapped_region>(
        FdMappable{fd()}, bmode, static_cast<bip::offset_t>(offset),
        static_cast<size_t>(length), nullptr, flags);
  } catch (const bip::interprocess_exception& e) {
    throw SystemError("map segment", name_, "mmap", NativeError(e));
  }
  m.data_ = static_cast<uint8_t*>(m.region_->get_address());
  m.size_ = length;
  return m;
}

void Segment::Unlink() const { Remove(name_); }

bool Segment::Remove(const std::string& name) {
  std::string path = "/" + name;
  return shm_unlink(path.c_str()) == 0;
}

// ---- SegmentGuard ----------------------------------------------------------

SegmentGuard::~SegmentGuard() { RemoveAll(); }

void SegmentGuard::RemoveAll() {
  for (const auto& n : names_) Segment::Remove(n);
  names_.clear();
}

// ---- names, listing, garbage collection ------------------------------------

std::string NewCallPrefix() {
  uint64_t r = 0;
  if (getrandom(&r, sizeof r, 0) != sizeof r) {
    // getrandom cannot fail for 8 bytes once the pool is ready; fall back to
    // the clock so a name is still unique within this process.
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    r = static_cast<uint64_t>(ts.tv_nsec) ^ (static_cast<uint64_t>(ts.tv_sec) << 32);
  }
  return fmt::format("{}{}-{}-{:016x}", kNamePrefix, getuid(), getpid(), r);
}

}  // namespace pyrmap
