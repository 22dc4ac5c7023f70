// channel.h — how a parallel call's master and its workers talk through
// shared memory: the call segment's shared header (a task counter workers
// claim chunks from, progress, cancellation, the first failure), the
// control block of pyrmap's own workers (a job sequence they wait on with a
// futex, one slot each), and the records in which results travel back.
//
// Nothing here knows R: tasks are numbered 0..n-1, payloads are bytes.
//
// The call segment (pyrmap-<uid>-<pid>-<hex>-call, little-endian):
//
//   offset size type   field
//        0    8 u8[8]  magic 89 50 59 52 43 41 4C 4C ("\x89PYRCALL")
//        8    2 u16    version_major (1)
//       10    2 u16    version_minor (0)
//       12    4 u32    header_size (4096)
//       16    8 u64    total_size: bytes of the whole segment
//       24    8 u64    tasks
//       32    4 u32    workers: slots (and the divisor of guided chunks)
//       36    4 u32    flags: bit 0 = FUN.VALUE results go to a segment of
//                      their own, named like this one with "-out" for "-call";
//                      bit 1 = a call in the engine's call area (below)
//       40    8 f64    chunk_seconds: a chunk's target duration
//       48    8 u64    job_offset   \ the job (opaque bytes), 0/0 when it
//       56    8 u64    job_size     / travels by another way
//       64    8 u64    objects_offset: u64 count, then u64 offsets (opaque)
//       72    8 u64    out_offset   \ a region workers write results into
//       80    8 u64    out_size     / (0/0: none in this segment)
//       88    8 u64    data_offset: the end of the shared part (a multiple
//                      of 4096); [data_offset, total_size) holds the
//                      objects, which workers map privately
//       96    4 u32    area_seq: in the call area, the engine job number the
//                      content is for; 0 while the master rewrites it (atomic)
//      256    8 u64    next: the first task not yet claimed      (atomic)
//      320    8 u64    done: tasks finished                      (atomic)
//      384    4 u32    cancel: 1 once the master gave up          (atomic)
//      448    8 u64    fail_at: first failing task + 1, 0: none   (atomic)
//      512    4 u32    broken: 1 once a worker could not take part (atomic)
//      576    4 u32    spread: 1 once all workers were woken         (atomic)
//     4096  64*workers slots, one per worker (atomic):
//                        0 i32 pid
//                        4 u32 state: 0 not joined, 1 working, 2 left
//                        8 u64 current: task in progress + 1 (0: none)
//                       16 u64 result_bytes: records in its result file
//                       24 u32 outcome (Outcome)
//
// A worker joins (state 1) before it claims anything and leaves (state 2)
// once its records are written; the master's call is over when every task
// is done (or a task failed, or a worker could not take part, or the call
// was cancelled) and no worker is still working. A worker that joins later
// finds nothing to claim.
//
// The call area: an unnamed segment of pyrmap's own engine, which master
// and workers keep mapped for the workers' life, used again and again for
// small calls (no segment made, opened or removed per call): the call
// segment's layout (total_size is the content's, the area may be larger),
// posted under the name "@area". Its content is rewritten for each call, so
// elements in it are always copied for FUN, never viewed, and calls with
// side data objects (VARS, which FUN sees as views) do not use it. A worker
// marks itself busy in the control block before it reads the job; the
// master sets area_seq to 0 and then reads the workers' marks, and rewrites
// the area only when none is busy (else the call gets a segment of its
// own), setting area_seq to the job's number last; a worker joins an area
// call only when area_seq equals the job number it read (a worker late for
// an earlier call leaves it). Both sides' store-then-load is sequentially
// consistent, so at least one of them sees the other.
//
// The control block of pyrmap's own workers (an unnamed segment both sides
// keep mapped for the workers' life):
//
//        0    8 u8[8]  magic 89 50 59 52 45 4E 47 4E ("\x89PYRENGN")
//        8    2 u16    version_major (1), 10 u16 version_minor (0)
//       12    4 u32    workers
//       16    8 i64    master_pid
//       64    4 u32    seq: the job number (futex word)            (atomic)
//      128    4 u32    stop: 1 asks the workers to exit            (atomic)
//      192  256 char   the call segment of job `seq`, NUL-terminated
//      512  64*workers slots: i32 pid, u32 state, u32 done_seq    (atomic)
//
// A result record (8-byte aligned, in a worker's result file):
//
//   offset size type   field
//        0    4 u32    kind: 1 values of tasks [first, first + count),
//                      2 failure of task `first` (kNoTask: the worker could
//                      not take part at all)
//        4    4 u32    reserved (0)
//        8    8 u64    first
//       16    8 u64    count
//       24    8 u64    payload bytes (then the payload, padded to 8)
//
// Thread/process safety: the atomic fields are read and written only with
// atomic operations, by any number of processes at once; the other fields
// are written by the master before any worker sees the segment.
#pragma once

