// engine_r.cpp — memApply()/memLapply()'s engine, R side: a call's data
// packed into its call segment, pyrmap's own R workers (src/engine.h) held
// by an R handle, the workers' task loop (FUN called from C on each
// element, results serialized per chunk or written straight into a shared
// vector), and the master's gathering of the results.
//
// Plain R API, no Rcpp (see rlist.h): the workers call these. Every entry
// point returns list(ok = FALSE, kind, message) for a core error, which the
// R side raises as a classed condition; R errors raised inside unwind the
// C++ frames first (RCall/Entry). A worker's job runs under RCall too: an
// error or interrupt in FUN unwinds the entry point's frames to the R
// handler of the worker's loop, and the job's state, kept aside
// (g_current), is then recorded as a failure and left.
#ifndef R_NO_REMAP
#define R_NO_REMAP
#endif
#include <Rinternals.h>
#include <R_ext/Rdynload.h>

#include <fcntl.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "channel.h"
#include "engine.h"
#include "error.h"
#include "packed.h"
#include "rconvert.h"
#include "registry.h"
#include "registry_r.h"
#include "rlist.h"
#include "views.h"

// R's flag for a pending interrupt (R_ext/GraphicsDevice.h declares it too).
extern "C" int R_interrupts_pending;

using namespace pyrmap;
using namespace pyrmap::r;

namespace {

// Elements of X smaller than this reach FUN as ordinary vectors (a copy
// costs less than a view); larger ones, and VARS, as views.
constexpr uint64_t kCopyBelow = 16 * 1024;
// How long a call waits for the workers to mark themselves idle before it
// makes a call segment of its own instead of using the call area.
constexpr double kAreaWaitSeconds = 200e-6;
// A worker's records up to this size are read (one pread) rather than mapped.
constexpr uint64_t kReadRecordsBelow = 1 << 20;
// FUN.VALUE results up to this size are written into the call segment and
// copied into an ordinary vector; larger ones get a segment of their own and
// come back as a view of it.
constexpr uint64_t kSmallOut = 1 << 20;
// A worker whose call mapped this much collects before it leaves the call.
constexpr uint64_t kCollectBytes = 64 << 20;
// A worker flushes its result records to its file past this size.
constexpr uint64_t kFlushBytes = 16 << 20;
// The master gives back the memory of a worker's result file past this size.
constexpr uint64_t kKeepResultBytes = 64 << 20;
// A call is posted to one worker; it wakes the others once the work left
// looks longer than this at the cost per task it measured, and the master
// wakes them when the call is not over after kSpreadAfter.
constexpr double kSpreadSeconds = 250e-6;
constexpr double kSpreadAfter = 1e-3;

// This process's engine worker, when it is one (set at attach).
EngineWorker* g_engine_worker = nullptr;

double Now() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

SEXP Fail(const Error& e) {
  SEXP out = PROTECT(NamedList({"ok", "kind", "message"}));
  SetField(out, "ok", Rf_ScalarLogical(FALSE));
  SetField(out, "kind", Str(ErrorKindName(e.kind())));
  SetField(out, "message", Str(e.what()));
  UNPROTECT(1);
  return out;
}

template <typename F>
SEXP Guarded(F&& body) {
  return Entry(body, [](const Error& e) { return Fail(e); });
}

template <typename F>
SEXP Build(F&& f) {
  SEXP out = R_NilValue;
  RCall([&] { out = f(); });
  return out;
}

// Field `name` of list `x`, or R_NilValue.
SEXP Field(SEXP x, const char* name) {
  if (TYPEOF(x) != VECSXP) return R_NilValue;
  SEXP nm = Rf_getAttrib(x, R_NamesSymbol);
  for (R_xlen_t i = 0; i < XLENGTH(x) && nm != R_NilValue; ++i)
    if (std::strcmp(CHAR(STRING_ELT(nm, i)), name) == 0) return VECTOR_ELT(x, i);
  return R_NilValue;
}

std::string FieldString(SEXP x, const char* name) {
  SEXP v = Field(x, name);
  if (TYPEOF(v) != STRSXP || XLENGTH(v) != 1 || STRING_ELT(v, 0) == NA_STRING)
    throw Error(ErrorKind::kProtocol, fmt::format("the job has no text field '{}'", name));
  return Utf8(STRING_ELT(v, 0), name);
}

int FieldInt(SEXP x, const char* name, int otherwise) {
  SEXP v = Field(x, name);
  if (v == R_NilValue || XLENGTH(v) != 1) return otherwise;
  return Rf_asInteger(v);
}

// R's interrupt check, as an R condition that unwinds the C++ frames first.
void CheckInterrupt() {
  RCall([] { R_CheckUserInterrupt(); });
}

// ---- the R types a FUN.VALUE template may have ----------------------------------

struct OutSpec {
  SEXPTYPE type = NILSXP;  // NILSXP: no FUN.VALUE
  uint64_t len = 0;        // elements per task
  size_t item() const { return type == REALSXP ? 8 : type == RAWSXP ? 1 : 4; }
};

OutSpec ParseOut(SEXP spec) {
  OutSpec o;
  if (spec == R_NilValue) return o;
  const std::string type = FieldString(spec, "type");
  o.type = type == "double" ? REALSXP : type == "integer" ? INTSXP : type == "logical" ? LGLSXP
           : type == "raw"  ? RAWSXP : NILSXP;
  if (o.type == NILSXP) throw Error(ErrorKind::kUsage, fmt::format("FUN.VALUE of type '{}' is not supported", type));
  SEXP len = Field(spec, "len");
  if (len == R_NilValue || Rf_asReal(len) < 0) throw Error(ErrorKind::kProtocol, "the job's FUN.VALUE has no length");
  o.len = static_cast<uint64_t>(Rf_asReal(len));
  return o;
}

// ---- the master's call ------------------------------------------------------------

enum class ObjectMode { kSingle, kList, kSplit };

ObjectMode ParseMode(const std::string& m) {
  if (m == "single" || m == "matrix") return ObjectMode::kSingle;
  if (m == "list") return ObjectMode::kList;
  if (m == "split") return ObjectMode::kSplit;
  throw Error(ErrorKind::kProtocol, fmt::format("unknown object mode '{}'", m));
}

// A plain double/integer/logical/raw vector without attributes: no need to
// ask ClassifyInput (the fast path for lists of many small elements).
bool PlainVector(SEXP x, RKind* kind) {
  if (ATTRIB(x) != R_NilValue) return false;
  switch (TYPEOF(x)) {
    case REALSXP: *kind = RKind::kDouble; return true;
    case INTSXP: *kind = RKind::kInteger; return true;
    case LGLSXP: *kind = RKind::kLogical; return true;
    case RAWSXP: *kind = RKind::kRaw; return true;
    default: return false;
  }
}

void AddArray(PackedWriter& w, SEXP x, const std::string& what) {
  RKind kind;
  PackedSource s;
  if (PlainVector(x, &kind)) {
    s.tag = ArrayTag(kind, false);
    s.dtype = StorageDtype(kind);
    s.count = static_cast<uint64_t>(XLENGTH(x));
  } else {
    PageArray a = Describe(x, what);
    kind = TagKind(a.tag);
    s.tag = a.tag;
    s.dtype = a.desc.dtype;
    s.count = a.desc.count;
    if (TagHasDim(a.tag)) s.shape = a.desc.shape;
  }
  s.data = s.count ? RData(x) : nullptr;  // may materialise ALTREP: before anything is written
  w.Add(std::move(s));
}

// Packs R object `x` as `mode`: one array, a list of arrays, or a plain
// vector whose elements are the tasks.
PackedWriter PackObject(SEXP x, ObjectMode mode, const std::string& label) {
  PackedWriter w(static_cast<uint32_t>(mode));
  if (mode == ObjectMode::kList) {
    if (TYPEOF(x) != VECSXP) throw Error(ErrorKind::kUsage, fmt::format("{} must be a list", label));
    const R_xlen_t n = XLENGTH(x);
    for (R_xlen_t i = 0; i < n; ++i) AddArray(w, VECTOR_ELT(x, i), fmt::format("element {} of {}", i + 1, label));
  } else {
    AddArray(w, x, label);
  }
  return w;
}

// Everything a call made in this process: its segments (their names are
// removed by `names`, however the call ends) and what gathering needs.
struct MasterCall {
  MasterCall() = default;
  SegmentDir dir;  // where its segments are
  CallShared* shared = nullptr;     // own_, or the engine's call area
  std::optional<CallShared> own;    // a call segment of its own
  bool area = false;                // in the engine's call area
  std::optional<SegmentGuard> names;  // of the segments it made (none in the area)
  std::optional<Segment> out_seg;     // large FUN.VALUE results
  std::vector<Segment> result_files;  // a user cluster's workers' result files
  OutSpec out;
  uint64_t tasks = 0;
  std::string what;  // "memApply"
  double posted_at = 0;
  bool closed = false;

  void Close() {
    if (closed) return;
    closed = true;
    if (names) names->RemoveAll();
    result_files.clear();
    out_seg.reset();
    shared = nullptr;  // (the call area stays the engine's)
    own.reset();
  }
};

SEXP CallTag() {
  static SEXP tag = Rf_install("pyrmap_call");
  return tag;
}
SEXP EngineTag() {
  static SEXP tag = Rf_install("pyrmap_engine");
  return tag;
}
SEXP EngineWorkerTag() {
  static SEXP tag = Rf_install("pyrmap_engine_worker");
  return tag;
}

void FinalizeCall(SEXP p) {
  auto* c = static_cast<MasterCall*>(R_ExternalPtrAddr(p));
  R_ClearExternalPtr(p);
  delete c;  // removes the names
}

// The call area over a duplicate (numbered `lowest` or more) of `fd`.
std::unique_ptr<CallShared> OverArea(int fd, int lowest) {
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, lowest);
  if (dup < 0) throw SystemError("use the engine's", "call area", "fcntl", errno);
  return std::make_unique<CallShared>(CallShared::OverArea(Segment::Adopt(dup, "the engine's call area")));
}

