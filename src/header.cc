#include "header.h"

#include <cstring>

#include <fmt/format.h>

#include "bytes.h"
#include "error.h"

namespace pyrmap {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the exchange header is little-endian; this host is not");
static_assert(off::kDescShape + 8 * kMaxDims <= kArrayDescSize);
static_assert(off::kInput + kArrayDescSize <= off::kResult);
static_assert(off::kResult + kArrayDescSize <= off::kErrorType);
static_assert(off::kErrorType + kErrorTypeSize <= off::kErrorLength);

namespace {

[[noreturn]] void Reject(const std::string& where, const std::string& why) {
  throw Error(ErrorKind::kProtocol,
              fmt::format("invalid header in segment '{}': {}", where, why));
}

// A table block is described as uint8[n], 1-D (or not yet: dtype none).
void CheckKind(uint32_t kind, const ArrayDesc& d, const std::string& where, const char* what) {
  if (kind > kKindTable) Reject(where, fmt::format("{}_kind {} is unknown", what, kind));
  if (kind == kKindTable && d.dtype != Dtype::kNone &&
      (d.dtype != Dtype::kUInt8 || d.shape.size() != 1))
    Reject(where, fmt::format("{} is a table block described as {}, not as uint8[n]", what,
                              d.Describe()));
}

bool IsContinuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// a * b, or false on overflow.
bool MulOverflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

}  // namespace

ArrayDesc ArrayDesc::Make(Dtype dtype, std::vector<uint64_t> shape, Order order,
                          uint64_t offset) {
  if (shape.size() > kMaxDims)
    throw Error(ErrorKind::kUsage,
                fmt::format("arrays of {} dimensions are not supported (at "
                            "most {})",
                            shape.size(), kMaxDims));
  ArrayDesc d;
  d.dtype = dtype;
  d.order = order;
  d.offset = offset;
  uint64_t count = 1;
  for (uint64_t n : shape)
    if (MulOverflows(count, n, &count))
      throw Error(ErrorKind::kUsage, "array shape is too large (element count "
                                     "overflows 64 bits)");
  uint64_t nbytes;
  if (MulOverflows(count, ItemSize(dtype), &nbytes))
    throw Error(ErrorKind::kUsage, "array is too large (byte size overflows)");
  d.shape = std::move(shape);
  d.count = count;
  d.nbytes = nbytes;
  return d;
}

bool ArrayDesc::operator==(const ArrayDesc& o) const {
  return dtype == o.dtype && order == o.order && shape == o.shape &&
         count == o.count && offset == o.offset && nbytes == o.nbytes;
}

std::string ArrayDesc::Describe() const {
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i)
    dims += fmt::format("{}{}", i ? ", " : "", shape[i]);
  const char* ord = shape.size() >= 2
                        ? (order == Order::kF ? " (column-major)" : " (row-major)")
                        : "";
  return fmt::format("{}[{}]{}", DtypeName(dtype), dims, ord);
}

void EncodeArrayDesc(const ArrayDesc& d, uint8_t* p) {
  if (d.shape.size() > kMaxDims)
    throw Error(ErrorKind::kUsage, fmt::format("arrays of {} dimensions are not supported (at most {})",
                                               d.shape.size(), kMaxDims));
  std::memset(p, 0, kArrayDescSize);
  Store<uint32_t>(p + off::kDescDtype, static_cast<uint32_t>(d.dtype));
  Store<uint32_t>(p + off::kDescOrder, static_cast<uint32_t>(d.order));
  Store<uint32_t>(p + off::kDescNdim, static_cast<uint32_t>(d.shape.size()));
  Store<uint64_t>(p + off::kDescCount, d.count);
  Store<uint64_t>(p + off::kDescOffset, d.offset);
  Store<uint64_t>(p + off::kDescNbytes, d.nbytes);
  for (size_t i = 0; i < d.shape.size() && i < kMaxDims; ++i)
    Store<uint64_t>(p + off::kDescShape + 8 * i, d.shape[i]);
}

