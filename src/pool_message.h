// pool_message.h — the messages between a pool and its warm workers.
//
// A pool talks to each worker over a SOCK_SEQPACKET socket: one request, one
// reply per call, descriptors of segments passed along with SCM_RIGHTS.
// Small inputs and results travel in the worker's *area*, a segment both
// sides keep mapped for the worker's life; large ones in unnamed segments
// (O_TMPFILE in the segment directory) whose descriptors are passed; a
// large input made for one call is passed writable (flag bit 2) and the
// result may come back in it. The
// byte layout (little-endian) is documented in docs/protocol.md, "Warm
// workers"; python/pyrmap/_worker.py is the other side.
//
//   Request                          Reply
//   0  u32 magic "PYRQ"              0  u32 magic "PYRS"
//   4  u16 version (2)               4  u16 version (2)
//   6  u16 kind (1: call)            6  u16 status (0 ok, 1 error)
//   8  u64 call id                   8  u64 call id (the request's)
//  16  u32 header flags (layout)    16  u32 number of results
//  20  u32 input location           20  u32 scripts the worker has loaded
//  24  u32 number of scripts        24  u32 the failing script's index
//  28  u32 number of arguments      28  u32 flags (kReply*)
//  32  u32 keep intermediates       32  results: each an ArrayDesc (192
//  36  u32 input kind (header.h)        bytes), u32 location, u32 index
//  40  u64 result region offset         of its descriptor among those
//  48  u64 result region capacity       passed, u32 kind, u32 reserved
//  56  u64 reserved (0)              then error type and error text as
//  64  ArrayDesc input (192 bytes)       strings (error replies), then
// 256  per script: path, function        u32 number of warnings and the
//      (strings); then the arguments     warnings (strings)
//
// A string is a u32 byte count and that many UTF-8 bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "header.h"
#include "run.h"

namespace pyrmap {

inline constexpr uint8_t kRequestMagic[4] = {'P', 'Y', 'R', 'Q'};
inline constexpr uint8_t kReplyMagic[4] = {'P', 'Y', 'R', 'S'};
inline constexpr uint16_t kPoolProtocolVersion = 2;
inline constexpr uint16_t kRequestCall = 1;
inline constexpr size_t kRequestFixedSize = 256;
inline constexpr size_t kReplyFixedSize = 32;
inline constexpr size_t kReplyResultSize = kArrayDescSize + 16;
// The most a message may hold (tracebacks are cut to fit).
inline constexpr size_t kMaxMessageSize = 64 * 1024;

// Where a request's input lies.
enum class InputLocation : uint32_t {
  kArea = 1,        // in the worker's area, at input.offset
  kDescriptor = 2,  // in the segment passed with the request, at input.offset
};

// Where a reply's result lies.
enum class ReplyLocation : uint32_t {
  kArea = 1,        // in the worker's area, at desc.offset
  kDescriptor = 2,  // in the passed segment `fd_index`, at desc.offset
};

struct Request {
  uint64_t call_id = 0;
  uint32_t flags = 0;  // exchange header flags: the layout of results
  InputLocation input_location = InputLocation::kArea;
  ArrayDesc input;
  uint32_t input_kind = kKindArray;  // kKindTable: `input` is a table block
  std::vector<Script> scripts;  // more than one: a pipeline, run in order
  bool keep_intermediate = false;
  std::vector<std::string> args;  // sys.argv[1:] for every script
  uint64_t result_offset = 0;     // the area's result region
  uint64_t result_capacity = 0;
};

struct ReplyResult {
  ArrayDesc desc;
  ReplyLocation location = ReplyLocation::kArea;
  uint32_t fd_index = 0;
  uint32_t kind = kKindArray;  // kKindTable: `desc` is a table block
};

// Reply flag bit 0: the worker holds nothing of the call's passed input
// segment any more (no mapping, no array the script kept, no result written
// over it): the pool may write a later input into it.
inline constexpr uint32_t kReplyInputReleased = 1u << 0;

struct Reply {
  uint64_t call_id = 0;
  bool ok = false;
  uint32_t flags = 0;  // kReply*
  uint32_t scripts_loaded = 0;
  std::vector<ReplyResult> results;
  uint32_t failed_script = 0;
  std::string error_type;
  std::string error_text;
  std::vector<std::string> warnings;  // the Python warnings of the call
};

std::vector<uint8_t> EncodeRequest(const Request& r);
// Throws Error(kProtocol) naming `where` for anything that does not parse.
Request DecodeRequest(const uint8_t* p, size_t n, const std::string& where);

std::vector<uint8_t> EncodeReply(const Reply& r);
// Throws Error(kProtocol) naming `where` for anything that does not parse.
Reply DecodeReply(const uint8_t* p, size_t n, const std::string& where);

}  // namespace pyrmap