// The master's side of each engine's call area, made on first use.
std::unordered_map<const Engine*, std::unique_ptr<CallShared>>& Areas() {
  static auto* m = new std::unordered_map<const Engine*, std::unique_ptr<CallShared>>();
  return *m;
}

CallShared& AreaOf(const Engine* e) {
  auto& slot = Areas()[e];
  if (!slot) slot = OverArea(e->Area().fd(), 0);
  return *slot;
}

// Whether the call area may be rewritten for a new call: no worker is
// between taking a job and finishing it (see channel.h). A worker that just
// finished the last call marks itself idle a moment after the master saw
// the call over: waited for briefly.
bool AreaFree(Engine* e, CallShared& area) {
  area.Invalidate();
  const double until = Now() + kAreaWaitSeconds;
  for (;;) {
    bool busy = false;
    for (uint32_t k = 0; k < e->workers() && !busy; ++k) busy = e->control().State(k) == SlotState::kBusy;
    if (!busy) return true;
    if (Now() > until) return false;
    sched_yield();
  }
}

void FinalizeEngine(SEXP p) {
  auto* e = static_cast<Engine*>(R_ExternalPtrAddr(p));
  R_ClearExternalPtr(p);
  Areas().erase(e);
  try {
    delete e;  // kills the workers (not in a forked child)
  } catch (...) {
  }
}

MasterCall* CallOf(SEXP x) {
  if (TYPEOF(x) != EXTPTRSXP || R_ExternalPtrTag(x) != CallTag())
    throw Error(ErrorKind::kUsage, "not a pyrmap call handle");
  auto* c = static_cast<MasterCall*>(R_ExternalPtrAddr(x));
  if (!c || c->closed) throw Error(ErrorKind::kUsage, "the call is over");
  return c;
}

Engine* EngineOf(SEXP x) {
  if (TYPEOF(x) != EXTPTRSXP || R_ExternalPtrTag(x) != EngineTag())
    throw Error(ErrorKind::kUsage, "not a pyrmap engine handle");
  auto* e = static_cast<Engine*>(R_ExternalPtrAddr(x));
  if (!e || e->closed()) throw Error(ErrorKind::kUsage, "the engine is closed");
  return e;
}

// ---- reading results back ---------------------------------------------------------

struct MemIn {
  const uint8_t* p;
  uint64_t left;
};

int InChar(R_inpstream_t s) {
  auto* m = static_cast<MemIn*>(s->data);
  if (m->left == 0) Rf_error("pyrmap: a result record ends too early");
  --m->left;
  return *m->p++;
}

void InBytes(R_inpstream_t s, void* buf, int n) {
  auto* m = static_cast<MemIn*>(s->data);
  if (n < 0 || static_cast<uint64_t>(n) > m->left) Rf_error("pyrmap: a result record ends too early");
  std::memcpy(buf, m->p, static_cast<size_t>(n));
  m->p += n;
  m->left -= static_cast<uint64_t>(n);
}

// Unserializes `n` bytes at `p` (R errors unwind through RCall).
SEXP Unserialize(const uint8_t* p, uint64_t n) {
  MemIn m{p, n};
  struct R_inpstream_st in;
  SEXP out = R_NilValue;
  RCall([&] {
    R_InitInPStream(&in, &m, R_pstream_any_format, InChar, InBytes, nullptr, R_NilValue);
    out = R_Unserialize(&in);
  });
  return out;
}

struct Failure {
  uint64_t task = kNoTask;  // kNoTask with `setup`: a worker could not take part
  bool setup = false;
  bool seen = false;
  const uint8_t* payload = nullptr;
  uint64_t nbytes = 0;
};

// ---- the workers' side ----------------------------------------------------------------

// The call as a worker sees it.
struct WorkerCall {
  CallShared* shared = nullptr;   // own, or the engine's call area
  std::optional<CallShared> own;
  bool area = false;
  std::shared_ptr<Mapping> data;  // the private part (none in the call area)
  const uint8_t* data_at = nullptr;  // the objects: in `data` or the area
  uint64_t data_len = 0;
  uint64_t origin = 0;            // their offset in the segment
  std::optional<Segment> result_file;
  int result_fd = -1;
  std::string result_label;
  uint64_t result_end = 0;        // bytes written to the result file
  std::vector<uint8_t> pending;   // records not yet written
  std::optional<Segment> out_seg;
  std::optional<Mapping> out_map;
  uint8_t* out = nullptr;
  uint64_t out_size = 0;
  uint32_t slot = 0;
  std::optional<OpenedPage> x_page;

  void Flush() {
    if (pending.empty()) return;
    RecordWriter w(result_fd, result_label, result_end);
    w.Write(pending.data(), pending.size());
    result_end = w.end();
    pending.clear();
  }
};

// One array as an element: where it is and what it is.
struct ArrayAt {
  uint32_t tag = 0;
  Dtype dtype = Dtype::kNone;
  uint32_t ndim = 0;
  const uint64_t* shape = nullptr;
  uint64_t count = 0;
  const uint8_t* data = nullptr;
  uint64_t offset = 0;
};

ArrayAt FromEntry(const PackedEntry& e) {
  return ArrayAt{e.tag, e.dtype, e.ndim, e.shape, e.count, e.data, e.offset};
}

ArrayAt FromPage(const OpenedPage& p, size_t i) {
  const PageArray& a = p.info.arrays[i];
  return ArrayAt{a.tag, a.desc.dtype, TagHasDim(a.tag) ? static_cast<uint32_t>(a.desc.shape.size()) : 0u,
                 a.desc.shape.data(), a.desc.count, p.data(i), a.desc.offset};
}

// Where element views point: the mapping that keeps them alive, and for a
// page its name and generation (so that run_python() can use it as is).
struct Backing {
  std::shared_ptr<Mapping> mapping;
  std::string segment;
  uint64_t generation = 0;
  std::string dir;  // the segment's directory (with `segment`)
};

// An R vector for `a`: a view when `view` (and it is not empty), else a
// copy. R errors come as RUnwind.
SEXP ArrayToR(const ArrayAt& a, const Backing& b, bool view, const std::string& label) {
  const RKind kind = TagKind(a.tag);
  if (a.dtype != StorageDtype(kind))
    throw Error(ErrorKind::kProtocol, fmt::format("{}: stored as {}, not as R's {}", label, DtypeName(a.dtype),
                                                  DtypeName(StorageDtype(kind))));
  if (a.count > static_cast<uint64_t>(R_XLEN_T_MAX))
    throw Error(ErrorKind::kProtocol, fmt::format("{}: {} elements", label, a.count));
  const SEXPTYPE type = SexpType(kind);
  SEXP ans;
  if (view && a.count > 0) {
    ViewSource src;
    src.mapping = b.mapping;
    src.data = a.data;
    src.length = static_cast<R_xlen_t>(a.count);
    src.segment = b.segment;
    if (!b.segment.empty()) src.dir = b.dir;
    src.offset = a.offset;
    src.generation = b.generation;
    ans = MakeView(type, std::move(src));
  } else {
    ans = R_NilValue;
    RCall([&] { ans = Rf_allocVector(type, static_cast<R_xlen_t>(a.count)); });
    if (a.count) std::memcpy(DATAPTR(ans), a.data, a.count * ItemSize(a.dtype));
  }
  const bool has_dim = TagHasDim(a.tag) && a.ndim > 0;
  if (has_dim || kind == RKind::kInteger64) {
    for (uint32_t k = 0; has_dim && k < a.ndim; ++k)
      if (a.shape[k] > static_cast<uint64_t>(INT_MAX))
        throw Error(ErrorKind::kUsage, fmt::format("{}: a dimension of {} is beyond R's limit", label, a.shape[k]));
    PROTECT(ans);
    RCall([&] {
      if (has_dim) {
        SEXP dim = PROTECT(Rf_allocVector(INTSXP, a.ndim));
        for (uint32_t k = 0; k < a.ndim; ++k) INTEGER(dim)[k] = static_cast<int>(a.shape[k]);
        Rf_setAttrib(ans, R_DimSymbol, dim);
        UNPROTECT(1);
      }
      if (kind == RKind::kInteger64) Rf_setAttrib(ans, R_ClassSymbol, Rf_mkString("integer64"));
    });
    UNPROTECT(1);
  }
  return ans;
}

// How X's elements are made.
struct Elements {
  enum Kind { kMatrix, kList, kSplit } kind = kList;
  int margin = 2;
  Backing backing;
  // kList: one of these two
  std::optional<PackedTable> table;
  const OpenedPage* page = nullptr;
  // kMatrix, kSplit: the array
  ArrayAt array;
  uint64_t nrow = 0, ncol = 0;
  std::string label;  // "X"
  bool copy_all = false;  // no views of the call's data (the call area)

  uint64_t size() const {
    if (kind == kMatrix) return margin == 1 ? nrow : ncol;
    if (kind == kSplit) return array.count;
    return table ? table->size() : page->info.arrays.size();
  }

  // Element i (0-based) for FUN. R errors as RUnwind; core errors thrown.
  SEXP Make(uint64_t i) const {
    if (kind == kList) {
      ArrayAt a = table ? FromEntry(table->at(i)) : FromPage(*page, static_cast<size_t>(i));
      return ArrayToR(a, backing, !copy_all && a.count * ItemSize(a.dtype) >= kCopyBelow, label);
    }
    const RKind rk = TagKind(array.tag);
    const SEXPTYPE type = SexpType(rk);
    const size_t item = ItemSize(array.dtype);
    SEXP ans = R_NilValue;
    if (kind == kSplit) {
      RCall([&] { ans = Rf_allocVector(type, 1); });
      std::memcpy(DATAPTR(ans), array.data + i * item, item);
    } else if (margin == 2) {
      ArrayAt col = array;
      col.ndim = 0;
      col.tag = ArrayTag(rk, false);
      col.count = nrow;
      col.data = array.data ? array.data + i * nrow * item : nullptr;
      col.offset = array.offset + i * nrow * item;
      // Columns of a registered matrix are always views (zero copy, and
      // run_python() can use them as they are); small columns of the call's
      // own copy are copied.
      return ArrayToR(col, backing, !backing.segment.empty() || (!copy_all && nrow * item >= kCopyBelow), label);
    } else {
      RCall([&] { ans = Rf_allocVector(type, static_cast<R_xlen_t>(ncol)); });
      uint8_t* out = static_cast<uint8_t*>(DATAPTR(ans));
      const uint8_t* in = array.data + i * item;
      for (uint64_t c = 0; c < ncol; ++c) std::memcpy(out + c * item, in + c * nrow * item, item);
    }
    if (rk == RKind::kInteger64) {
      PROTECT(ans);
      RCall([&] { Rf_setAttrib(ans, R_ClassSymbol, Rf_mkString("integer64")); });
      UNPROTECT(1);
    }
    return ans;
  }
};

