// input.h — the input of a run: its geometry, where its elements come from,
// and the one fill that converts them and writes them into the data segment.
//
// Both callers describe their data with the same pieces. The command reads
// files and stdin: .npy (C or Fortran order), raw binary and whitespace-
// separated text, told apart by FileInput/BytesInput, and .npz archives
// (several named arrays, npz.h). The R package passes
// R's memory by pointer (MemoryInput) with its convention for missing
// values as Missing::kSentinels (convert.h). Either way the elements reach
// the segment through one chunked convert-and-write, so a value that does
// not fit the asked dtype, or a missing value it cannot represent, is
// refused in the same words.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "convert.h"
#include "header.h"
#include "segment.h"

namespace pyrmap {

// The input of a run: its geometry, and either a writer that fills a fresh
// data segment or an existing segment that already holds the payload.
struct Input {
  ArrayDesc desc;
  // kKindArray: desc is the array; kKindTable: desc is uint8[n], a table
  // block (table.h).
  uint32_t kind = kKindArray;
  // Writes desc.nbytes bytes into `seg` at offset 0 (e.g. with seg.Write,
  // passing `check` through). Called once, after the first interpreter has
  // been started. May throw (a value that does not fit, a read error, or
  // whatever `check` throws).
  std::function<void(Segment& seg, void (*check)(void*), void* check_arg)> fill;
  // Alternatively: the name of a segment holding the payload at desc.offset,
  // and the path of its directory ("": the call's segment directory).
  std::string segment;
  std::string segment_dir;
};

// Where the elements of an input are, in their own dtype: in memory, or in
// a range of an open file. `rules` names the data in messages and says
// which values are missing.
struct InputSource {
  Dtype dtype = Dtype::kNone;
  ConvertRules rules;
  // In memory: the first element; `owner` (may be null) keeps it alive for
  // as long as the Input is.
  const uint8_t* data = nullptr;
  std::shared_ptr<const void> owner;
  // In a file: an open descriptor (closed with the last copy) and the byte
  // offset of the first element.
  std::shared_ptr<const int> fd;
  uint64_t file_offset = 0;
};

// An input of `desc` (the dtype and shape Python gets, offset 0) whose
// desc.count elements are read from `src` and converted to desc.dtype by
// the fill, in chunks. Elements of the same dtype are written straight from
// the source (a file range in the kernel, with sendfile).
Input SourceInput(InputSource src, const ArrayDesc& desc);

// How to read a file or a byte buffer.
struct InputLayout {
  // "auto" (.npy if it starts with the .npy magic, .npz if it starts like a
  // zip archive, else raw for a file and text for bytes), "npy", "npz",
  // "raw" or "text". An .npz archive is a table input: a named list of its
  // arrays (npz.h).
  std::string format = "auto";
  // The dtype Python gets; empty: the .npy file's own, float64 for text.
  // Raw input needs it.
  std::optional<Dtype> dtype;
  // The shape of raw and text input; empty: 1-D. A .npy file has its own.
  std::optional<std::vector<uint64_t>> shape;
  Order order = Order::kC;  // of raw and text input with a shape
};

// The input in file `path`, as `layout` says. The file stays open (not
// read) until the fill runs, except for text, which is parsed now. Throws
// Error(kNotFound) for a file that cannot be opened, Error(kUsage) for a
// directory, a malformed or inconsistent file, a size that is not a whole
// number of elements or does not match the shape.
Input FileInput(const std::string& path, const InputLayout& layout);

// The same for bytes already read (stdin); `name` names them in messages.
Input BytesInput(std::shared_ptr<const std::vector<uint8_t>> bytes, const InputLayout& layout,
                 const std::string& name);

// Writes `count` elements of `src`, converted to `to`, into `seg` at byte
// `offset` (the fill of SourceInput, at any offset). Throws as the fill does.
void FillSource(const InputSource& src, Dtype to, uint64_t count, Segment& seg, uint64_t offset,
                void (*check)(void*), void* arg);

// The geometry of `count` elements of raw or text input: `shape` (whose
// product must be count) or 1-D. Throws Error(kUsage) naming `name`.
ArrayDesc InputGeometry(Dtype dtype, uint64_t count, const std::optional<std::vector<uint64_t>>& shape,
                        Order order, const std::string& name);

}  // namespace pyrmap
