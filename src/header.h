// header.h — the exchange header: the layout of a call's "meta" segment.
//
// This file is the reference for the byte layout; python/pyrmap/_header.py
// implements the same table. A Python test compares every constant with this
// build's (`pyrmap --protocol-constants`, cli/protocol_constants.cc: a new
// constant goes there too), and tests/golden/ holds header images that both
// the C++ and the Python tests decode, so the two sides cannot drift.
//
// All integers are little-endian. Offsets are in bytes from the start of the
// meta segment. Version 2.0 (1.1 added result_location; a 1.0 header has 0
// there. 2.0 added input_kind and result_kind: a descriptor may describe a
// table block (table.h) instead of one array; a 1.x reader refuses 2.0, so
// that it never takes a table for an array of bytes):
//
//   offset size type      field
//   ------ ---- --------  ---------------------------------------------------
//        0    8 u8[8]     magic: 89 50 59 52 4D 41 50 0A ("\x89PYRMAP\n")
//        8    2 u16       version_major (2); readers reject a newer major
//       10    2 u16       version_minor (0); newer minors only add fields in
//                         reserved space, so readers accept them
//       12    4 u32       header_size: bytes of this header (4096)
//       16    4 u32       state: 0 input ready, 1 result ready, 2 error
//       20    4 u32       flags: bit 0 = the caller wants results of 2 or
//                         more dimensions in column-major (F) order; bit 1 =
//                         either order will do (keep the result's own
//                         layout; bit 0 then only breaks ties); bit 2 = the
//                         input's segment belongs to this script alone and
//                         was handed over writable: the result may be
//                         written into it instead of the result segment;
//                         bits 3-4 = how tables reach Python: 0 auto
//                         (pandas when importable), 1 pandas, 2 numpy only;
//                         bit 5 = a result table may refer to buffers of
//                         the input's table block (table.h)
//       24    8 i64       owner_pid: the process that created the segments
//       32    8 i64       worker_pid: the Python process (0 until it starts)
//       40    4 u32       result_location: 0 = the result segment, 1 = the
//                         input's segment (only with flag bit 2) (1.1)
//       44    4 u32       input_kind: 0 one array, 1 a table block (2.0)
//       48    4 u32       result_kind: 0 one array, 1 a table block (2.0)
//       52   12 -         reserved (0)
//       64  192 ArrayDesc input: the array in the data segment
//      256  192 ArrayDesc result: the array in the result segment
//      448   64 char[64]  error_type: Python exception type, NUL-padded UTF-8
//      512    4 u32       error_length: bytes used in error_text
//      516    4 u32       error_flags: bit 0 = text was cut (its start lost)
//      520  504 -         reserved (0)
//     1024 3072 char[]    error_text: traceback, UTF-8, error_length bytes
//     4096                end
//
// ArrayDesc (192 bytes, offsets relative to the descriptor):
//
//        0    4 u32       dtype code (dtype.h; 0 = no array)
//        4    4 u32       order: 0 = row-major (C), 1 = column-major (F)
//        8    4 u32       ndim: 0 (a scalar) .. 16
//       12    4 u32       reserved (0)
//       16    8 u64       count: number of elements = product of shape
//       24    8 u64       offset: payload start in its segment, a multiple
//                         of 64
//       32    8 u64       nbytes: count * item size
//       40    8 -         reserved (0)
//       48  128 u64[16]   shape; entries at and after ndim are 0
//      176   16 -         reserved (0)
//
// Protocol: the caller writes the input payload and the header with state 0;
// the Python side writes the result payload, then the result descriptor,
// then sets state 1 last (or writes error_* and sets state 2). The caller
// reads the header only after the Python process has exited.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dtype.h"