// ---- the task loop ----------------------------------------------------------------------

int OutChar(R_outpstream_t s, int c) {
  static_cast<std::vector<uint8_t>*>(s->data)->push_back(static_cast<uint8_t>(c));
  return c;
}
void OutBytes(R_outpstream_t s, void* buf, int n) {
  auto* v = static_cast<std::vector<uint8_t>*>(s->data);
  const uint8_t* b = static_cast<const uint8_t*>(buf);
  v->insert(v->end(), b, b + n);
}

void OutCharVoid(R_outpstream_t s, int c) { OutChar(s, c); }

// Appends a record whose payload is the serialization of `value`.
void AppendSerialized(std::vector<uint8_t>* buf, RecordKind kind, uint64_t first, uint64_t count, SEXP value) {
  const size_t start = buf->size();
  buf->resize(start + kRecordHeaderSize);
  struct R_outpstream_st out;
  R_InitOutPStream(&out, buf, R_pstream_binary_format, 3, OutCharVoid, OutBytes, nullptr, R_NilValue);
  R_Serialize(value, &out);
  const uint64_t nbytes = buf->size() - start - kRecordHeaderSize;
  EncodeRecordHeader(buf->data() + start, kind, first, count, nbytes);
  buf->resize(start + kRecordHeaderSize + (nbytes + 7) / 8 * 8, 0);
}

// The state of one run of the task loop, kept aside (g_current) while it
// runs, so that an R error out of FUN leaves it for the R handler.
struct Setup;

struct Run {
  WorkerCall* ctx = nullptr;
  Setup* setup = nullptr;
  bool in_tasks = false;  // past the setup: failures are FUN's
  Elements* elements = nullptr;
  OutSpec out;
  SEXP call = R_NilValue;  // FUN(<element>, <VARS>...)
  // [0] (unused), [1] the chunk's values, [2] the values of the
  // chunks not yet serialized (a list of the chunks' lists), [3] the job
  // and FUN, [4] FUN's call, [5] the registered variables viewed (a
  // pairlist of the job's VARS entries)
  SEXP keep = R_NilValue;
  std::vector<uint64_t> ranges;  // (first, count) of those chunks
  R_xlen_t held = 0;             // chunks in keep[2]
  double chunk_seconds = 0.1;
  uint64_t task = kNoTask;  // the task in progress
  // How the loop ended (an R error leaves it by unwinding instead).
  enum End { kRan, kStopped, kMismatch, kCoreError } end = kRan;
  std::string message;  // kMismatch, kCoreError
  SEXP unwind = nullptr;  // an R error to continue after the C++ frames
};

const char* TypeName(SEXPTYPE t) { return Rf_type2char(t); }

// Chunks whose values are held before they are serialized together.
constexpr R_xlen_t kHeldChunks = 64;

// Serializes the held chunks' values as one ranges record and one values
// record (one serialization per run, not per chunk: each costs a few
// microseconds). May raise R errors (serialization).
void SerializeHeld(Run* run) {
  if (run->held == 0) return;
  SEXP chunks = VECTOR_ELT(run->keep, 2);
  uint64_t total = 0;
  for (size_t j = 1; j < run->ranges.size(); j += 2) total += run->ranges[j];
  SEXP flat = PROTECT(Rf_allocVector(VECSXP, static_cast<R_xlen_t>(total)));
  R_xlen_t at = 0;
  for (R_xlen_t c = 0; c < run->held; ++c) {
    SEXP v = VECTOR_ELT(chunks, c);
    for (R_xlen_t j = 0; j < XLENGTH(v); ++j) SET_VECTOR_ELT(flat, at++, VECTOR_ELT(v, j));
  }
  std::vector<uint8_t>& buf = run->ctx->pending;
  const size_t start = buf.size();
  const uint64_t range_bytes = 8 * run->ranges.size();
  buf.resize(start + kRecordHeaderSize + range_bytes);
  EncodeRecordHeader(buf.data() + start, RecordKind::kRanges, 0, total, range_bytes);
  std::memcpy(buf.data() + start + kRecordHeaderSize, run->ranges.data(), range_bytes);
  AppendSerialized(&buf, RecordKind::kValues, kNoTask, total, flat);
  UNPROTECT(1);
  run->ranges.clear();
  run->held = 0;
  SET_VECTOR_ELT(run->keep, 2, R_NilValue);
}

// Writes FUN's result `r` for task i into the out region; false (and
// run->message) when it does not fit the template.
bool PutOut(Run* run, uint64_t i, SEXP r) {
  const OutSpec& o = run->out;
  const SEXPTYPE t = TYPEOF(r);
  const bool type_ok = t == o.type || (o.type == REALSXP && (t == INTSXP || t == LGLSXP)) ||
                       (o.type == INTSXP && t == LGLSXP);
  if (!type_ok) {
    run->message = fmt::format("values must be type '{}', but FUN's result is type '{}'", TypeName(o.type),
                               TypeName(t));
    return false;
  }
  if (static_cast<uint64_t>(XLENGTH(r)) != o.len) {
    run->message = fmt::format("values must be length {}, but FUN's result is length {}", o.len,
                               static_cast<uint64_t>(XLENGTH(r)));
    return false;
  }
  uint8_t* dst = run->ctx->out + i * o.len * o.item();
  const R_xlen_t n = static_cast<R_xlen_t>(o.len);
  if (o.type == REALSXP && t != REALSXP) {
    double* d = reinterpret_cast<double*>(dst);
    for (R_xlen_t k = 0; k < n; ++k) {
      int v = t == INTSXP ? INTEGER_ELT(r, k) : LOGICAL_ELT(r, k);
      d[k] = v == NA_INTEGER ? NA_REAL : static_cast<double>(v);
    }
    return true;
  }
  switch (o.type) {
    case REALSXP: REAL_GET_REGION(r, 0, n, reinterpret_cast<double*>(dst)); break;
    case INTSXP:
      if (t == INTSXP) INTEGER_GET_REGION(r, 0, n, reinterpret_cast<int*>(dst));
      else LOGICAL_GET_REGION(r, 0, n, reinterpret_cast<int*>(dst));
      break;
    case LGLSXP: LOGICAL_GET_REGION(r, 0, n, reinterpret_cast<int*>(dst)); break;
    case RAWSXP: RAW_GET_REGION(r, 0, n, reinterpret_cast<Rbyte*>(dst)); break;
    default: break;
  }
  return true;
}

// The loop, run under RCall: claims chunks, makes each element, calls FUN,
// stores its result. Holds no object with a destructor while R code runs:
// FUN's errors longjmp out of here into RCall.
SEXP RunLoop(void* data) {
  Run* run = static_cast<Run*>(data);
  CallShared& shared = *run->ctx->shared;
  uint64_t cap = 1;  // the first chunk is one task: its cost is unknown
  uint64_t first = 0, count = 0;
  while (shared.Claim(cap, &first, &count)) {
    const double t0 = Now();
    SEXP values = R_NilValue;
    if (run->out.type == NILSXP) {
      values = Rf_allocVector(VECSXP, static_cast<R_xlen_t>(count));
      SET_VECTOR_ELT(run->keep, 1, values);
    }
    for (uint64_t k = 0; k < count; ++k) {
      const uint64_t i = first + k;
      if (shared.Cancelled() || shared.FailedAt() < i) {
        run->end = Run::kStopped;
        return R_NilValue;
      }
      run->task = i;
      shared.SetCurrent(run->ctx->slot, i);
      SEXP el = R_NilValue;
      bool core_error = false;
      try {
        el = run->elements->Make(i);
      } catch (const RUnwind& u) {
        run->unwind = u.token;
      } catch (const std::exception& e) {
        run->message = e.what();
        core_error = true;
      }
      if (run->unwind) {
        SEXP token = run->unwind;
        run->unwind = nullptr;
        R_ContinueUnwind(token);  // into RCall, outside the catch block
      }
      if (core_error) {
        run->end = Run::kCoreError;
        return R_NilValue;
      }
      SETCADR(run->call, el);
      SEXP r = Rf_eval(run->call, R_GlobalEnv);
      if (run->out.type != NILSXP) {
        if (!PutOut(run, i, r)) {
          run->end = Run::kMismatch;
          return R_NilValue;
        }
      } else if (r != R_NilValue) {
        SET_VECTOR_ELT(values, static_cast<R_xlen_t>(k), r);
      }
    }
    SETCADR(run->call, R_NilValue);
    if (run->out.type == NILSXP) {
      SEXP chunks = VECTOR_ELT(run->keep, 2);
      if (chunks == R_NilValue) {
        chunks = Rf_allocVector(VECSXP, kHeldChunks);
        SET_VECTOR_ELT(run->keep, 2, chunks);
      }
      SET_VECTOR_ELT(chunks, run->held++, values);
      run->ranges.push_back(first);
      run->ranges.push_back(count);
      SET_VECTOR_ELT(run->keep, 1, R_NilValue);
      if (run->held == kHeldChunks) {
        SerializeHeld(run);
        if (run->ctx->pending.size() > kFlushBytes) {
          try {
            run->ctx->Flush();
          } catch (const std::exception& e) {
            run->message = e.what();
            run->end = Run::kCoreError;
            return R_NilValue;
          }
        }
      }
    }
    shared.AddDone(count);
    run->task = kNoTask;
    const double cost = (Now() - t0) / static_cast<double>(count);
    cap = cost > 0 ? static_cast<uint64_t>(std::max(1.0, std::min(1e15, run->chunk_seconds / cost)))
                   : uint64_t{1} << 50;
    // Worth the other workers' wake-up: wake them (once per call).
    if (g_engine_worker && cost * static_cast<double>(shared.layout().tasks - shared.Claimed()) > kSpreadSeconds &&
        shared.Spread())
      g_engine_worker->WakeOthers();
  }
  if (run->out.type == NILSXP) SerializeHeld(run);
  return R_NilValue;
}

