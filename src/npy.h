// npy.h — the header of numpy's .npy file format (versions 1.0, 2.0, 3.0).
//
// Only the header is handled here; the payload follows it unchanged, in the
// order the header states. Supported: the dtypes of dtype.h, little-endian,
// C or Fortran order, any number of dimensions up to kMaxDims.
#pragma once

#include <cstdint>
#include <string>

#include "header.h"

namespace pyrmap {

inline constexpr char kNpyMagic[] = "\x93NUMPY";
inline constexpr size_t kNpyMagicLen = 6;

// The array an .npy header describes, and where its payload starts.
struct NpyHeader {
  ArrayDesc desc;           // offset is 0; order from fortran_order
  uint64_t payload_offset;  // bytes from the start of the file
};

// True if `data` (at least `size` bytes) starts with the .npy magic.
bool IsNpy(const uint8_t* data, size_t size);

// Bytes needed before the header text can be parsed: the preamble
// (magic, version, header length). 0 if `prefix` (of `size` bytes, at least
// 12) is not an .npy preamble; otherwise the total header length.
uint64_t NpyHeaderLength(const uint8_t* prefix, size_t size, const std::string& where);

// Parses a complete header (`size` >= NpyHeaderLength). Throws
// Error(kUsage) naming `where` for malformed headers or unsupported dtypes.
NpyHeader ParseNpyHeader(const uint8_t* data, size_t size, const std::string& where);

// The header bytes for `desc` (version 1.0, or 2.0 when the text is long),
// padded so that the payload starts on a 64-byte boundary.
std::string FormatNpyHeader(const ArrayDesc& desc);

}  // namespace pyrmap