namespace pyrmap {

inline constexpr uint8_t kMagic[8] = {0x89, 'P', 'Y', 'R', 'M', 'A', 'P', '\n'};
inline constexpr uint16_t kVersionMajor = 2;
inline constexpr uint16_t kVersionMinor = 0;
inline constexpr size_t kHeaderSize = 4096;
inline constexpr size_t kMaxDims = 16;
inline constexpr size_t kPayloadAlignment = 64;

// Field offsets (bytes from the start of the header).
namespace off {
inline constexpr size_t kMagic = 0;
inline constexpr size_t kVersionMajor = 8;
inline constexpr size_t kVersionMinor = 10;
inline constexpr size_t kHeaderSize = 12;
inline constexpr size_t kState = 16;
inline constexpr size_t kFlags = 20;
inline constexpr size_t kOwnerPid = 24;
inline constexpr size_t kWorkerPid = 32;
inline constexpr size_t kResultLocation = 40;
inline constexpr size_t kInputKind = 44;
inline constexpr size_t kResultKind = 48;
inline constexpr size_t kInput = 64;
inline constexpr size_t kResult = 256;
inline constexpr size_t kErrorType = 448;
inline constexpr size_t kErrorLength = 512;
inline constexpr size_t kErrorFlags = 516;
inline constexpr size_t kErrorText = 1024;
// Within an ArrayDesc.
inline constexpr size_t kDescDtype = 0;
inline constexpr size_t kDescOrder = 4;
inline constexpr size_t kDescNdim = 8;
inline constexpr size_t kDescCount = 16;
inline constexpr size_t kDescOffset = 24;
inline constexpr size_t kDescNbytes = 32;
inline constexpr size_t kDescShape = 48;
}  // namespace off

inline constexpr size_t kArrayDescSize = 192;
inline constexpr size_t kErrorTypeSize = 64;
inline constexpr size_t kErrorTextSize = kHeaderSize - off::kErrorText;

enum class State : uint32_t { kInputReady = 0, kResultReady = 1, kError = 2 };
enum class Order : uint32_t { kC = 0, kF = 1 };

inline constexpr uint32_t kFlagResultOrderF = 1u << 0;
inline constexpr uint32_t kFlagResultOrderAny = 1u << 1;
inline constexpr uint32_t kFlagInPlace = 1u << 2;
inline constexpr uint32_t kResultInResultSegment = 0;
inline constexpr uint32_t kResultInInputSegment = 1;
inline constexpr uint32_t kErrorFlagTruncated = 1u << 0;
// Flags bits 3-4: how a table input reaches Python.
inline constexpr uint32_t kFlagTablesShift = 3;
inline constexpr uint32_t kFlagTablesMask = 3u << kFlagTablesShift;
inline constexpr uint32_t kTablesAuto = 0;
inline constexpr uint32_t kTablesPandas = 1;
inline constexpr uint32_t kTablesNumpy = 2;
// Flag bit 5: a result table may refer to the input block's buffers.
inline constexpr uint32_t kFlagInputRefs = 1u << 5;
// What an input or result descriptor describes.
inline constexpr uint32_t kKindArray = 0;
inline constexpr uint32_t kKindTable = 1;

// An array's type and geometry. count and nbytes are derived from shape and
// dtype by Make(); readers check that stored values agree.
struct ArrayDesc {
  Dtype dtype = Dtype::kNone;
  Order order = Order::kC;
  std::vector<uint64_t> shape;  // empty for a scalar
  uint64_t count = 0;
  uint64_t offset = 0;
  uint64_t nbytes = 0;

  // Throws Error(kUsage) if ndim > kMaxDims or the byte size overflows.
  static ArrayDesc Make(Dtype dtype, std::vector<uint64_t> shape,
                        Order order = Order::kC, uint64_t offset = 0);
  size_t ndim() const { return shape.size(); }
  bool operator==(const ArrayDesc& o) const;
  // "float64[3, 2] (column-major)", for messages.
  std::string Describe() const;
};

struct ExchangeHeader {
  uint16_t version_major = kVersionMajor;
  uint16_t version_minor = kVersionMinor;
  State state = State::kInputReady;
  uint32_t flags = 0;
  int64_t owner_pid = 0;
  int64_t worker_pid = 0;
  uint32_t result_location = kResultInResultSegment;
  uint32_t input_kind = kKindArray;   // kKindTable: `input` is a table block
  uint32_t result_kind = kKindArray;  // kKindTable: `result` is a table block
  ArrayDesc input;
  ArrayDesc result;
  std::string error_type;
  std::string error_text;
  bool error_truncated = false;
};

// Writes `h` into `dst` (at least kHeaderSize bytes; all of it is written,
// reserved bytes as 0). Error texts longer than their areas are cut: the
// type at its end, the traceback at its start (the end says most).
void EncodeHeader(const ExchangeHeader& h, uint8_t* dst, size_t dst_size);

// Reads and validates a header from `src` (the mapped meta segment, `size`
// bytes). `where` names the segment in messages. Never reads outside
// [src, src + size). Throws Error(kProtocol) with a distinct message for: a
// segment too small for a header, a bad magic, a newer major version, a
// header_size that does not fit the segment, an unknown state, a descriptor
// that is inconsistent (unknown dtype, ndim > 16, count/nbytes that do not
// match the shape, a misaligned offset), an error_length beyond its area,
// and an unknown kind or a table described as anything but uint8[n].
ExchangeHeader DecodeHeader(const uint8_t* src, size_t size,
                            const std::string& where);

// Checks that `desc`'s payload lies inside a segment of `segment_size` bytes;
// throws Error(kProtocol) naming `where` if not.
void CheckPayloadFits(const ArrayDesc& desc, uint64_t segment_size,
                      const std::string& where);

// Encodes/decodes a single ArrayDesc at `p` (kArrayDescSize bytes). Decoding
// validates like DecodeHeader; `what` names the descriptor in messages.
void EncodeArrayDesc(const ArrayDesc& d, uint8_t* p);
ArrayDesc DecodeArrayDesc(const uint8_t* p, const std::string& where,
                          const char* what);

}  // namespace pyrmap