// FUN's call: FUN(<element>, name = value...) with the first argument named
// `first` (unless empty) and the VARS by their names.
SEXP MakeCall(SEXP fun, SEXP first, SEXP args) {
  SEXP call = R_NilValue;
  RCall([&] {
    SEXP tail = R_NilValue;
    PROTECT(tail);
    SEXP names = Rf_getAttrib(args, R_NamesSymbol);
    for (R_xlen_t i = XLENGTH(args) - 1; i >= 0; --i) {
      tail = Rf_cons(VECTOR_ELT(args, i), tail);
      UNPROTECT(1);
      PROTECT(tail);
      if (names != R_NilValue) SET_TAG(tail, Rf_installChar(STRING_ELT(names, i)));
    }
    SEXP el = Rf_cons(R_NilValue, tail);
    UNPROTECT(1);
    PROTECT(el);
    if (TYPEOF(first) == STRSXP && XLENGTH(first) == 1 && STRING_ELT(first, 0) != NA_STRING &&
        CHAR(STRING_ELT(first, 0))[0] != '\0')
      SET_TAG(el, Rf_installChar(STRING_ELT(first, 0)));
    call = Rf_lcons(fun, el);
    UNPROTECT(1);
  });
  return call;
}

}  // namespace

// ======================== entry points: the engine ==========================

// Makes an engine of `workers` R workers running `argv` with `env` (a named
// character vector) added to their environment; starts nothing yet.
// list(ok, engine).
extern "C" SEXP pyrmap_engine_new(SEXP workers, SEXP argv, SEXP env, SEXP segment_dir) {
  return Guarded([&] {
    EngineOptions o;
    o.workers = Rf_asInteger(workers);
    for (R_xlen_t i = 0; i < XLENGTH(argv); ++i) o.argv.push_back(Utf8(STRING_ELT(argv, i), "the worker command"));
    SEXP nm = Rf_getAttrib(env, R_NamesSymbol);
    for (R_xlen_t i = 0; i < XLENGTH(env); ++i)
      o.env.push_back({Utf8(STRING_ELT(nm, i), "an environment name"), Utf8(STRING_ELT(env, i), "an environment value")});
    o.segment_dir = StringArg(segment_dir, "segment directory");
    o.what = "R worker";
    auto* e = new Engine(std::move(o));
    SEXP ptr = R_NilValue;
    try {
      RCall([&] {
        ptr = R_MakeExternalPtr(e, EngineTag(), R_NilValue);
        R_RegisterCFinalizerEx(ptr, FinalizeEngine, TRUE);
      });
    } catch (...) {
      if (ptr == R_NilValue) delete e;
      throw;
    }
    PROTECT(ptr);
    SEXP out = Build([&] {
      SEXP out = PROTECT(NamedList({"ok", "engine"}));
      SetField(out, "ok", Rf_ScalarLogical(TRUE));
      SetField(out, "engine", ptr);
      UNPROTECT(1);
      return out;
    });
    UNPROTECT(1);
    return out;
  });
}

// Starts the workers that are not running and waits until all are ready
// (an R interrupt abandons the wait). list(ok).
extern "C" SEXP pyrmap_engine_ready(SEXP engine) {
  return Guarded([&] {
    Engine* e = EngineOf(engine);
    e->Ready([] { CheckInterrupt(); });
    return Build([] {
      SEXP out = PROTECT(NamedList({"ok"}));
      SetField(out, "ok", Rf_ScalarLogical(TRUE));
      UNPROTECT(1);
      return out;
    });
  });
}

// list(closed, pids, restarts).
extern "C" SEXP pyrmap_engine_info(SEXP engine) {
  return Guarded([&] {
    if (TYPEOF(engine) != EXTPTRSXP || R_ExternalPtrTag(engine) != EngineTag())
      throw Error(ErrorKind::kUsage, "not a pyrmap engine handle");
    auto* e = static_cast<Engine*>(R_ExternalPtrAddr(engine));
    const bool closed = !e || e->closed();
    std::vector<pid_t> pids = closed ? std::vector<pid_t>() : e->Pids();
    std::vector<uint64_t> restarts = closed ? std::vector<uint64_t>() : e->Restarts();
    return Build([&] {
      SEXP out = PROTECT(NamedList({"closed", "pids", "restarts"}));
      SetField(out, "closed", Rf_ScalarLogical(closed));
      SEXP p = Rf_allocVector(INTSXP, static_cast<R_xlen_t>(pids.size()));
      SetField(out, "pids", p);
      for (size_t i = 0; i < pids.size(); ++i) INTEGER(p)[i] = pids[i];
      SEXP r = Rf_allocVector(REALSXP, static_cast<R_xlen_t>(restarts.size()));
      SetField(out, "restarts", r);
      for (size_t i = 0; i < restarts.size(); ++i) REAL(r)[i] = static_cast<double>(restarts[i]);
      UNPROTECT(1);
      return out;
    });
  });
}

// Kills the engine's workers (idempotent).
extern "C" SEXP pyrmap_engine_close(SEXP engine) {
  if (TYPEOF(engine) == EXTPTRSXP && R_ExternalPtrTag(engine) == EngineTag()) FinalizeEngine(engine);
  return R_NilValue;
}

// ======================== entry points: a call, the master's side ==============

// Creates a call's segments: the call segment holding `objects` (a list of
// list(value, mode)), the job bytes `job` (raw, or NULL when the job travels
// in messages), `tasks`, `workers` slots, the FUN.VALUE spec `out` (NULL or
// list(type, len)), and `result_files` named result files for a user
// cluster's workers, all in the segment directory `dir` (a path).
// list(ok, call, name, results): the call segment's and the result files'
// paths, as workers are told them.
extern "C" SEXP pyrmap_call_new(SEXP objects, SEXP job, SEXP tasks, SEXP workers, SEXP out, SEXP result_files,
                                SEXP what, SEXP dir, SEXP engine, SEXP area) {
  return Guarded([&] {
    // The directory is chosen (opened, checked) only for a call that makes
    // segments: a call in the engine's call area makes none.
    const std::string dir_path = StringArg(dir, "segment directory");
    auto call = std::make_unique<MasterCall>();
    call->what = StringArg(what, "what");
    call->out = ParseOut(out);
    call->tasks = static_cast<uint64_t>(Rf_asReal(tasks));
    std::vector<PackedWriter> packed;
    for (R_xlen_t i = 0; i < XLENGTH(objects); ++i) {
      SEXP o = VECTOR_ELT(objects, i);
      packed.push_back(PackObject(Field(o, "value"), ParseMode(FieldString(o, "mode")), FieldString(o, "label")));
    }
    CallLayout l;
    l.tasks = call->tasks;
    l.workers = static_cast<uint32_t>(Rf_asInteger(workers));
    l.job_size = TYPEOF(job) == RAWSXP ? static_cast<uint64_t>(XLENGTH(job)) : 0;
    l.objects = packed.size();
    const uint64_t out_bytes = call->out.type == NILSXP ? 0 : call->tasks * call->out.len * call->out.item();
    const bool out_inside = call->out.type != NILSXP && out_bytes <= kSmallOut;
    l.out_size = out_inside ? std::max<uint64_t>(out_bytes, 8) : 0;
    l.flags = call->out.type != NILSXP && !out_inside ? kCallOutSegment : 0;
    uint64_t data = 0;
    std::vector<uint64_t> at;
    for (const PackedWriter& w : packed) {
      at.push_back(data);
      data += (w.Size() + 63) / 64 * 64;
    }
    l.data_size = data;
    // A small call of pyrmap's own engine without side data objects goes in
    // the engine's call area when no worker is still in the last job.
    if (engine != R_NilValue && Rf_asLogical(area) == TRUE && !(l.flags & kCallOutSegment)) {
      Engine* e = EngineOf(engine);
      CallShared& a = AreaOf(e);
      if (e->segment_dir() == dir_path && a.Fits(l) && AreaFree(e, a)) {
        a.Reset(l);
        call->shared = &a;
        call->area = true;
      }
    }
    std::string prefix;
    if (!call->area) {
      call->dir = SegmentDir::Choose(dir_path);
      call->names.emplace(call->dir);
      prefix = NewCallPrefix();
      if (l.flags & kCallOutSegment) {
        call->out_seg.emplace(Segment::Create(call->dir, prefix + "-out", std::max<uint64_t>(out_bytes, 8)));
        call->names->Add(prefix + "-out");
      }
      call->own.emplace(CallShared::Create(call->dir, prefix + "-call", l));
      call->shared = &*call->own;
      call->names->Add(prefix + "-call");
    }
    CallShared& c = *call->shared;
    c.WriteJob(TYPEOF(job) == RAWSXP ? RAW(job) : nullptr, l.job_size);
    for (uint64_t& a : at) a += c.layout().data_offset;
    c.WriteObjects(at);
    for (size_t i = 0; i < packed.size(); ++i)
      packed[i].Write(c.segment(), at[i], [](void*) { CheckInterrupt(); });
    std::vector<std::string> res;
    for (int k = 0; k < Rf_asInteger(result_files); ++k) {
      const std::string rn = fmt::format("{}-res-{}", prefix, k + 1);
      call->result_files.push_back(Segment::Create(call->dir, rn, 0));
      call->names->Add(rn);
      res.push_back(call->dir.PathOf(rn));
    }
    const std::string path = call->area ? std::string(kCallAreaName) : call->dir.PathOf(prefix + "-call");
    SEXP ptr = R_NilValue;
    MasterCall* raw = call.release();
    try {
      RCall([&] {
        ptr = R_MakeExternalPtr(raw, CallTag(), R_NilValue);
        R_RegisterCFinalizerEx(ptr, FinalizeCall, TRUE);
      });
    } catch (...) {
      if (ptr == R_NilValue) delete raw;
      throw;
    }
    PROTECT(ptr);
    SEXP ans = Build([&] {
      SEXP o = PROTECT(NamedList({"ok", "call", "name", "results"}));
      SetField(o, "ok", Rf_ScalarLogical(TRUE));
      SetField(o, "call", ptr);
      SetField(o, "name", Str(path));
      SEXP r = Rf_allocVector(STRSXP, static_cast<R_xlen_t>(res.size()));
      SetField(o, "results", r);
      for (size_t i = 0; i < res.size(); ++i) SET_STRING_ELT(r, static_cast<R_xlen_t>(i), Rf_mkCharCE(res[i].c_str(), CE_UTF8));
      UNPROTECT(1);
      return o;
    });
    UNPROTECT(1);
    return ans;
  });
}