#include <sys/types.h>

#include <climits>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "segment.h"

namespace pyrmap {

inline constexpr uint8_t kCallMagic[8] = {0x89, 'P', 'Y', 'R', 'C', 'A', 'L', 'L'};
inline constexpr uint8_t kControlMagic[8] = {0x89, 'P', 'Y', 'R', 'E', 'N', 'G', 'N'};
inline constexpr uint64_t kCallHeaderSize = 4096;
inline constexpr uint64_t kSlotSize = 64;
inline constexpr uint64_t kNoTask = ~uint64_t{0};
inline constexpr uint32_t kMaxWorkers = 1024;
inline constexpr size_t kMaxCallName = 255;
inline constexpr uint32_t kCallOutSegment = 1;
inline constexpr uint32_t kCallArea = 2;
// The name under which a call in the engine's call area is posted.
inline constexpr const char* kCallAreaName = "@area";

// ---- waiting on a word of shared memory --------------------------------------

// Blocks while *word == expected, at most `timeout_seconds` (< 0: no limit).
// Returns false on timeout or when a signal interrupted the wait (the caller
// looks at the word again). The word may be shared between processes.
bool FutexWait(const uint32_t* word, uint32_t expected, double timeout_seconds);
// Wakes every process waiting on `word`, or at most `n` of them.
void FutexWakeAll(const uint32_t* word);
void FutexWake(const uint32_t* word, int n);

// ---- the call segment ----------------------------------------------------------

// How a worker's part of a job ended.
enum class Outcome : uint32_t {
  kOk = 0,           // every task it claimed ran (results recorded)
  kFailed = 1,       // a task failed (a failure record says which)
  kInterrupted = 2,  // interrupted in a task
  kNotStarted = 3,   // could not take part (a failure record with kNoTask says why)
  kNoSpace = 4,      // its results could not be written: the segment directory is full
};


// What the master puts in a call segment's header.
struct CallLayout {
  uint64_t tasks = 0;
  uint32_t workers = 1;
  double chunk_seconds = 0.1;
  uint64_t job_size = 0;      // bytes of the job stored in the segment
  uint64_t objects = 0;       // entries of the objects directory
  uint64_t out_size = 0;      // bytes of the out region in the segment
  uint64_t data_size = 0;     // bytes of the private part
  uint32_t flags = 0;         // kCallOutSegment
  // Filled by Compute(): where everything is.
  uint64_t slots_offset = 0, out_offset = 0, job_offset = 0, objects_offset = 0;
  uint64_t data_offset = 0, total_size = 0;
  void Compute();
};

// The shared header of a call segment, mapped read-write by the master and
// by every worker. Not copyable: it owns its mapping.
class CallShared {
 public:
  // Creates segment `name` in `dir` (exclusively, 0600) of
  // layout.total_size bytes (reserved) and writes the header. The caller
  // fills the rest with segment().Write() and removes the name.
  static CallShared Create(const SegmentDir& dir, const std::string& name, CallLayout layout);
  // Opens a call segment of `dir` made by this user (anything else, or a
  // damaged header, is refused) and maps its shared part.
  static CallShared Open(const SegmentDir& dir, const std::string& name);
  // The engine's call area (above), mapped whole; no call in it yet.
  static CallShared OverArea(Segment area);
  // Master, for the call area: Invalidate() (area_seq 0) before looking at
  // the workers' marks; Fits(): whether a call of `layout` fits; Reset()
  // writes its header (counters and slots zeroed); after the job, objects
  // and data are in, Publish(seq) makes it job `seq`'s.
  void Invalidate();
  bool Fits(CallLayout layout) const;
  void Reset(CallLayout layout);
  void Publish(uint32_t seq);
  // Worker, for the call area: reads the layout of job `seq`'s call; false
  // (nothing read) when the area does not hold that job's call.
  bool Refresh(uint32_t seq);
  bool area() const { return area_; }

