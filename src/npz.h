// npz.h — numpy's .npz archives (np.savez): several named .npy arrays in
// one zip file.
//
// Read: members stored without compression (what np.savez writes), zip64
// included; a compressed member (np.savez_compressed), an encrypted one or
// one that is not an .npy file is refused naming it. The member's CRC is not
// checked (its payload is written into the input without a second pass).
// Each member becomes one named array of a table input (table.h): the
// script's function gets them as keyword arguments.
//
// Written: every member stored, with zip64 records (readable by numpy.load
// and Python's zipfile), each payload after its .npy header unchanged.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "header.h"
#include "input.h"

namespace pyrmap {

// True if `data` (`size` bytes) starts like a zip archive (a local file
// header, or the end record of an empty archive).
bool IsZip(const uint8_t* data, size_t size);

// Reads `n` bytes at `offset` of the archive into `dst`; throws when it
// cannot (a short file is Error(kUsage)).
using ReadAt = std::function<void(void* dst, uint64_t n, uint64_t offset)>;

// One .npy member of an archive: its name without ".npy", its array (offset
// 0) and where its payload starts in the archive.
struct NpzMember {
  std::string name;
  ArrayDesc desc;
  uint64_t payload_offset = 0;
};

// The members of the archive of `size` bytes read by `read`, in the order
// of its central directory. Throws Error(kUsage) naming `where` (and the
// member) for anything that is not an archive of stored .npy members.
std::vector<NpzMember> ReadNpzDirectory(const ReadAt& read, uint64_t size, const std::string& where);

// The input of an archive: a named list of its members, each read from
// `src` (its fd or data, with file_offset or data at the archive's start)
// at the member's payload. `where` names the archive in messages.
Input NpzInput(const std::vector<NpzMember>& members, const InputSource& src, const std::string& where);

// One array to write: its name in the archive (".npy" is appended), its
// geometry (offset ignored) and its bytes.
struct NpzArray {
  std::string name;
  ArrayDesc desc;
  const uint8_t* data = nullptr;
};

// Writes an archive of `arrays` through `write` (called with consecutive
// pieces of the file). Throws Error(kUsage) for a duplicated or empty name.
void WriteNpz(const std::vector<NpzArray>& arrays, const std::function<void(const void*, uint64_t)>& write);

// CRC-32 (zip's, IEEE 802.3) of `n` bytes, continuing from `crc` (0 to
// start).
uint32_t Crc32(uint32_t crc, const void* data, uint64_t n);

}  // namespace pyrmap