// Posts the call to the engine's workers: the job number.
extern "C" SEXP pyrmap_call_post(SEXP engine, SEXP call) {
  return Guarded([&] {
    Engine* e = EngineOf(engine);
    MasterCall* c = CallOf(call);
    if (c->shared->layout().workers != e->workers())
      throw Error(ErrorKind::kUsage, "the call was made for another number of workers");
    if (c->area) {
      // The area is this job's from now on (channel.h); only this process
      // posts, so the next job number is known.
      const uint32_t next = e->control().Seq() + 1;
      c->shared->Publish(next);
      const uint32_t seq = e->Post(kCallAreaName, 1);
      if (seq != next) throw Error(ErrorKind::kProtocol, fmt::format("the engine posted job {}, not {}", seq, next));
      c->posted_at = Now();
      return Build([&] { return Rf_ScalarReal(static_cast<double>(seq)); });
    }
    const uint32_t seq = e->Post(c->dir.PathOf(c->shared->name()), 1);
    c->posted_at = Now();
    return Build([&] { return Rf_ScalarReal(static_cast<double>(seq)); });
  });
}

// Waits up to `timeout` seconds for the call (job `seq` of the engine) to
// be over: every task done (or a failure, or a worker that could not take
// part) and every worker that joined it gone. list(state = "done" |
// "running" | "died" | "stuck", done = tasks finished; for "died": slot,
// pid, how, task (1-based, NA if none), stderr). "stuck": every worker
// finished the job and none took part (none could open the call).
extern "C" SEXP pyrmap_call_wait(SEXP engine, SEXP call, SEXP seq, SEXP timeout) {
  return Guarded([&] {
    Engine* e = EngineOf(engine);
    MasterCall* c = CallOf(call);
    const CallShared& cs = *c->shared;
    const uint32_t job = static_cast<uint32_t>(Rf_asReal(seq));
    const std::vector<pid_t> pids = e->Pids();
    auto over = [&] { return cs.Settled() && cs.Quiet(); };
    auto involved = [&](uint32_t k) { return cs.State(k) == CallShared::SlotState::kWorking; };
    double wait = Rf_asReal(timeout);
    const double spread_in = c->posted_at + kSpreadAfter - Now();
    EngineStatus st;
    if (spread_in > 0 && wait > spread_in) {
      st = e->Wait(over, involved, spread_in);
      wait -= spread_in;
    }
    if (st.kind == EngineStatus::kRunning) {
      // Not over after kSpreadAfter: every worker takes part.
      if (Now() >= c->posted_at + kSpreadAfter && c->shared->Spread()) e->WakeAll();
      st = e->Wait(over, involved, wait);
    }
    bool stuck = false;
    if (st.kind == EngineStatus::kRunning) {
      CheckInterrupt();
      stuck = cs.Quiet() && !cs.Settled();
      for (uint32_t k = 0; stuck && k < e->workers(); ++k) stuck = e->control().DoneSeq(k) == job;
      stuck = stuck && cs.Quiet() && !cs.Settled();
    }
    const uint64_t done = cs.Done();
    const uint64_t task = st.kind == EngineStatus::kDied ? cs.SlotCurrent(st.slot) : kNoTask;
    const std::string how = st.exit.Describe();
    return Build([&] {
      SEXP o = PROTECT(NamedList({"state", "done", "slot", "pid", "how", "task", "stderr"}));
      SetField(o, "state", Rf_mkString(st.kind == EngineStatus::kDone   ? "done"
                                       : st.kind == EngineStatus::kDied ? "died"
                                       : stuck                          ? "stuck"
                                                                        : "running"));
      SetField(o, "done", Rf_ScalarReal(static_cast<double>(done)));
      if (st.kind == EngineStatus::kDied) {
        SetField(o, "slot", Rf_ScalarInteger(static_cast<int>(st.slot) + 1));
        SetField(o, "pid", Rf_ScalarInteger(st.slot < pids.size() ? pids[st.slot] : 0));
        SetField(o, "how", Str(how));
        SetField(o, "task", Rf_ScalarReal(task == kNoTask ? NA_REAL : static_cast<double>(task + 1)));
        SetField(o, "stderr", Str(st.stderr_tail));
      }
      UNPROTECT(1);
      return o;
    });
  });
}

// Tasks finished so far.
extern "C" SEXP pyrmap_call_progress(SEXP call) {
  return Guarded([&] {
    MasterCall* c = CallOf(call);
    const double done = static_cast<double>(c->shared->Done());
    return Build([&] { return Rf_ScalarReal(done); });
  });
}

// Pids the workers recorded in the call's slots (0: not yet).
extern "C" SEXP pyrmap_call_pids(SEXP call) {
  return Guarded([&] {
    MasterCall* c = CallOf(call);
    std::vector<pid_t> pids;
    for (uint32_t k = 0; k < c->shared->layout().workers; ++k) pids.push_back(c->shared->SlotPid(k));
    return Build([&] {
      SEXP p = Rf_allocVector(INTSXP, static_cast<R_xlen_t>(pids.size()));
      for (size_t i = 0; i < pids.size(); ++i) INTEGER(p)[i] = pids[i];
      return p;
    });
  });
}

// Ends the call early: no task is started any more; with an engine, its
// workers still working in the call are interrupted and, after `grace`
// seconds, killed. The number killed.
extern "C" SEXP pyrmap_call_cancel(SEXP engine, SEXP call, SEXP grace) {
  return Guarded([&] {
    MasterCall* c = CallOf(call);
    c->shared->Cancel();
    int killed = 0;
    if (engine != R_NilValue) {
      Engine* e = EngineOf(engine);
      const CallShared& cs = *c->shared;
      killed = e->Interrupt([&](uint32_t k) { return cs.State(k) == CallShared::SlotState::kWorking; },
                            Rf_asReal(grace));
    }
    return Build([&] { return Rf_ScalarInteger(killed); });
  });
}

// Removes the call's segments (idempotent).
extern "C" SEXP pyrmap_call_close(SEXP call) {
  if (TYPEOF(call) == EXTPTRSXP && R_ExternalPtrTag(call) == CallTag()) {
    auto* c = static_cast<MasterCall*>(R_ExternalPtrAddr(call));
    if (c) c->Close();
  }
  return R_NilValue;
}

