#include "packed.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "error.h"

namespace pyrmap {

namespace {

constexpr uint64_t kTableHeader = 16;
constexpr uint64_t kEntrySize = 32;
constexpr uint64_t kBigPayload = 4096;         // aligned to 64 from this size
constexpr uint64_t kDirectWrite = 64 * 1024;   // written straight from memory from this size
constexpr uint64_t kStaging = 1 << 20;

uint64_t RoundUp(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

uint64_t Align(uint64_t nbytes) { return nbytes >= kBigPayload ? 64 : 8; }

template <typename T>
void Put(std::vector<uint8_t>& buf, uint64_t off, T v) {
  std::memcpy(buf.data() + off, &v, sizeof v);
}

template <typename T>
T Get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Accumulates contiguous bytes for a segment and writes them in large
// pwrites.
class Stager {
 public:
  Stager(Segment& seg, uint64_t at, void (*check)(void*), void* arg)
      : seg_(seg), at_(at), check_(check), arg_(arg) {
    buf_.reserve(kStaging);
  }
  // Appends zeros up to segment offset `to`.
  void PadTo(uint64_t to) {
    if (to > at_ + buf_.size()) buf_.resize(to - at_, 0);
    if (buf_.size() >= kStaging) Flush();
  }
  void Append(const void* p, uint64_t n) {
    if (n >= kDirectWrite) {
      Flush();
      seg_.Write(at_, p, n, check_, arg_);
      at_ += n;
      return;
    }
    const uint8_t* b = static_cast<const uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
    if (buf_.size() >= kStaging) Flush();
  }
  void Flush() {
    if (buf_.empty()) return;
    if (check_) check_(arg_);
    seg_.Write(at_, buf_.data(), buf_.size());
    at_ += buf_.size();
    buf_.clear();
  }

 private:
  Segment& seg_;
  uint64_t at_;
  void (*check_)(void*);
  void* arg_;
  std::vector<uint8_t> buf_;
};

}  // namespace

void PackedWriter::Add(PackedSource s) {
  if (s.shape.size() > kMaxPackedDims)
    throw Error(ErrorKind::kUsage, fmt::format("an array of {} dimensions cannot be packed (at most {})",
                                               s.shape.size(), kMaxPackedDims));
  if (!s.shape.empty()) {
    uint64_t prod = 1;
    for (uint64_t d : s.shape) prod *= d;
    if (prod != s.count)
      throw Error(ErrorKind::kUsage, fmt::format("packed array: shape gives {} elements, count is {}", prod, s.count));
  }
  const uint64_t nbytes = s.count * ItemSize(s.dtype);
  payloads_ = RoundUp(payloads_, Align(nbytes)) + nbytes;
  dims_ += s.shape.size();
  sources_.push_back(std::move(s));
}

uint64_t PackedWriter::Size() const {
  // Payloads start at a multiple of 64 after the table and the dims.
  const uint64_t head = kTableHeader + kEntrySize * sources_.size() + 8 * dims_;
  return RoundUp(head, 64) + payloads_;
}

void PackedWriter::Write(Segment& segment, uint64_t at, void (*check)(void*), void* check_arg) const {
  if (at % 64 != 0) throw Error(ErrorKind::kUsage, fmt::format("a packed table must start at a multiple of 64, not {}", at));
  const uint64_t n = sources_.size();
  const uint64_t dims_at = at + kTableHeader + kEntrySize * n;
  const uint64_t payload_at = RoundUp(dims_at + 8 * dims_, 64);
  // The table and the dims, in one buffer.
  std::vector<uint8_t> head(payload_at - at, 0);
  Put<uint64_t>(head, 0, n);
  Put<uint32_t>(head, 8, flags_);
  uint64_t dim = dims_at, pay = payload_at;
  for (uint64_t i = 0; i < n; ++i) {
    const PackedSource& s = sources_[i];
    const uint64_t nbytes = s.count * ItemSize(s.dtype);
    pay = RoundUp(pay, Align(nbytes));
    const uint64_t e = kTableHeader + kEntrySize * i;
    Put<uint32_t>(head, e, s.tag);
    Put<uint16_t>(head, e + 4, static_cast<uint16_t>(s.dtype));
    Put<uint16_t>(head, e + 6, static_cast<uint16_t>(s.shape.size()));
    Put<uint64_t>(head, e + 8, s.count);
    Put<uint64_t>(head, e + 16, pay);
    Put<uint64_t>(head, e + 24, s.shape.empty() ? 0 : dim);
    for (uint64_t d : s.shape) {
      Put<uint64_t>(head, dim - at, d);
      dim += 8;
    }
    pay += nbytes;
  }
  Stager out(segment, at, check, check_arg);
  out.Append(head.data(), head.size());
  pay = payload_at;
  for (const PackedSource& s : sources_) {
    const uint64_t nbytes = s.count * ItemSize(s.dtype);
    pay = RoundUp(pay, Align(nbytes));
    out.PadTo(pay);
    out.Append(s.data, nbytes);
    pay += nbytes;
  }
  out.Flush();
}

PackedTable::PackedTable(const uint8_t* mapping, uint64_t origin, uint64_t size, uint64_t at, std::string label)
    : map_(mapping), origin_(origin), size_(size), table_(at), label_(std::move(label)) {
  if (at < origin || at - origin > size || size - (at - origin) < kTableHeader)
    throw Error(ErrorKind::kProtocol, fmt::format("{}: its table at byte {} is outside the mapped data", label_, at));
  const uint8_t* t = map_ + (at - origin);
  count_ = Get<uint64_t>(t);
  flags_ = Get<uint32_t>(t + 8);
  const uint64_t room = size - (at - origin) - kTableHeader;
  if (count_ > room / kEntrySize)
    throw Error(ErrorKind::kProtocol,
                fmt::format("{}: a table of {} entries does not fit in the mapped data", label_, count_));
}

PackedEntry PackedTable::at(uint64_t i) const {
  if (i >= count_)
    throw Error(ErrorKind::kProtocol, fmt::format("{}: no entry {} (the table has {})", label_, i + 1, count_));
  const uint8_t* e = map_ + (table_ - origin_) + kTableHeader + kEntrySize * i;
  PackedEntry out;
  out.tag = Get<uint32_t>(e);
  const uint16_t code = Get<uint16_t>(e + 4);
  out.ndim = Get<uint16_t>(e + 6);
  out.count = Get<uint64_t>(e + 8);
  out.offset = Get<uint64_t>(e + 16);
  const uint64_t shape_at = Get<uint64_t>(e + 24);
  auto bad = [&](const std::string& why) {
    return Error(ErrorKind::kProtocol, fmt::format("{}: entry {}: {}", label_, i + 1, why));
  };
  auto dtype = DtypeFromCode(code);
  if (!dtype || *dtype == Dtype::kNone) throw bad(fmt::format("unknown dtype code {}", code));
  out.dtype = *dtype;
  if (out.ndim > kMaxPackedDims) throw bad(fmt::format("{} dimensions", out.ndim));
  if (out.ndim > 0) {
    if (shape_at < origin_ || shape_at % 8 != 0 || shape_at - origin_ > size_ ||
        (size_ - (shape_at - origin_)) / 8 < out.ndim)
      throw bad("its shape is outside the mapped data");
    out.shape = reinterpret_cast<const uint64_t*>(map_ + (shape_at - origin_));
    uint64_t prod = 1;
    bool overflow = false;
    for (uint32_t k = 0; k < out.ndim; ++k) {
      if (out.shape[k] != 0 && prod > UINT64_MAX / out.shape[k]) overflow = true;
      prod *= out.shape[k];
    }
    if (overflow || prod != out.count) throw bad("its shape does not match its count");
  }
  const uint64_t item = ItemSize(out.dtype);
  if (out.count > UINT64_MAX / item) throw bad("its count overflows");
  out.nbytes = out.count * item;
  if (out.nbytes > 0) {
    if (out.offset < origin_ || out.offset % 8 != 0 || out.offset - origin_ > size_ ||
        size_ - (out.offset - origin_) < out.nbytes)
      throw bad(fmt::format("its {} bytes at offset {} are outside the mapped data", out.nbytes, out.offset));
    out.data = map_ + (out.offset - origin_);
  }
  return out;
}

}  // namespace pyrmap