ArrayDesc DecodeArrayDesc(const uint8_t* p, const std::string& where,
                          const char* what) {
  ArrayDesc d;
  uint32_t code = Load<uint32_t>(p + off::kDescDtype);
  if (code == 0) {
    d.dtype = Dtype::kNone;
  } else if (auto dt = DtypeFromCode(code)) {
    d.dtype = *dt;
  } else {
    Reject(where, fmt::format("{} dtype code {} is unknown", what, code));
  }
  uint32_t order = Load<uint32_t>(p + off::kDescOrder);
  if (order > 1) Reject(where, fmt::format("{} order {} is unknown", what, order));
  d.order = static_cast<Order>(order);
  uint32_t ndim = Load<uint32_t>(p + off::kDescNdim);
  if (ndim > kMaxDims)
    Reject(where, fmt::format("{} has {} dimensions (at most {})", what, ndim,
                              kMaxDims));
  uint64_t count = 1;
  for (uint32_t i = 0; i < ndim; ++i) {
    uint64_t n = Load<uint64_t>(p + off::kDescShape + 8 * i);
    d.shape.push_back(n);
    if (MulOverflows(count, n, &count))
      Reject(where, fmt::format("{} shape overflows 64 bits", what));
  }
  d.count = Load<uint64_t>(p + off::kDescCount);
  d.offset = Load<uint64_t>(p + off::kDescOffset);
  d.nbytes = Load<uint64_t>(p + off::kDescNbytes);
  if (d.dtype == Dtype::kNone) return d;  // no array: geometry is not checked
  if (d.count != count)
    Reject(where, fmt::format("{} count {} does not match its shape ({} "
                              "elements)",
                              what, d.count, count));
  uint64_t nbytes;
  if (MulOverflows(count, ItemSize(d.dtype), &nbytes) || d.nbytes != nbytes)
    Reject(where, fmt::format("{} nbytes {} does not match {} elements of {}",
                              what, d.nbytes, count, DtypeName(d.dtype)));
  if (d.offset % kPayloadAlignment != 0)
    Reject(where, fmt::format("{} offset {} is not a multiple of {}", what,
                              d.offset, kPayloadAlignment));
  return d;
}

void EncodeHeader(const ExchangeHeader& h, uint8_t* dst, size_t dst_size) {
  if (dst_size < kHeaderSize)
    throw Error(ErrorKind::kProtocol,
                fmt::format("header buffer of {} bytes is smaller than {}",
                            dst_size, kHeaderSize));
  std::memset(dst, 0, kHeaderSize);
  std::memcpy(dst + off::kMagic, kMagic, sizeof kMagic);
  Store<uint16_t>(dst + off::kVersionMajor, h.version_major);
  Store<uint16_t>(dst + off::kVersionMinor, h.version_minor);
  Store<uint32_t>(dst + off::kHeaderSize, static_cast<uint32_t>(kHeaderSize));
  Store<uint32_t>(dst + off::kState, static_cast<uint32_t>(h.state));
  Store<uint32_t>(dst + off::kFlags, h.flags);
  Store<int64_t>(dst + off::kOwnerPid, h.owner_pid);
  Store<int64_t>(dst + off::kWorkerPid, h.worker_pid);
  Store<uint32_t>(dst + off::kResultLocation, h.result_location);
  Store<uint32_t>(dst + off::kInputKind, h.input_kind);
  Store<uint32_t>(dst + off::kResultKind, h.result_kind);
  EncodeArrayDesc(h.input, dst + off::kInput);
  EncodeArrayDesc(h.result, dst + off::kResult);
  // Texts are cut on UTF-8 character boundaries: the type keeps its start,
  // the traceback its end.
  size_t tlen = std::min(h.error_type.size(), kErrorTypeSize);
  while (tlen < h.error_type.size() && tlen > 0 && IsContinuation(h.error_type[tlen])) --tlen;
  std::memcpy(dst + off::kErrorType, h.error_type.data(), tlen);
  size_t len = h.error_text.size();
  bool cut = h.error_truncated || len > kErrorTextSize;
  size_t start = len - std::min(len, kErrorTextSize);
  while (start > 0 && start < len && IsContinuation(h.error_text[start])) ++start;
  size_t keep = len - start;
  std::memcpy(dst + off::kErrorText, h.error_text.data() + start, keep);
  Store<uint32_t>(dst + off::kErrorLength, static_cast<uint32_t>(keep));
  Store<uint32_t>(dst + off::kErrorFlags, cut ? kErrorFlagTruncated : 0u);
}