// The results of a finished call, read from the engine's result files
// (`engine`) or the call's own (a user cluster: engine NULL).
// list(ok, value) — the list of results, or the FUN.VALUE vector with
// attributes `dim` and `dimnames` (NULL: none) — or list(ok, failure =
// list(index, setup, message, class)) for the first failing task.
extern "C" SEXP pyrmap_call_gather(SEXP engine, SEXP call, SEXP dim, SEXP dimnames) {
  return Guarded([&] {
    MasterCall* c = CallOf(call);
    Engine* e = engine == R_NilValue ? nullptr : EngineOf(engine);
    const uint64_t n = c->tasks;
    // Every worker's records: read (a few pages or less), or mapped.
    std::vector<Mapping> maps;
    std::vector<std::vector<uint8_t>> copies;
    std::vector<const uint8_t*> records;
    std::vector<std::string> labels;
    std::vector<uint64_t> sizes;
    const uint32_t p = e ? e->workers() : static_cast<uint32_t>(c->result_files.size());
    if (p > c->shared->layout().workers)
      throw Error(ErrorKind::kUsage, "the call was made for fewer workers");
    for (uint32_t k = 0; k < p; ++k) {
      const Segment& f = e ? e->Results(k) : c->result_files[k];
      // Only the records of workers that took part in this call.
      const bool took_part = c->shared->State(k) == CallShared::SlotState::kLeft;
      // A worker whose results did not fit the segment directory: said
      // before anything else (its records, even a failure's, may be missing).
      if (took_part && c->shared->SlotOutcome(k) == Outcome::kNoSpace) {
        const std::string dir = e ? e->segment_dir() : c->dir.path();
        throw Error(ErrorKind::kSystem,
                    fmt::format("{}: worker {} could not write its results into the segment directory {}: {} "
                                "(the results take more room than {} has free; choose a larger segment "
                                "directory: segment_dir = or options(pyrmap.segment_dir = \"DISK\"))",
                                c->what, k + 1, dir, ErrnoText(ENOSPC), dir))
            .with_errno(ENOSPC);
      }
      const uint64_t bytes = took_part ? c->shared->SlotResultBytes(k) : 0;
      labels.push_back(fmt::format("worker {} of {}", k + 1, c->what));
      sizes.push_back(bytes);
      if (bytes > 0 && bytes <= kReadRecordsBelow) {
        copies.emplace_back(bytes);
        f.Read(0, copies.back().data(), bytes);
        records.push_back(copies.back().data());
      } else {
        maps.push_back(bytes ? f.Map(MapMode::kReadOnly, 0, bytes) : Mapping());
        records.push_back(maps.back().data());
      }
    }
    // The first failure in task order (a worker that could not take part
    // counts before any task).
    Failure first;
    for (uint32_t k = 0; k < p; ++k)
      ReadRecords(records[k], sizes[k], n, labels[k], [&](const Record& r) {
        if (r.kind != RecordKind::kFailure) return;
        const bool setup = r.first == kNoTask;
        const bool better = !first.seen || (setup && !first.setup) ||
                            (!setup && !first.setup && r.first < first.task);
        if (better) first = Failure{r.first, setup, true, r.payload, r.nbytes};
      });
    SEXP ans = R_NilValue;
    if (first.seen) {
      SEXP info = PROTECT(Unserialize(first.payload, first.nbytes));
      ans = Build([&] {
        SEXP f = PROTECT(NamedList({"index", "setup", "message", "class"}));
        SetField(f, "index", Rf_ScalarReal(first.setup ? NA_REAL : static_cast<double>(first.task + 1)));
        SetField(f, "setup", Rf_ScalarLogical(first.setup));
        SetField(f, "message", Field(info, "message"));
        SetField(f, "class", Field(info, "class"));
        SEXP o = PROTECT(NamedList({"ok", "failure"}));
        SetField(o, "ok", Rf_ScalarLogical(TRUE));
        SetField(o, "failure", f);
        UNPROTECT(2);
        return o;
      });
      UNPROTECT(1);
    } else if (c->out.type != NILSXP) {
      const uint64_t done = c->shared->Done();
      if (done != n)
        throw Error(ErrorKind::kProtocol, fmt::format("{}: the workers finished {} of {} tasks", c->what, done, n));
      const uint64_t count = n * c->out.len;
      SEXP value;
      if (c->out_seg) {
        ViewSource src;
        src.mapping = std::make_shared<Mapping>(c->out_seg->Map(MapMode::kPrivate, 0, count * c->out.item()));
        src.data = src.mapping->data();
        src.length = static_cast<R_xlen_t>(count);
        value = MakeView(c->out.type, std::move(src));
      } else {
        value = R_NilValue;
        RCall([&] { value = Rf_allocVector(c->out.type, static_cast<R_xlen_t>(count)); });
        if (count) std::memcpy(DATAPTR(value), c->shared->out(), count * c->out.item());
      }
      PROTECT(value);
      ans = Build([&] {
        if (dim != R_NilValue) Rf_setAttrib(value, R_DimSymbol, dim);
        if (dimnames != R_NilValue) Rf_setAttrib(value, R_DimNamesSymbol, dimnames);
        SEXP o = PROTECT(NamedList({"ok", "value"}));
        SetField(o, "ok", Rf_ScalarLogical(TRUE));
        SetField(o, "value", value);
        UNPROTECT(1);
        return o;
      });
      UNPROTECT(1);
    } else {
      SEXP out = R_NilValue;
      RCall([&] { out = Rf_allocVector(VECSXP, static_cast<R_xlen_t>(n)); });
      PROTECT(out);
      std::vector<bool> filled(n, false);
      for (uint32_t k = 0; k < p; ++k) {
        std::vector<uint64_t> ranges;  // of the ranges record just read
        ReadRecords(records[k], sizes[k], n, labels[k], [&](const Record& r) {
          if (r.kind == RecordKind::kRanges) {
            ranges.resize(r.nbytes / 8);
            std::memcpy(ranges.data(), r.payload, r.nbytes);
            return;
          }
          if (r.kind != RecordKind::kValues) return;
          if (r.first != kNoTask) ranges = {r.first, r.count};
          SEXP v = PROTECT(Unserialize(r.payload, r.nbytes));
          if (TYPEOF(v) != VECSXP || static_cast<uint64_t>(XLENGTH(v)) != r.count) {
            UNPROTECT(1);
            throw Error(ErrorKind::kProtocol, fmt::format("results of {}: a record of {} values holds something else",
                                                          labels[k], r.count));
          }
          R_xlen_t j = 0;
          for (size_t q = 0; q + 1 < ranges.size(); q += 2)
            for (uint64_t t = ranges[q]; t < ranges[q] + ranges[q + 1]; ++t) {
              if (filled[t]) {
                UNPROTECT(1);
                throw Error(ErrorKind::kProtocol, fmt::format("results of {}: task {} came back twice", labels[k], t + 1));
              }
              filled[t] = true;
              SET_VECTOR_ELT(out, static_cast<R_xlen_t>(t), VECTOR_ELT(v, j++));
            }
          UNPROTECT(1);
        });
      }
      for (uint64_t i = 0; i < n; ++i)
        if (!filled[i])
          throw Error(ErrorKind::kProtocol, fmt::format("{}: the result of task {} never came back", c->what, i + 1));
      ans = Build([&] {
        SEXP o = PROTECT(NamedList({"ok", "value"}));
        SetField(o, "ok", Rf_ScalarLogical(TRUE));
        SetField(o, "value", out);
        UNPROTECT(1);
        return o;
      });
      UNPROTECT(1);
    }
    maps.clear();
    if (e)
      for (uint32_t k = 0; k < p; ++k) e->TrimResults(k, kKeepResultBytes);
    return ans;
  });
}

// ======================== entry points: the workers' side ======================

// Attaches this process to the engine that started it. list(ok, worker).
extern "C" SEXP pyrmap_engine_worker_attach() {
  return Guarded([&] {
    auto* w = new EngineWorker(EngineWorker::FromEnvironment());
    g_engine_worker = w;
    SEXP ptr = R_NilValue;
    try {
      RCall([&] { ptr = R_MakeExternalPtr(w, EngineWorkerTag(), R_NilValue); });
    } catch (...) {
      delete w;
      throw;
    }
    PROTECT(ptr);
    SEXP out = Build([&] {
      SEXP o = PROTECT(NamedList({"ok", "worker", "slot"}));
      SetField(o, "ok", Rf_ScalarLogical(TRUE));
      SetField(o, "worker", ptr);
      SetField(o, "slot", Rf_ScalarInteger(static_cast<int>(w->slot())));
      UNPROTECT(1);
      return o;
    });
    UNPROTECT(1);
    return out;
  });
}

namespace {
EngineWorker* EngineWorkerOf(SEXP x) {
  if (TYPEOF(x) != EXTPTRSXP || R_ExternalPtrTag(x) != EngineWorkerTag() || !R_ExternalPtrAddr(x))
    throw Error(ErrorKind::kUsage, "not a pyrmap engine worker handle");
  return static_cast<EngineWorker*>(R_ExternalPtrAddr(x));
}
}  // namespace

// Waits for the next job: its call segment's name; "" when a signal ended
// the wait (wait again); NULL when the engine stops its workers.
extern "C" SEXP pyrmap_engine_worker_next(SEXP worker) {
  return Guarded([&] {
    EngineWorker* w = EngineWorkerOf(worker);
    std::string name;
    const bool go_on = w->NextJob(&name);
    // An interrupt that arrived while this worker was not in FUN (the
    // master's, for a task that ended just before) is not for the job to come.
    if (!name.empty()) R_interrupts_pending = 0;
    return Build([&] { return go_on ? Str(name) : R_NilValue; });
  });
}

// The job is over for this worker (after it left the call): wakes the
// master, and the worker is idle.
extern "C" SEXP pyrmap_engine_worker_finish(SEXP worker) {
  return Guarded([&] {
    EngineWorker* w = EngineWorkerOf(worker);
    w->Wake();
    w->Finish();
    return R_NilValue;
  });
}