  CallShared(CallShared&&) noexcept = default;
  CallShared& operator=(CallShared&&) noexcept = default;

  const CallLayout& layout() const { return layout_; }
  Segment& segment() { return segment_; }
  const std::string& name() const { return segment_.name(); }
  // The shared part, [0, data_offset).
  uint8_t* shared() const { return map_.data(); }
  // Master: writes the job's bytes and the objects directory (as many
  // offsets as layout().objects).
  void WriteJob(const uint8_t* bytes, uint64_t n);
  void WriteObjects(const std::vector<uint64_t>& offsets);
  // The job's bytes (in the shared mapping) and the segment offset of
  // object i; throws Error(kProtocol) for an offset outside the data.
  const uint8_t* job() const { return layout_.job_size ? map_.data() + layout_.job_offset : nullptr; }
  uint64_t Object(uint64_t i) const;
  // The out region (null when there is none in this segment).
  uint8_t* out() const { return layout_.out_size ? map_.data() + layout_.out_offset : nullptr; }

  // Claims the next chunk of tasks: at most max(1, ceil(left / (2 *
  // workers))) and at most `max_chunk` (>= 1). False when no task is left,
  // the call was cancelled, or a task failed (nothing more is started).
  bool Claim(uint64_t max_chunk, uint64_t* first, uint64_t* count);
  void AddDone(uint64_t count);
  // Tasks claimed so far.
  uint64_t Claimed() const;
  uint64_t Done() const;
  // Records that `task` failed (keeps the smallest); later claims fail.
  void Fail(uint64_t task);
  // The first failing task seen so far, or kNoTask.
  uint64_t FailedAt() const;
  void Cancel();
  bool Cancelled() const;
  // A worker could not take part: later claims fail, the call is over.
  void Break();
  bool Broken() const;
  // Whether the call's work is worth every worker: the first caller gets
  // true (and wakes the others), later ones false.
  bool Spread();

  // Slot k (< workers). A worker joins before its first claim and leaves
  // once its records are written; between, `current` is the task it is in.
  void Join(uint32_t k, pid_t pid);
  void SetCurrent(uint32_t k, uint64_t task) {
    __atomic_store_n(current_ + k * (kSlotSize / 8), task + 1, __ATOMIC_RELAXED);
  }
  void Leave(uint32_t k, Outcome outcome, uint64_t result_bytes);
  enum class SlotState : uint32_t { kNone = 0, kWorking = 1, kLeft = 2 };
  SlotState State(uint32_t k) const;
  pid_t SlotPid(uint32_t k) const;
  uint64_t SlotCurrent(uint32_t k) const;  // kNoTask: none
  uint64_t SlotResultBytes(uint32_t k) const;
  Outcome SlotOutcome(uint32_t k) const;
  // Master: every task is done, or nothing more will be: a failure, a
  // worker that could not take part, or a cancel.
  bool Settled() const;
  // No worker is working (all that joined have left).
  bool Quiet() const;