ExchangeHeader DecodeHeader(const uint8_t* src, size_t size,
                            const std::string& where) {
  // The fixed preamble first: magic and version decide how to read the rest.
  if (size < 16)
    Reject(where, fmt::format("segment holds {} bytes, too few for a header",
                              size));
  if (std::memcmp(src + off::kMagic, kMagic, sizeof kMagic) != 0)
    Reject(where, "bad magic (not a pyrmap header, or overwritten)");
  ExchangeHeader h;
  h.version_major = Load<uint16_t>(src + off::kVersionMajor);
  h.version_minor = Load<uint16_t>(src + off::kVersionMinor);
  if (h.version_major > kVersionMajor)
    Reject(where, fmt::format("header version {}.{} is newer than this "
                              "pyrmap understands ({}.{})",
                              h.version_major, h.version_minor, kVersionMajor,
                              kVersionMinor));
  if (h.version_major < 1)
    Reject(where, fmt::format("header version {}.{} is unknown",
                              h.version_major, h.version_minor));
  uint32_t header_size = Load<uint32_t>(src + off::kHeaderSize);
  if (header_size < kHeaderSize || header_size > size)
    Reject(where, fmt::format("header_size {} does not fit: the segment holds "
                              "{} bytes and a header needs {}",
                              header_size, size, kHeaderSize));
  uint32_t state = Load<uint32_t>(src + off::kState);
  if (state > 2) Reject(where, fmt::format("state {} is unknown", state));
  h.state = static_cast<State>(state);
  h.flags = Load<uint32_t>(src + off::kFlags);
  h.owner_pid = Load<int64_t>(src + off::kOwnerPid);
  h.worker_pid = Load<int64_t>(src + off::kWorkerPid);
  h.result_location = Load<uint32_t>(src + off::kResultLocation);
  if (h.result_location > kResultInInputSegment)
    Reject(where, fmt::format("result_location {} is unknown", h.result_location));
  if (h.result_location == kResultInInputSegment && !(h.flags & kFlagInPlace))
    Reject(where, "result_location says the input's segment, which the caller did not hand over");
  h.input = DecodeArrayDesc(src + off::kInput, where, "input");
  h.result = DecodeArrayDesc(src + off::kResult, where, "result");
  if (h.version_major >= 2) {
    h.input_kind = Load<uint32_t>(src + off::kInputKind);
    h.result_kind = Load<uint32_t>(src + off::kResultKind);
  }
  CheckKind(h.input_kind, h.input, where, "input");
  CheckKind(h.result_kind, h.result, where, "result");
  const char* type = reinterpret_cast<const char*>(src + off::kErrorType);
  h.error_type.assign(type, strnlen(type, kErrorTypeSize));
  uint32_t elen = Load<uint32_t>(src + off::kErrorLength);
  if (elen > kErrorTextSize)
    Reject(where, fmt::format("error_length {} exceeds the error area ({} "
                              "bytes)",
                              elen, kErrorTextSize));
  h.error_text.assign(reinterpret_cast<const char*>(src + off::kErrorText),
                      elen);
  h.error_truncated =
      (Load<uint32_t>(src + off::kErrorFlags) & kErrorFlagTruncated) != 0;
  if (h.state == State::kResultReady && h.result.dtype == Dtype::kNone)
    Reject(where, "state is 'result ready' but no result is described");
  return h;
}

void CheckPayloadFits(const ArrayDesc& desc, uint64_t segment_size,
                      const std::string& where) {
  uint64_t end;
  if (__builtin_add_overflow(desc.offset, desc.nbytes, &end) ||
      end > segment_size)
    throw Error(ErrorKind::kProtocol,
                fmt::format("payload of {} at offset {} ({} bytes) does not "
                            "fit segment '{}' of {} bytes",
                            desc.Describe(), desc.offset, desc.nbytes, where,
                            segment_size));
}

}  // namespace pyrmap