namespace {

// The last job an engine worker unserialized, kept while the next job's
// bytes are the same (a call repeated in a loop): its FUN only when the
// master marked it as one that carries no environment of its own
// (job$fun_cached), so that FUN's own state is never carried over.
std::vector<uint8_t> g_job_bytes;
SEXP g_job = nullptr;  // preserved: list(job, fun)

// Opens the call and joins it as slot `slot`; its records go to `results`
// (a user cluster's worker) or the engine's result file.
std::unique_ptr<WorkerCall> OpenCall(const std::string& call_path, uint32_t slot, SEXP results, uint32_t seq) {
  auto ctx = std::make_unique<WorkerCall>();
  SegmentPath where;
  if (call_path == kCallAreaName) {
    // The engine's call area, kept mapped from one call to the next; it
    // holds job `seq`'s call, or this worker is late for a call now over.
    static std::unique_ptr<CallShared> area;
    if (!area) area = OverArea(kEngineAreaFd, 10);
    if (!area->Refresh(seq))
      throw Error(ErrorKind::kProtocol, fmt::format("job {} is over: the call area holds another call", seq));
    ctx->shared = area.get();
    ctx->area = true;
    where.name = kCallAreaName;
  } else {
    where = SplitSegmentPath(call_path);
    ctx->own.emplace(CallShared::Open(where.dir, where.name));
    ctx->shared = &*ctx->own;
  }
  const std::string& call_name = where.name;
  const CallLayout& l = ctx->shared->layout();
  ctx->slot = slot;
  if (ctx->slot >= l.workers)
    throw Error(ErrorKind::kProtocol, fmt::format("call segment '{}' has no slot {}", call_name, ctx->slot + 1));
  ctx->shared->Join(ctx->slot, getpid());
  if (results == R_NilValue) {
    ctx->result_fd = kEngineResultFd;
    ctx->result_label = "the engine's result file";
  } else {
    const std::string rn = StringArg(results, "result file");
    const SegmentPath rp = SplitSegmentPath(rn);
    ctx->result_file.emplace(OpenOwnedSegment(rp.dir, rp.name, true));
    ctx->result_fd = ctx->result_file->fd();
    ctx->result_label = rn;
  }
  if (l.data_offset < l.total_size && ctx->area) {
    // Read in place: elements are copies (Elements::copy_all), never views.
    ctx->data_at = ctx->shared->shared() + l.data_offset;
    ctx->data_len = l.total_size - l.data_offset;
    ctx->origin = l.data_offset;
  } else if (l.data_offset < l.total_size) {
    ctx->data = std::make_shared<Mapping>(ctx->shared->segment().Map(MapMode::kPrivate, l.data_offset));
    ctx->data_at = ctx->data->data();
    ctx->data_len = ctx->data->size();
    ctx->origin = l.data_offset;
  }
  // Where FUN.VALUE results go: the call segment's out region, or a
  // segment of their own ("<prefix>-out").
  if (l.out_size) {
    ctx->out = ctx->shared->out();
    ctx->out_size = l.out_size;
  } else if (l.flags & kCallOutSegment) {
    if (call_name.size() <= 5 || call_name.compare(call_name.size() - 5, 5, "-call") != 0)
      throw Error(ErrorKind::kProtocol, fmt::format("call segment '{}' is not named '...-call'", call_name));
    ctx->out_seg.emplace(OpenOwnedSegment(where.dir, call_name.substr(0, call_name.size() - 5) + "-out", true));
    ctx->out_map.emplace(ctx->out_seg->Map(MapMode::kReadWrite));
    ctx->out = ctx->out_map->data();
    ctx->out_size = ctx->out_map->size();
  }
  return ctx;
}

// Object k of the call as FUN's side data: a view, or a list of views.
SEXP ObjectToR(WorkerCall* ctx, uint64_t k, ObjectMode mode, const std::string& label) {
  if (ctx->area) throw Error(ErrorKind::kProtocol, fmt::format("{} in the call area", label));
  PackedTable t(ctx->data_at, ctx->origin, ctx->data_len, ctx->shared->Object(k), label);
  Backing b{ctx->data, "", 0};
  if (mode != ObjectMode::kList) {
    if (t.size() != 1) throw Error(ErrorKind::kProtocol, fmt::format("{}: {} arrays, not 1", label, t.size()));
    return ArrayToR(FromEntry(t.at(0)), b, true, label);
  }
  SEXP out = R_NilValue;
  RCall([&] { out = Rf_allocVector(VECSXP, static_cast<R_xlen_t>(t.size())); });
  PROTECT(out);
  for (uint64_t i = 0; i < t.size(); ++i) SET_VECTOR_ELT(out, static_cast<R_xlen_t>(i), ArrayToR(FromEntry(t.at(i)), b, true, label));
  UNPROTECT(1);
  return out;
}

// How X's elements are made, from the job's x = list(src = "call",
// object, mode) | list(src = "page", ns, var, mode).
void SetupElements(WorkerCall* ctx, SEXP job, Elements* el) {
  SEXP x = Field(job, "x");
  const std::string src = FieldString(x, "src"), mode = FieldString(x, "mode");
  el->label = "X";
  el->margin = FieldInt(job, "margin", 2);
  if (src == "call") {
    el->backing = Backing{ctx->data, "", 0};
    el->copy_all = ctx->area;  // its memory is rewritten by the next call
    el->table.emplace(ctx->data_at, ctx->origin, ctx->data_len,
                      ctx->shared->Object(static_cast<uint64_t>(Rf_asReal(Field(x, "object")))), "X");
  } else if (src == "page") {
    ctx->x_page.emplace(
        OpenPage(SegmentDir::Open(FieldString(x, "dir")), FieldString(x, "ns"), FieldString(x, "var"), MapMode::kPrivate));
    el->backing = Backing{ctx->x_page->mapping, ctx->x_page->info.segment, ctx->x_page->info.generation,
                          ctx->x_page->info.dir};
    el->page = &*ctx->x_page;
  } else {
    throw Error(ErrorKind::kProtocol, fmt::format("unknown source '{}' of X", src));
  }
  if (mode == "list") {
    el->kind = Elements::kList;
    if (el->page && !el->page->info.is_list) throw Error(ErrorKind::kUsage, "X is not a list");
  } else {
    el->kind = mode == "matrix" ? Elements::kMatrix : Elements::kSplit;
    if (el->table) {
      if (el->table->size() != 1) throw Error(ErrorKind::kProtocol, "X holds more than one array");
      el->array = FromEntry(el->table->at(0));
    } else {
      if (el->page->info.arrays.size() != 1) throw Error(ErrorKind::kUsage, "X is a list, not one array");
      el->array = FromPage(*el->page, 0);
      if (!TagHasDim(el->array.tag)) el->array.ndim = 0;
    }
    TagKind(el->array.tag);
    if (el->kind == Elements::kMatrix) {
      if (el->array.ndim != 2) throw Error(ErrorKind::kUsage, "X is not a matrix");
      el->nrow = el->array.shape[0];
      el->ncol = el->array.shape[1];
    }
  }
  if (el->size() != ctx->shared->layout().tasks)
    throw Error(ErrorKind::kProtocol, fmt::format("X has {} elements, the call {} tasks", el->size(),
                                                  ctx->shared->layout().tasks));
}

// Bytes of the distinct mappings view `x` (or the views of list `x`) holds.
uint64_t MappedBy(SEXP x) {
  std::vector<const Mapping*> seen;
  uint64_t total = 0;
  auto add = [&](SEXP v) {
    const ViewSource* s = ViewOf(v);
    if (!s || !s->mapping || std::find(seen.begin(), seen.end(), s->mapping.get()) != seen.end()) return;
    seen.push_back(s->mapping.get());
    total += s->mapping->size();
  };
  if (TYPEOF(x) == VECSXP)
    for (R_xlen_t i = 0; i < XLENGTH(x); ++i) add(VECTOR_ELT(x, i));
  else
    add(x);
  return total;
}

// What the setup needs besides the call.
struct Setup {
  SEXP job_arg = R_NilValue;  // the job (a user cluster's), or NULL: in the segment
  SEXP view_of = R_NilValue;  // function(ns, var): a view of a registered variable
  std::unique_ptr<Elements> elements;
  bool pages = false;         // views of registered variables were taken
  uint64_t mapped = 0;        // bytes the call's mappings take
};

// Runs a C++ step inside the job's body: a core error ends the run
// (kCoreError), an R error raised through an inner RCall continues.
template <typename F>
bool Step(Run* run, F&& f) {
  SEXP token = nullptr;
  bool failed = false;
  try {
    f();
  } catch (const RUnwind& u) {
    token = u.token;
  } catch (const std::exception& e) {
    run->message = e.what();
    failed = true;
  }
  if (token) R_ContinueUnwind(token);  // outside the catch block
  if (failed) run->end = Run::kCoreError;
  return !failed;
}

// The segment directory an engine worker last took as its option
// pyrmap.segment_dir (see SetSegmentDirOption).
std::string g_dir_option;

// FUN's own retrieveViews() calls look where the call's pages are: an
// engine worker takes the job's segment directory `dir` as its option
// pyrmap.segment_dir (set only when it changes). A user cluster's worker
// sets it in R, for the call only.
void SetSegmentDirOption(SEXP dir) {
  if (TYPEOF(dir) != STRSXP || XLENGTH(dir) != 1 || STRING_ELT(dir, 0) == NA_STRING) return;
  const char* d = CHAR(STRING_ELT(dir, 0));
  if (g_dir_option == d) return;
  SEXP call = PROTECT(Rf_lang2(Rf_install("options"), dir));
  SET_TAG(CDR(call), Rf_install("pyrmap.segment_dir"));
  Rf_eval(call, R_BaseEnv);
  UNPROTECT(1);
  g_dir_option = d;
}

// The job's body, run under RCall: the job, FUN and the side data (their R
// errors are the worker's, not a task's), then the task loop.
SEXP JobBody(void* data) {
  Run* run = static_cast<Run*>(data);
  Setup* setup = run->setup;
  WorkerCall* ctx = run->ctx;
  // keep[3]: list(job, fun)
  SEXP job = setup->job_arg, fun = R_NilValue;
  if (job == R_NilValue) {
    const uint64_t n = ctx->shared->layout().job_size;
    const uint8_t* bytes = ctx->shared->job();
    if (g_job && n == g_job_bytes.size() && std::memcmp(bytes, g_job_bytes.data(), n) == 0) {
      job = VECTOR_ELT(g_job, 0);
      fun = VECTOR_ELT(g_job, 1);
    } else {
      if (!Step(run, [&] { job = Unserialize(bytes, n); })) return R_NilValue;
      SET_VECTOR_ELT(run->keep, 3, job);
    }
  }
  if (fun == R_NilValue) {
    SEXP raw = Field(job, "fun");
    if (TYPEOF(raw) != RAWSXP) Rf_error("the job has no FUN");
    if (!Step(run, [&] { fun = Unserialize(RAW(raw), static_cast<uint64_t>(XLENGTH(raw))); })) return R_NilValue;
    SEXP pair = PROTECT(Rf_allocVector(VECSXP, 2));
    SET_VECTOR_ELT(pair, 0, job);
    SET_VECTOR_ELT(pair, 1, fun);
    SET_VECTOR_ELT(run->keep, 3, pair);
    UNPROTECT(1);
    // Kept for the next call when FUN carries no environment of its own.
    SEXP cached = Field(job, "fun_cached");
    if (setup->job_arg == R_NilValue && cached != R_NilValue && Rf_asLogical(cached) == TRUE) {
      if (g_job) R_ReleaseObject(g_job);
      g_job = pair;
      R_PreserveObject(g_job);
      g_job_bytes.assign(ctx->shared->job(), ctx->shared->job() + ctx->shared->layout().job_size);
    }
  }
  if (setup->job_arg == R_NilValue) SetSegmentDirOption(Field(job, "dir"));
  // The side data.
  SEXP vars = Field(job, "vars");
  if (vars != R_NilValue && TYPEOF(vars) != VECSXP) Rf_error("the job's VARS are not a list");
  const R_xlen_t nv = vars == R_NilValue ? 0 : XLENGTH(vars);
  SEXP args = PROTECT(Rf_allocVector(VECSXP, nv));
  SEXP names = PROTECT(Rf_allocVector(STRSXP, nv));
  for (R_xlen_t i = 0; i < nv; ++i) {
    SEXP v = VECTOR_ELT(vars, i);
    SEXP value = R_NilValue;
    bool page = false;
    if (!Step(run, [&] {
          SET_STRING_ELT(names, i, Rf_mkCharCE(FieldString(v, "arg").c_str(), CE_UTF8));
          page = FieldString(v, "src") == "page";
        })) {
      UNPROTECT(2);
      return R_NilValue;
    }
    if (page) {
      SET_VECTOR_ELT(run->keep, 5, Rf_cons(v, VECTOR_ELT(run->keep, 5)));
      SEXP call = PROTECT(Rf_lang4(setup->view_of, Field(v, "ns"), Field(v, "var"), Field(v, "dir")));
      value = Rf_eval(call, R_GlobalEnv);
      UNPROTECT(1);
      setup->pages = true;
    } else if (!Step(run, [&] {
                 value = ObjectToR(ctx, static_cast<uint64_t>(Rf_asReal(Field(v, "object"))),
                                   ParseMode(FieldString(v, "mode")), "VARS '" + FieldString(v, "arg") + "'");
               })) {
      UNPROTECT(2);
      return R_NilValue;
    }
    SET_VECTOR_ELT(args, i, value);
    if (page) setup->mapped += MappedBy(value);
  }
  Rf_setAttrib(args, R_NamesSymbol, names);
  // X and the out region.
  if (!Step(run, [&] {
        setup->elements = std::make_unique<Elements>();
        SetupElements(ctx, job, setup->elements.get());
        run->elements = setup->elements.get();
        run->out = ParseOut(Field(job, "out"));
        if (run->out.type != NILSXP) {
          const uint64_t need = ctx->shared->layout().tasks * run->out.len * run->out.item();
          if (!ctx->out || ctx->out_size < need)
            throw Error(ErrorKind::kProtocol, fmt::format("the call has no room for {} bytes of FUN.VALUE results", need));
        }
        SEXP cs = Field(job, "chunk_seconds");
        if (cs != R_NilValue) run->chunk_seconds = Rf_asReal(cs);
        run->call = MakeCall(fun, Field(job, "first"), args);
      })) {
    UNPROTECT(2);
    return R_NilValue;
  }
  SET_VECTOR_ELT(run->keep, 4, run->call);
  UNPROTECT(2);
  run->in_tasks = true;
  return RunLoop(run);
}

// The job this worker is in. Kept outside the frames of the entry points,
// so that an R error out of FUN, which unwinds them, leaves it for the
// worker's R handler to record and leave (pyrmap_worker_abort).
struct Current {
  std::unique_ptr<WorkerCall> ctx;
  Setup setup;
  Run run;
  SEXP keep = nullptr;  // preserved: the run's R objects
  ~Current() {
    if (keep) R_ReleaseObject(keep);
  }
};
std::unique_ptr<Current> g_current;

// The serialization of list(message, class), as a failure record's payload.
void AppendFailure(WorkerCall* ctx, uint64_t task, const std::string& message, SEXP cls) {
  RCall([&] {
    SEXP info = PROTECT(NamedList({"message", "class"}));
    SetField(info, "message", Str(message));
    SetField(info, "class", cls);
    AppendSerialized(&ctx->pending, RecordKind::kFailure, task, 1, info);
    UNPROTECT(1);
  });
}

// The end of the current job, however it ended: lets go of the views of
// registered variables (`forget(ns, var)`) and of the call's data,
// collects when the call mapped much (so that the mappings go now: nothing
// else in the worker would prompt R to collect the small view objects that
// hold them), and leaves the call with `outcome`. The failure, if any, is
// recorded already.
void EndJob(Outcome outcome, SEXP forget) {
  Current* c = g_current.get();
  WorkerCall* ctx = c->ctx.get();
  try {
    ctx->Flush();
  } catch (const Error& e) {
    // Records that cannot be written: the call cannot use this worker's part.
    ctx->shared->Break();
    if (e.sys_errno() == ENOSPC) outcome = Outcome::kNoSpace;
    else if (outcome == Outcome::kOk) outcome = Outcome::kFailed;
  }
  uint64_t mapped = c->setup.mapped + (ctx->data ? ctx->data->size() : 0);
  if (ctx->x_page && ctx->x_page->mapping) mapped += ctx->x_page->mapping->size();
  SEXP pages = c->keep ? VECTOR_ELT(c->keep, 5) : R_NilValue;
  if (pages != R_NilValue && forget != R_NilValue) {
    RCall([&] {
      for (SEXP p = pages; p != R_NilValue; p = CDR(p)) {
        SEXP call = PROTECT(Rf_lang3(forget, Field(CAR(p), "ns"), Field(CAR(p), "var")));
        Rf_eval(call, R_GlobalEnv);
        UNPROTECT(1);
      }
    });
  }
  c->setup.elements.reset();
  ctx->x_page.reset();
  ctx->data.reset();
  ctx->out_map.reset();
  ctx->out_seg.reset();
  ctx->out = nullptr;
  if (c->keep) {
    R_ReleaseObject(c->keep);
    c->keep = nullptr;
  }
  if (mapped >= kCollectBytes) R_gc();
  ctx->shared->Leave(ctx->slot, outcome, ctx->result_end);
  g_current.reset();
}

// Runs this worker's share of call `name` as slot `slot`. An R error of
// FUN (or of the setup) propagates as RUnwind, g_current kept. Returns the
// outcome ("ok" or "failed": a value that does not fit FUN.VALUE, a core
// error — both recorded). Throws Error when the call cannot be opened.
const char* RunJob(const std::string& name, uint32_t slot, SEXP job, SEXP results, SEXP view_of, SEXP forget,
                   uint32_t seq = 0) {
  g_current.reset();
  auto cur = std::make_unique<Current>();
  cur->ctx = OpenCall(name, slot, results, seq);
  cur->setup.job_arg = job;
  cur->setup.view_of = view_of;
  cur->run.ctx = cur->ctx.get();
  cur->run.setup = &cur->setup;
  Current* c = cur.get();
  g_current = std::move(cur);
  RCall([&] {
    c->keep = Rf_allocVector(VECSXP, 6);
    R_PreserveObject(c->keep);
  });
  c->run.keep = c->keep;
  RCall([&] { JobBody(&c->run); });
  Run& r = c->run;
  if (r.end == Run::kMismatch || r.end == Run::kCoreError) {
    // This worker's values are of no use now (the call fails).
    c->ctx->pending.clear();
    const uint64_t task = r.in_tasks ? r.task : kNoTask;
    SEXP cls = R_NilValue;
    RCall([&] {
      cls = PROTECT(Rf_allocVector(STRSXP, 3));
      SET_STRING_ELT(cls, 0, Rf_mkChar(r.end == Run::kMismatch ? "pyrmap_value_error" : "pyrmap_error"));
      SET_STRING_ELT(cls, 1, Rf_mkChar("error"));
      SET_STRING_ELT(cls, 2, Rf_mkChar("condition"));
      UNPROTECT(1);
    });
    PROTECT(cls);
    AppendFailure(c->ctx.get(), task, r.message, cls);
    UNPROTECT(1);
    c->ctx->Flush();
    if (task != kNoTask) c->ctx->shared->Fail(task);
    else c->ctx->shared->Break();
    EndJob(Outcome::kFailed, forget);
    return "failed";
  }
  EndJob(Outcome::kOk, forget);
  return "ok";
}

// Ends the job g_current after an error in it left its frames: records
// the failure (of the task in progress, or of the worker's setup) and
// leaves the call.
void AbortJob(const std::string& message, SEXP cls, bool interrupted, SEXP forget) {
  Current* c = g_current.get();
  if (!c) return;
  const uint64_t task = c->run.in_tasks ? c->run.task : kNoTask;
  c->ctx->pending.clear();  // of no use (the call fails), perhaps cut short
  try {
    AppendFailure(c->ctx.get(), task, message, cls);
    c->ctx->Flush();
  } catch (const Error&) {
  }
  if (task != kNoTask) c->ctx->shared->Fail(task);
  else c->ctx->shared->Break();
  EndJob(interrupted ? Outcome::kInterrupted : Outcome::kFailed, forget);
}

// Leaves the current job, if any, as broken (after a core error in its end).
void DropJob() {
  if (!g_current) return;
  try {
    g_current->ctx->shared->Break();
    g_current->ctx->shared->Leave(g_current->ctx->slot, Outcome::kFailed, g_current->ctx->result_end);
  } catch (...) {
  }
  g_current.reset();
}

}  // namespace

