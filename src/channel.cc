#include "channel.h"

#include <linux/futex.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "error.h"

namespace pyrmap {

namespace {

constexpr uint64_t kPage = 4096;

uint64_t RoundUp(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

template <typename T>
void Put(uint8_t* p, uint64_t off, T v) {
  std::memcpy(p + off, &v, sizeof v);
}

template <typename T>
T Get(const uint8_t* p, uint64_t off) {
  T v;
  std::memcpy(&v, p + off, sizeof v);
  return v;
}

// Offsets of the call header's fields.
constexpr uint64_t kOffTotal = 16, kOffTasks = 24, kOffWorkers = 32, kOffChunk = 40, kOffJob = 48,
                   kOffJobSize = 56, kOffObjects = 64, kOffOut = 72, kOffOutSize = 80, kOffData = 88,
                   kOffAreaSeq = 96, kOffNext = 256, kOffDone = 320, kOffCancel = 384, kOffFailAt = 448, kOffBroken = 512, kOffSpread = 576,
                   kOffFlags = 36;
// Offsets in a call slot.
constexpr uint64_t kCallSlotPid = 0, kCallSlotState = 4, kCallSlotCurrent = 8, kCallSlotBytes = 16,
                   kCallSlotOutcome = 24;
// Offsets in the control block.
constexpr uint64_t kCtlWorkers = 12, kCtlMaster = 16, kCtlSeq = 64, kCtlStop = 128, kCtlName = 192,
                   kCtlSlots = 512;
// Offsets in a control slot.
constexpr uint64_t kSlotPid = 0, kSlotState = 4, kSlotDoneSeq = 8;

uint64_t* U64(uint8_t* base, uint64_t off) { return reinterpret_cast<uint64_t*>(base + off); }
uint32_t* U32(uint8_t* base, uint64_t off) { return reinterpret_cast<uint32_t*>(base + off); }

}  // namespace

// ---- futex -------------------------------------------------------------------------

bool FutexWait(const uint32_t* word, uint32_t expected, double timeout_seconds) {
  struct timespec ts, *tsp = nullptr;
  if (timeout_seconds >= 0) {
    ts.tv_sec = static_cast<time_t>(timeout_seconds);
    ts.tv_nsec = static_cast<long>((timeout_seconds - static_cast<double>(ts.tv_sec)) * 1e9);
    tsp = &ts;
  }
  // Not FUTEX_PRIVATE: the word is shared with other processes.
  long rc = syscall(SYS_futex, word, FUTEX_WAIT, expected, tsp, nullptr, 0);
  return rc == 0 || (rc < 0 && errno == EAGAIN);  // EAGAIN: it had changed already
}

void FutexWakeAll(const uint32_t* word) { FutexWake(word, INT_MAX); }

void FutexWake(const uint32_t* word, int n) { syscall(SYS_futex, word, FUTEX_WAKE, n, nullptr, nullptr, 0); }

// ---- the call segment ----------------------------------------------------------

void CallLayout::Compute() {
  if (workers < 1 || workers > kMaxWorkers)
    throw Error(ErrorKind::kUsage, fmt::format("a call needs 1 to {} workers, not {}", kMaxWorkers, workers));
  slots_offset = kCallHeaderSize;
  out_offset = out_size ? RoundUp(slots_offset + kSlotSize * workers, 64) : 0;
  uint64_t at = out_size ? out_offset + out_size : slots_offset + kSlotSize * workers;
  job_offset = job_size ? RoundUp(at, 8) : 0;
  at = job_size ? job_offset + job_size : at;
  objects_offset = RoundUp(at, 8);
  at = objects_offset + 8 * (1 + objects);
  data_offset = RoundUp(at, kPage);
  total_size = data_offset + data_size;
}

namespace {

// The header fields of `layout` (the first 256 bytes; the atomics after
// them are zero in a fresh header).
void PutHeader(uint8_t* h, const CallLayout& layout) {
  std::memcpy(h, kCallMagic, 8);
  Put<uint16_t>(h, 8, 1);
  Put<uint16_t>(h, 10, 0);
  Put<uint32_t>(h, 12, static_cast<uint32_t>(kCallHeaderSize));
  Put<uint64_t>(h, kOffTotal, layout.total_size);
  Put<uint64_t>(h, kOffTasks, layout.tasks);
  Put<uint32_t>(h, kOffWorkers, layout.workers);
  Put<uint32_t>(h, kOffFlags, layout.flags);
  Put<double>(h, kOffChunk, layout.chunk_seconds);
  Put<uint64_t>(h, kOffJob, layout.job_offset);
  Put<uint64_t>(h, kOffJobSize, layout.job_size);
  Put<uint64_t>(h, kOffObjects, layout.objects_offset);
  Put<uint64_t>(h, kOffOut, layout.out_offset);
  Put<uint64_t>(h, kOffOutSize, layout.out_size);
  Put<uint64_t>(h, kOffData, layout.data_offset);
}

// The layout a header `h` describes, checked against a segment of `size`
// bytes (`exact`: the content fills it; else it may be larger: an area).
// `objects_at(offset)` reads the objects directory's count.
CallLayout ParseHeader(const uint8_t* h, uint64_t size, bool exact, const std::string& name,
                       const std::function<uint64_t(uint64_t)>& objects_at) {
  if (std::memcmp(h, kCallMagic, 8) != 0)
    throw Error(ErrorKind::kProtocol, fmt::format("segment '{}' is not a call segment (bad magic)", name));
  if (Get<uint16_t>(h, 8) != 1)
    throw Error(ErrorKind::kProtocol,
                fmt::format("call segment '{}' has version {}, this pyrmap reads version 1", name,
                            Get<uint16_t>(h, 8)));
  CallLayout l;
  l.tasks = Get<uint64_t>(h, kOffTasks);
  l.workers = Get<uint32_t>(h, kOffWorkers);
  l.flags = Get<uint32_t>(h, kOffFlags);
  l.chunk_seconds = Get<double>(h, kOffChunk);
  l.job_size = Get<uint64_t>(h, kOffJobSize);
  l.out_size = Get<uint64_t>(h, kOffOutSize);
  const uint64_t objects_offset = Get<uint64_t>(h, kOffObjects);
  uint64_t objects = 0;
  if (objects_offset <= size && size - objects_offset >= 8) objects = objects_at(objects_offset);
  if (objects > size / 8)
    throw Error(ErrorKind::kProtocol, fmt::format("call segment '{}': its directory names {} objects", name, objects));
  l.objects = objects;
  const uint64_t total = Get<uint64_t>(h, kOffTotal), data_offset = Get<uint64_t>(h, kOffData);
  if ((exact ? total != size : total > size) || data_offset > total)
    throw Error(ErrorKind::kProtocol,
                fmt::format("call segment '{}': its header says {} bytes, the segment holds {}", name,
                            total, size));
  l.data_size = total - data_offset;
  try {
    l.Compute();
  } catch (const Error& e) {
    throw Error(ErrorKind::kProtocol, fmt::format("call segment '{}': {}", name, e.what()));
  }
  // Where the master put everything must be where this side computes it.
  if (l.data_offset != data_offset || l.total_size != total || l.job_offset != Get<uint64_t>(h, kOffJob) ||
      l.out_offset != Get<uint64_t>(h, kOffOut) || l.objects_offset != objects_offset)
    throw Error(ErrorKind::kProtocol, fmt::format("call segment '{}': inconsistent layout", name));
  return l;
}

}  // namespace

CallShared CallShared::Create(const SegmentDir& dir, const std::string& name, CallLayout layout) {
  layout.Compute();
  CallShared c;
  c.layout_ = layout;
  c.segment_ = Segment::Create(dir, name, layout.total_size);
  try {
    std::vector<uint8_t> h(kCallHeaderSize, 0);
    PutHeader(h.data(), layout);
    c.segment_.Write(0, h.data(), h.size());
    c.map_ = c.segment_.Map(MapMode::kReadWrite, 0, layout.data_offset);
  } catch (...) {
    c.segment_.Unlink();
    throw;
  }
  c.current_ = U64(c.map_.data(), layout.slots_offset + kCallSlotCurrent);
  return c;
}

CallShared CallShared::OverArea(Segment area) {
  CallShared c;
  c.segment_ = std::move(area);
  if (c.segment_.Size() < kCallHeaderSize)
    throw Error(ErrorKind::kProtocol, fmt::format("call area '{}' is smaller than a header", c.segment_.path()));
  c.map_ = c.segment_.Map(MapMode::kReadWrite);
  c.area_ = true;
  return c;
}

void CallShared::Invalidate() {
  __atomic_store_n(U32(map_.data(), kOffAreaSeq), 0u, __ATOMIC_SEQ_CST);
}

bool CallShared::Fits(CallLayout layout) const {
  layout.Compute();
  return area_ && layout.total_size <= map_.size();
}

void CallShared::Reset(CallLayout layout) {
  layout.flags |= kCallArea;
  layout.Compute();
  if (!area_ || layout.total_size > map_.size())
    throw Error(ErrorKind::kUsage, fmt::format("a call of {} bytes in a call area of {}", layout.total_size,
                                               map_.size()));
  layout_ = layout;
  uint8_t* h = map_.data();
  // Fields, then the atomics and the slots, zeroed (the seq stays 0).
  PutHeader(h, layout_);
  std::memset(h + kOffAreaSeq + 4, 0, kCallHeaderSize - kOffAreaSeq - 4);
  std::memset(h + layout_.slots_offset, 0, kSlotSize * layout_.workers);
  current_ = U64(h, layout_.slots_offset + kCallSlotCurrent);
}

void CallShared::Publish(uint32_t seq) {
  __atomic_store_n(U32(map_.data(), kOffAreaSeq), seq, __ATOMIC_SEQ_CST);
}

bool CallShared::Refresh(uint32_t seq) {
  if (!area_ || seq == 0 || __atomic_load_n(U32(map_.data(), kOffAreaSeq), __ATOMIC_SEQ_CST) != seq) return false;
  const uint8_t* h = map_.data();
  layout_ = ParseHeader(h, map_.size(), false, segment_.path(), [h](uint64_t at) { return Get<uint64_t>(h, at); });
  if (!(layout_.flags & kCallArea))
    throw Error(ErrorKind::kProtocol, fmt::format("call area '{}' holds a header without its flag", segment_.path()));
  current_ = U64(map_.data(), layout_.slots_offset + kCallSlotCurrent);
  return true;
}

CallShared CallShared::Open(const SegmentDir& dir, const std::string& name) {
  CallShared c;
  c.segment_ = OpenOwnedSegment(dir, name, true);
  const uint64_t size = c.segment_.Size();
  uint8_t h[kCallHeaderSize];
  if (size < kCallHeaderSize)
    throw Error(ErrorKind::kProtocol,
                fmt::format("call segment '{}' holds {} bytes, less than its header", name, size));
  c.segment_.Read(0, h, sizeof h);
  c.layout_ = ParseHeader(h, size, true, name, [&c](uint64_t at) {
    uint64_t objects = 0;
    c.segment_.Read(at, &objects, 8);
    return objects;
  });
  if (c.layout_.flags & kCallArea)
    throw Error(ErrorKind::kProtocol, fmt::format("call segment '{}' claims to be a call area", name));
  c.map_ = c.segment_.Map(MapMode::kReadWrite, 0, c.layout_.data_offset);
  c.current_ = U64(c.map_.data(), c.layout_.slots_offset + kCallSlotCurrent);
  return c;
}

void CallShared::WriteJob(const uint8_t* bytes, uint64_t n) {
  if (n != layout_.job_size)
    throw Error(ErrorKind::kUsage, fmt::format("call segment '{}': a job of {} bytes in room for {}", name(), n,
                                               layout_.job_size));
  if (n && area_) std::memcpy(map_.data() + layout_.job_offset, bytes, n);
  else if (n) segment_.Write(layout_.job_offset, bytes, n);
}

void CallShared::WriteObjects(const std::vector<uint64_t>& offsets) {
  if (offsets.size() != layout_.objects)
    throw Error(ErrorKind::kUsage, fmt::format("call segment '{}': {} objects in a directory for {}", name(),
                                               offsets.size(), layout_.objects));
  std::vector<uint64_t> dir;
  dir.push_back(offsets.size());
  dir.insert(dir.end(), offsets.begin(), offsets.end());
  if (area_) std::memcpy(map_.data() + layout_.objects_offset, dir.data(), 8 * dir.size());
  else segment_.Write(layout_.objects_offset, dir.data(), 8 * dir.size());
}

uint64_t CallShared::Object(uint64_t i) const {
  if (i >= layout_.objects)
    throw Error(ErrorKind::kProtocol, fmt::format("call segment '{}' has no object {}", name(), i + 1));
  const uint64_t at = Get<uint64_t>(map_.data(), layout_.objects_offset + 8 * (1 + i));
  if (at < layout_.data_offset || at >= layout_.total_size || at % 64 != 0)
    throw Error(ErrorKind::kProtocol, fmt::format("call segment '{}': object {} at byte {} is outside its data",
                                                  name(), i + 1, at));
  return at;
}

bool CallShared::Claim(uint64_t max_chunk, uint64_t* first, uint64_t* count) {
  uint64_t* next = U64(map_.data(), kOffNext);
  const uint64_t n = layout_.tasks;
  uint64_t cur = __atomic_load_n(next, __ATOMIC_RELAXED);
  for (;;) {
    if (cur >= n || Cancelled() || Broken() || FailedAt() != kNoTask) return false;
    const uint64_t left = n - cur;
    uint64_t size = (left + 2 * layout_.workers - 1) / (2 * layout_.workers);
    size = std::max<uint64_t>(1, std::min(size, std::max<uint64_t>(1, max_chunk)));
    if (__atomic_compare_exchange_n(next, &cur, cur + size, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
      *first = cur;
      *count = size;
      return true;
    }
  }
}

uint64_t CallShared::Claimed() const {
  return std::min(layout_.tasks, __atomic_load_n(U64(map_.data(), kOffNext), __ATOMIC_RELAXED));
}

void CallShared::AddDone(uint64_t count) { __atomic_fetch_add(U64(map_.data(), kOffDone), count, __ATOMIC_SEQ_CST); }

uint64_t CallShared::Done() const { return __atomic_load_n(U64(map_.data(), kOffDone), __ATOMIC_SEQ_CST); }

void CallShared::Fail(uint64_t task) {
  uint64_t* at = U64(map_.data(), kOffFailAt);
  uint64_t cur = __atomic_load_n(at, __ATOMIC_RELAXED);
  while ((cur == 0 || cur > task + 1) &&
         !__atomic_compare_exchange_n(at, &cur, task + 1, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
  }
}

uint64_t CallShared::FailedAt() const {
  uint64_t v = __atomic_load_n(U64(map_.data(), kOffFailAt), __ATOMIC_SEQ_CST);
  return v == 0 ? kNoTask : v - 1;
}

void CallShared::Cancel() { __atomic_store_n(U32(map_.data(), kOffCancel), 1u, __ATOMIC_SEQ_CST); }

bool CallShared::Cancelled() const { return __atomic_load_n(U32(map_.data(), kOffCancel), __ATOMIC_SEQ_CST) != 0; }

void CallShared::Break() { __atomic_store_n(U32(map_.data(), kOffBroken), 1u, __ATOMIC_SEQ_CST); }

bool CallShared::Spread() {
  uint32_t expected = 0;
  return __atomic_compare_exchange_n(U32(map_.data(), kOffSpread), &expected, 1u, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED);
}

bool CallShared::Broken() const { return __atomic_load_n(U32(map_.data(), kOffBroken), __ATOMIC_SEQ_CST) != 0; }

namespace {
uint8_t* CallSlot(uint8_t* base, const CallLayout& l, uint32_t k) { return base + l.slots_offset + kSlotSize * k; }
}  // namespace

void CallShared::Join(uint32_t k, pid_t pid) {
  if (k >= layout_.workers) return;
  uint8_t* s = CallSlot(map_.data(), layout_, k);
  __atomic_store_n(reinterpret_cast<int32_t*>(s + kCallSlotPid), static_cast<int32_t>(pid), __ATOMIC_RELAXED);
  // Sequentially consistent, as the loads in Claim(): a worker that the
  // master saw not working can no longer claim a task once the master saw
  // the call settled.
  __atomic_store_n(U32(s, kCallSlotState), static_cast<uint32_t>(SlotState::kWorking), __ATOMIC_SEQ_CST);
}

void CallShared::Leave(uint32_t k, Outcome outcome, uint64_t result_bytes) {
  if (k >= layout_.workers) return;
  uint8_t* s = CallSlot(map_.data(), layout_, k);
  __atomic_store_n(U64(s, kCallSlotBytes), result_bytes, __ATOMIC_RELAXED);
  __atomic_store_n(U32(s, kCallSlotOutcome), static_cast<uint32_t>(outcome), __ATOMIC_RELAXED);
  __atomic_store_n(U64(s, kCallSlotCurrent), uint64_t{0}, __ATOMIC_RELAXED);
  __atomic_store_n(U32(s, kCallSlotState), static_cast<uint32_t>(SlotState::kLeft), __ATOMIC_SEQ_CST);
}

CallShared::SlotState CallShared::State(uint32_t k) const {
  if (k >= layout_.workers) return SlotState::kNone;
  return static_cast<SlotState>(__atomic_load_n(U32(CallSlot(map_.data(), layout_, k), kCallSlotState), __ATOMIC_SEQ_CST));
}

pid_t CallShared::SlotPid(uint32_t k) const {
  if (k >= layout_.workers) return 0;
  return __atomic_load_n(reinterpret_cast<const int32_t*>(CallSlot(map_.data(), layout_, k) + kCallSlotPid),
                         __ATOMIC_ACQUIRE);
}

uint64_t CallShared::SlotCurrent(uint32_t k) const {
  if (k >= layout_.workers) return kNoTask;
  uint64_t v = __atomic_load_n(current_ + k * (kSlotSize / 8), __ATOMIC_RELAXED);
  return v == 0 ? kNoTask : v - 1;
}

uint64_t CallShared::SlotResultBytes(uint32_t k) const {
  if (k >= layout_.workers) return 0;
  return __atomic_load_n(U64(CallSlot(map_.data(), layout_, k), kCallSlotBytes), __ATOMIC_ACQUIRE);
}

Outcome CallShared::SlotOutcome(uint32_t k) const {
  if (k >= layout_.workers) return Outcome::kOk;
  return static_cast<Outcome>(__atomic_load_n(U32(CallSlot(map_.data(), layout_, k), kCallSlotOutcome), __ATOMIC_ACQUIRE));
}

bool CallShared::Settled() const {
  return Done() >= layout_.tasks || FailedAt() != kNoTask || Broken() || Cancelled();
}

bool CallShared::Quiet() const {
  for (uint32_t k = 0; k < layout_.workers; ++k)
    if (State(k) == SlotState::kWorking) return false;
  return true;
}

Segment OpenOwnedSegment(const SegmentDir& dir, const std::string& name, bool writable) {
  Segment seg = Segment::Open(dir, name, writable);
  struct stat st;
  if (fstat(seg.fd(), &st) != 0) throw SystemError("stat segment", name, "fstat", errno);
  if (st.st_uid != geteuid() || (st.st_mode & 077) != 0)
    throw Error(ErrorKind::kUsage,
                fmt::format("segment '{}' belongs to user {} with mode {:o}: refusing it (a call's segments "
                            "belong to the user who runs the call, mode 0600)",
                            name, st.st_uid, st.st_mode & 07777));
  return seg;
}

SegmentPath SplitSegmentPath(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash + 1 == path.size())
    throw Error(ErrorKind::kUsage, fmt::format("'{}' is not the path of a segment (a directory, '/', a name)", path));
  return SegmentPath{SegmentDir::Open(slash == 0 ? "/" : path.substr(0, slash)), path.substr(slash + 1)};
}

// ---- the control block -------------------------------------------------------------

uint64_t Control::SizeFor(uint32_t workers) { return RoundUp(kCtlSlots + kSlotSize * workers, kPage); }

Control Control::Create(const Segment& segment, uint32_t workers) {
  if (workers < 1 || workers > kMaxWorkers)
    throw Error(ErrorKind::kUsage, fmt::format("the engine needs 1 to {} workers, not {}", kMaxWorkers, workers));
  Control c;
  c.map_ = segment.Map(MapMode::kReadWrite, 0, SizeFor(workers));
  uint8_t* p = c.map_.data();
  std::memset(p, 0, SizeFor(workers));
  std::memcpy(p, kControlMagic, 8);
  Put<uint16_t>(p, 8, 1);
  Put<uint32_t>(p, kCtlWorkers, workers);
  Put<int64_t>(p, kCtlMaster, getpid());
  c.workers_ = workers;
  return c;
}

Control Control::Attach(const Segment& segment) {
  const uint64_t size = segment.Size();
  if (size < kCtlSlots + kSlotSize)
    throw Error(ErrorKind::kProtocol, fmt::format("engine control block '{}' is too small ({} bytes)",
                                                  segment.name(), size));
  Control c;
  c.map_ = segment.Map(MapMode::kReadWrite, 0, size);
  const uint8_t* p = c.map_.data();
  if (std::memcmp(p, kControlMagic, 8) != 0 || Get<uint16_t>(p, 8) != 1)
    throw Error(ErrorKind::kProtocol, fmt::format("'{}' is not an engine control block of version 1",
                                                  segment.name()));
  c.workers_ = Get<uint32_t>(p, kCtlWorkers);
  if (c.workers_ < 1 || c.workers_ > kMaxWorkers || SizeFor(c.workers_) > size)
    throw Error(ErrorKind::kProtocol, fmt::format("engine control block '{}' names {} workers",
                                                  segment.name(), c.workers_));
  return c;
}

uint32_t Control::Seq() const { return __atomic_load_n(U32(map_.data(), kCtlSeq), __ATOMIC_ACQUIRE); }

uint32_t Control::Post(const std::string& call_name, int wake) {
  if (call_name.size() > kMaxCallName)
    throw Error(ErrorKind::kUsage, fmt::format("call segment name '{}' is too long", call_name));
  uint8_t* p = map_.data();
  std::memset(p + kCtlName, 0, kMaxCallName + 1);
  std::memcpy(p + kCtlName, call_name.data(), call_name.size());
  // The name is published by the release of the new job number.
  uint32_t seq = __atomic_add_fetch(U32(p, kCtlSeq), 1u, __ATOMIC_ACQ_REL);
  FutexWake(U32(p, kCtlSeq), std::max(1, wake));
  return seq;
}

void Control::WakeAll() const { FutexWakeAll(U32(map_.data(), kCtlSeq)); }

void Control::Stop() {
  __atomic_store_n(U32(map_.data(), kCtlStop), 1u, __ATOMIC_RELEASE);
  __atomic_add_fetch(U32(map_.data(), kCtlSeq), 1u, __ATOMIC_ACQ_REL);
  FutexWakeAll(U32(map_.data(), kCtlSeq));
}

bool Control::Stopping() const { return __atomic_load_n(U32(map_.data(), kCtlStop), __ATOMIC_ACQUIRE) != 0; }

uint32_t Control::WaitForJob(uint32_t last, double timeout_seconds) const {
  const uint32_t* word = U32(map_.data(), kCtlSeq);
  uint32_t now = __atomic_load_n(word, __ATOMIC_ACQUIRE);
  if (now != last) return now;
  FutexWait(word, last, timeout_seconds);
  return __atomic_load_n(word, __ATOMIC_ACQUIRE);
}

std::string Control::CallName() const {
  const char* s = reinterpret_cast<const char*>(map_.data() + kCtlName);
  return std::string(s, strnlen(s, kMaxCallName));
}

// Sequentially consistent: the call area's protocol (above) relies on it.
SlotState Control::State(uint32_t k) const {
  return static_cast<SlotState>(__atomic_load_n(U32(slot(k), kSlotState), __ATOMIC_SEQ_CST));
}
void Control::SetState(uint32_t k, SlotState s) {
  __atomic_store_n(U32(slot(k), kSlotState), static_cast<uint32_t>(s), __ATOMIC_SEQ_CST);
}
void Control::SetPid(uint32_t k, pid_t pid) {
  __atomic_store_n(reinterpret_cast<int32_t*>(slot(k) + kSlotPid), static_cast<int32_t>(pid), __ATOMIC_RELEASE);
}
pid_t Control::Pid(uint32_t k) const {
  return __atomic_load_n(reinterpret_cast<const int32_t*>(slot(k) + kSlotPid), __ATOMIC_ACQUIRE);
}

void Control::Finish(uint32_t k, uint32_t seq) {
  __atomic_store_n(U32(slot(k), kSlotState), static_cast<uint32_t>(SlotState::kIdle), __ATOMIC_RELAXED);
  __atomic_store_n(U32(slot(k), kSlotDoneSeq), seq, __ATOMIC_RELEASE);
}

uint32_t Control::DoneSeq(uint32_t k) const { return __atomic_load_n(U32(slot(k), kSlotDoneSeq), __ATOMIC_ACQUIRE); }

uint32_t Control::ReadJob(std::string* call_name) const {
  // The master writes the name before it bumps the number; a name read
  // between two equal readings of the number is that job's.
  for (;;) {
    const uint32_t before = Seq();
    *call_name = CallName();
    if (Seq() == before) return before;
  }
}

// ---- results -------------------------------------------------------------------------

void EncodeRecordHeader(uint8_t* out, RecordKind kind, uint64_t first, uint64_t count, uint64_t nbytes) {
  std::memset(out, 0, kRecordHeaderSize);
  Put<uint32_t>(out, 0, static_cast<uint32_t>(kind));
  Put<uint64_t>(out, 8, first);
  Put<uint64_t>(out, 16, count);
  Put<uint64_t>(out, 24, nbytes);
}

void RecordWriter::Write(const uint8_t* p, uint64_t n) {
  while (n > 0) {
    ssize_t w = pwrite(fd_, p, static_cast<size_t>(std::min<uint64_t>(n, uint64_t{1} << 30)), static_cast<off_t>(end_));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw SystemError("write results to", label_, "pwrite", errno);
    }
    p += w;
    end_ += static_cast<uint64_t>(w);
    n -= static_cast<uint64_t>(w);
  }
}

void RecordWriter::Append(RecordKind kind, uint64_t first, uint64_t count, const uint8_t* payload,
                          uint64_t nbytes) {
  uint8_t h[kRecordHeaderSize];
  EncodeRecordHeader(h, kind, first, count, nbytes);
  Write(h, sizeof h);
  if (nbytes) Write(payload, nbytes);
  const uint64_t pad = (8 - nbytes % 8) % 8;
  if (pad) {
    const uint8_t zeros[8] = {};
    Write(zeros, pad);
  }
}

void ReadRecords(const uint8_t* data, uint64_t size, uint64_t tasks, const std::string& label,
                 const std::function<void(const Record&)>& on) {
  uint64_t at = 0;
  bool have_ranges = false;   // the record just read was a ranges record
  uint64_t ranges = 0;        // of this many tasks
  while (at < size) {
    if (size - at < kRecordHeaderSize)
      throw Error(ErrorKind::kProtocol, fmt::format("results of {}: a record header is cut at byte {}", label, at));
    Record r;
    const uint32_t kind = Get<uint32_t>(data, at);
    r.first = Get<uint64_t>(data, at + 8);
    r.count = Get<uint64_t>(data, at + 16);
    r.nbytes = Get<uint64_t>(data, at + 24);
    if (kind != 1 && kind != 2 && kind != 3)
      throw Error(ErrorKind::kProtocol, fmt::format("results of {}: unknown record kind {} at byte {}", label, kind, at));
    r.kind = static_cast<RecordKind>(kind);
    const uint64_t room = size - at - kRecordHeaderSize;
    if (r.nbytes > room || RoundUp(r.nbytes, 8) > room)
      throw Error(ErrorKind::kProtocol,
                  fmt::format("results of {}: a record of {} bytes at byte {} does not fit in {} bytes", label,
                              r.nbytes, at, size));
    r.payload = data + at + kRecordHeaderSize;
    if (r.kind == RecordKind::kRanges) {
      if (r.nbytes % 16 != 0)
        throw Error(ErrorKind::kProtocol, fmt::format("results of {}: ranges of {} bytes at byte {}", label, r.nbytes, at));
      uint64_t sum = 0;
      for (uint64_t j = 0; j < r.nbytes / 16; ++j) {
        const uint64_t f = Get<uint64_t>(r.payload, 16 * j), c = Get<uint64_t>(r.payload, 16 * j + 8);
        if (f >= tasks || c > tasks - f || c == 0)
          throw Error(ErrorKind::kProtocol,
                      fmt::format("results of {}: a range of tasks [{}, {}) outside the call's {} tasks", label, f,
                                  f + c, tasks));
        sum += c;
      }
      if (sum != r.count)
        throw Error(ErrorKind::kProtocol, fmt::format("results of {}: ranges of {} tasks said to hold {}", label, sum,
                                                      r.count));
      ranges = r.count;
    } else if (r.kind == RecordKind::kValues && r.first == kNoTask) {
      if (!have_ranges || ranges != r.count)
        throw Error(ErrorKind::kProtocol,
                    fmt::format("results of {}: {} values at byte {} do not follow ranges of as many tasks", label,
                                r.count, at));
    } else if (r.kind == RecordKind::kValues &&
               (r.first >= tasks || r.count > tasks - r.first || r.count == 0)) {
      throw Error(ErrorKind::kProtocol,
                  fmt::format("results of {}: values of tasks [{}, {}) are outside the call's {} tasks", label,
                              r.first, r.first + r.count, tasks));
    }
    have_ranges = r.kind == RecordKind::kRanges;
    if (r.kind == RecordKind::kFailure && r.first != kNoTask && r.first >= tasks)
      throw Error(ErrorKind::kProtocol,
                  fmt::format("results of {}: a failure of task {} outside the call's {} tasks", label, r.first,
                              tasks));
    on(r);
    at += kRecordHeaderSize + RoundUp(r.nbytes, 8);
  }
}

}  // namespace pyrmap