 private:
  CallShared() = default;
  Segment segment_ = Segment::Adopt(-1, "");
  Mapping map_;
  CallLayout layout_;
  uint64_t* current_ = nullptr;  // slot 0's `current`
  bool area_ = false;
};

// Opens segment `name` of `dir` and refuses it unless this user owns it and
// no one else may read or write it (mode 0600 or stricter): another local
// user could otherwise hand a worker data of their choosing.
Segment OpenOwnedSegment(const SegmentDir& dir, const std::string& name, bool writable);

// A segment given by its path (the directory, checked as SegmentDir::Open
// does, and the name in it), as a call's segments are named to workers:
// splits `path` at its last '/'. Error(kUsage) for a path without one.
struct SegmentPath {
  SegmentDir dir;
  std::string name;
};
SegmentPath SplitSegmentPath(const std::string& path);

// ---- pyrmap's own workers: the control block -------------------------------------

enum class SlotState : uint32_t { kStarting = 0, kIdle = 1, kBusy = 2 };

// The control block, seen from either side. Not copyable: owns its mapping.
class Control {
 public:
  // Bytes of the control block for `workers` slots.
  static uint64_t SizeFor(uint32_t workers);
  // Writes a fresh control block into `segment` (already sized).
  static Control Create(const Segment& segment, uint32_t workers);
  // Maps the control block of descriptor `segment`; checks its header.
  static Control Attach(const Segment& segment);

  Control(Control&&) noexcept = default;
  Control& operator=(Control&&) noexcept = default;

  uint32_t workers() const { return workers_; }
  uint32_t Seq() const;
  // Master: publishes the call segment of the next job and wakes `wake`
  // workers (the others see it when woken later). Returns the new job
  // number.
  uint32_t Post(const std::string& call_name, int wake = INT32_MAX);
  // Wakes every worker waiting for a job.
  void WakeAll() const;
  void Stop();
  bool Stopping() const;
  // Worker: waits (at most `timeout_seconds`, < 0 for ever) until the job
  // number differs from `last`; returns the new number, or `last` on
  // timeout or a signal.
  uint32_t WaitForJob(uint32_t last, double timeout_seconds) const;
  std::string CallName() const;

  SlotState State(uint32_t k) const;
  void SetState(uint32_t k, SlotState s);
  void SetPid(uint32_t k, pid_t pid);
  pid_t Pid(uint32_t k) const;
  // Worker: it is done with job `seq` (and idle).
  void Finish(uint32_t k, uint32_t seq);
  uint32_t DoneSeq(uint32_t k) const;
  // Worker: the job number and its call segment, read consistently.
  uint32_t ReadJob(std::string* call_name) const;

 private:
  Control() = default;
  uint8_t* slot(uint32_t k) const { return map_.data() + 512 + kSlotSize * k; }
  Mapping map_;
  uint32_t workers_ = 0;
};

// ---- results -------------------------------------------------------------------------

enum class RecordKind : uint32_t { kValues = 1, kFailure = 2, kRanges = 3 };

inline constexpr uint64_t kRecordHeaderSize = 32;

// Appends records to a worker's result file, from a starting offset. Not
// synchronised; one writer per file.
class RecordWriter {
 public:
  // `fd` stays owned by the caller.
  RecordWriter(int fd, std::string label, uint64_t offset = 0)
      : fd_(fd), label_(std::move(label)), end_(offset) {}
  void Append(RecordKind kind, uint64_t first, uint64_t count, const uint8_t* payload,
              uint64_t nbytes);
  // Appends records already encoded (EncodeRecordHeader + payload + padding).
  void Write(const uint8_t* bytes, uint64_t n);
  // Bytes written so far (the offset after the last record).
  uint64_t end() const { return end_; }

 private:
  int fd_;
  std::string label_;
  uint64_t end_;
};

// Writes a record header into out[0, kRecordHeaderSize); the payload of
// `nbytes` follows it, padded with zeros to a multiple of 8.
void EncodeRecordHeader(uint8_t* out, RecordKind kind, uint64_t first, uint64_t count, uint64_t nbytes);

struct Record {
  RecordKind kind;
  uint64_t first;
  uint64_t count;
  const uint8_t* payload;
  uint64_t nbytes;
};

// Calls on(record) for each record of [data, data + size), in order. Throws
// Error(kProtocol) naming `label` for a record that does not fit, an unknown
// kind, tasks outside [0, tasks), or values of ranges (first = kNoTask)
// that do not follow a ranges record of as many tasks.
void ReadRecords(const uint8_t* data, uint64_t size, uint64_t tasks, const std::string& label,
                 const std::function<void(const Record&)>& on);

}  // namespace pyrmap