// An engine worker's loop: waits for a job, does its share (FUN's views of
// registered variables from `view_of(ns, var)`, let go of with
// `forget(ns, var)`), wakes the master; for ever. Returns NULL when the
// engine stops its workers. An R error or interrupt in a job unwinds out
// of here: the R caller records it (pyrmap_worker_abort), finishes the job
// (pyrmap_engine_worker_finish) and calls this again.
extern "C" SEXP pyrmap_engine_worker_loop(SEXP worker, SEXP view_of, SEXP forget) {
  return Guarded([&]() -> SEXP {
    EngineWorker* w = EngineWorkerOf(worker);
    for (;;) {
      std::string name;
      if (!w->NextJob(&name)) return R_NilValue;
      if (name.empty()) continue;  // a signal
      // An interrupt that arrived while this worker was not in FUN (the
      // master's, for a task that ended just before) is not for this job.
      R_interrupts_pending = 0;
      try {
        RunJob(name, w->slot(), R_NilValue, R_NilValue, view_of, forget, w->seq());
      } catch (const Error&) {
        // The call is over already (this worker woke late), or this
        // worker could not take part (it broke the call, if it could).
        DropJob();
      }
      w->Wake();
      w->Finish();
    }
  });
}

// A user cluster's worker's share of call `name` as slot `slot` (0-based),
// with `job`, its records in segment `results`. list(ok, outcome = "ok" |
// "failed"); an R error or interrupt in it unwinds out of here (then
// pyrmap_worker_abort).
extern "C" SEXP pyrmap_worker_job(SEXP name, SEXP slot, SEXP job, SEXP results, SEXP view_of, SEXP forget) {
  return Guarded([&] {
    const char* outcome;
    try {
      outcome = RunJob(StringArg(name, "call segment"), static_cast<uint32_t>(Rf_asInteger(slot)), job, results,
                       view_of, forget);
    } catch (const Error&) {
      DropJob();
      throw;
    }
    return Build([&] {
      SEXP o = PROTECT(NamedList({"ok", "outcome"}));
      SetField(o, "ok", Rf_ScalarLogical(TRUE));
      SetField(o, "outcome", Rf_mkString(outcome));
      UNPROTECT(1);
      return o;
    });
  });
}

// After an R error or interrupt (`interrupted`) left a job: records it
// (`message`, `cls`) as the failure of the task in progress, or of the
// worker, and leaves the call. Nothing when no job is in progress.
extern "C" SEXP pyrmap_worker_abort(SEXP message, SEXP cls, SEXP interrupted, SEXP forget) {
  return Guarded([&] {
    try {
      AbortJob(StringArg(message, "message"), cls, Rf_asLogical(interrupted) == TRUE, forget);
    } catch (const Error&) {
      DropJob();
      throw;
    }
    return R_NilValue;
  });
}
