#include "pool_message.h"

#include <cstring>

#include <fmt/format.h>

#include "bytes.h"
#include "error.h"

namespace pyrmap {

namespace {

[[noreturn]] void Bad(const std::string& where, const std::string& why) {
  throw Error(ErrorKind::kProtocol, fmt::format("invalid message from {}: {}", where, why));
}

class Writer {
 public:
  explicit Writer(size_t fixed) : buf_(fixed, 0) {}
  uint8_t* at(size_t off) { return buf_.data() + off; }
  void Str(const std::string& s) {
    uint32_t n = static_cast<uint32_t>(s.size());
    size_t pos = buf_.size();
    buf_.resize(pos + 4 + n);
    Store<uint32_t>(buf_.data() + pos, n);
    std::memcpy(buf_.data() + pos + 4, s.data(), n);
  }
  void Append(size_t n) { buf_.resize(buf_.size() + n, 0); }
  size_t size() const { return buf_.size(); }
  std::vector<uint8_t> Take() { return std::move(buf_); }

 private:
  std::vector<uint8_t> buf_;
};

class Reader {
 public:
  Reader(const uint8_t* p, size_t n, size_t pos, const std::string& where)
      : p_(p), n_(n), pos_(pos), where_(where) {}
  uint32_t U32() {
    Need(4);
    uint32_t v = Load<uint32_t>(p_ + pos_);
    pos_ += 4;
    return v;
  }
  std::string Str() {
    uint32_t len = U32();
    Need(len);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    return s;
  }
  const uint8_t* Take(size_t n) {
    Need(n);
    const uint8_t* q = p_ + pos_;
    pos_ += n;
    return q;
  }
  void End() const {
    if (pos_ != n_) Bad(where_, fmt::format("{} bytes left over at the end", n_ - pos_));
  }

 private:
  void Need(size_t k) const {
    if (k > n_ - pos_) Bad(where_, fmt::format("it ends after {} bytes, {} more expected", n_, k));
  }
  const uint8_t* p_;
  size_t n_;
  size_t pos_;
  const std::string& where_;
};

void CheckStart(const uint8_t* p, size_t n, size_t fixed, const uint8_t (&magic)[4],
                const std::string& where) {
  if (n < fixed) Bad(where, fmt::format("{} bytes, fewer than the {} of its fixed part", n, fixed));
  if (std::memcmp(p, magic, 4) != 0) Bad(where, "bad magic");
  uint16_t version = Load<uint16_t>(p + 4);
  if (version != kPoolProtocolVersion)
    Bad(where, fmt::format("protocol version {} (this pyrmap speaks {})", version,
                           kPoolProtocolVersion));
}

}  // namespace

std::vector<uint8_t> EncodeRequest(const Request& r) {
  Writer w(kRequestFixedSize);
  std::memcpy(w.at(0), kRequestMagic, 4);
  Store<uint16_t>(w.at(4), kPoolProtocolVersion);
  Store<uint16_t>(w.at(6), kRequestCall);
  Store<uint64_t>(w.at(8), r.call_id);
  Store<uint32_t>(w.at(16), r.flags);
  Store<uint32_t>(w.at(20), static_cast<uint32_t>(r.input_location));
  Store<uint32_t>(w.at(24), static_cast<uint32_t>(r.scripts.size()));
  Store<uint32_t>(w.at(28), static_cast<uint32_t>(r.args.size()));
  Store<uint32_t>(w.at(32), r.keep_intermediate ? 1u : 0u);
  Store<uint32_t>(w.at(36), r.input_kind);
  Store<uint64_t>(w.at(40), r.result_offset);
  Store<uint64_t>(w.at(48), r.result_capacity);
  EncodeArrayDesc(r.input, w.at(64));
  for (const Script& s : r.scripts) {
    w.Str(s.path);
    w.Str(s.function);
  }
  for (const std::string& a : r.args) w.Str(a);
  return w.Take();
}

Request DecodeRequest(const uint8_t* p, size_t n, const std::string& where) {
  CheckStart(p, n, kRequestFixedSize, kRequestMagic, where);
  if (Load<uint16_t>(p + 6) != kRequestCall)
    Bad(where, fmt::format("request kind {} is unknown", Load<uint16_t>(p + 6)));
  Request r;
  r.call_id = Load<uint64_t>(p + 8);
  r.flags = Load<uint32_t>(p + 16);
  uint32_t loc = Load<uint32_t>(p + 20);
  if (loc != 1 && loc != 2) Bad(where, fmt::format("input location {} is unknown", loc));
  r.input_location = static_cast<InputLocation>(loc);
  uint32_t nscripts = Load<uint32_t>(p + 24), nargs = Load<uint32_t>(p + 28);
  r.keep_intermediate = Load<uint32_t>(p + 32) != 0;
  r.input_kind = Load<uint32_t>(p + 36);
  if (r.input_kind > kKindTable) Bad(where, fmt::format("input kind {} is unknown", r.input_kind));
  r.result_offset = Load<uint64_t>(p + 40);
  r.result_capacity = Load<uint64_t>(p + 48);
  r.input = DecodeArrayDesc(p + 64, where, "input");
  Reader rd(p, n, kRequestFixedSize, where);
  for (uint32_t i = 0; i < nscripts; ++i) {
    Script s;
    s.path = rd.Str();
    s.function = rd.Str();
    r.scripts.push_back(std::move(s));
  }
  for (uint32_t i = 0; i < nargs; ++i) r.args.push_back(rd.Str());
  rd.End();
  return r;
}

std::vector<uint8_t> EncodeReply(const Reply& r) {
  Writer w(kReplyFixedSize);
  std::memcpy(w.at(0), kReplyMagic, 4);
  Store<uint16_t>(w.at(4), kPoolProtocolVersion);
  Store<uint16_t>(w.at(6), r.ok ? 0 : 1);
  Store<uint64_t>(w.at(8), r.call_id);
  Store<uint32_t>(w.at(16), static_cast<uint32_t>(r.results.size()));
  Store<uint32_t>(w.at(20), r.scripts_loaded);
  Store<uint32_t>(w.at(24), r.failed_script);
  Store<uint32_t>(w.at(28), r.flags);
  for (const ReplyResult& res : r.results) {
    size_t pos = w.size();
    w.Append(kReplyResultSize);
    EncodeArrayDesc(res.desc, w.at(pos));
    Store<uint32_t>(w.at(pos + kArrayDescSize), static_cast<uint32_t>(res.location));
    Store<uint32_t>(w.at(pos + kArrayDescSize + 4), res.fd_index);
    Store<uint32_t>(w.at(pos + kArrayDescSize + 8), res.kind);
  }
  w.Str(r.error_type);
  w.Str(r.error_text);
  size_t pos = w.size();
  w.Append(4);
  Store<uint32_t>(w.at(pos), static_cast<uint32_t>(r.warnings.size()));
  for (const std::string& s : r.warnings) w.Str(s);
  return w.Take();
}

Reply DecodeReply(const uint8_t* p, size_t n, const std::string& where) {
  CheckStart(p, n, kReplyFixedSize, kReplyMagic, where);
  uint16_t status = Load<uint16_t>(p + 6);
  if (status > 1) Bad(where, fmt::format("status {} is unknown", status));
  Reply r;
  r.ok = status == 0;
  r.call_id = Load<uint64_t>(p + 8);
  uint32_t nresults = Load<uint32_t>(p + 16);
  r.scripts_loaded = Load<uint32_t>(p + 20);
  r.failed_script = Load<uint32_t>(p + 24);
  r.flags = Load<uint32_t>(p + 28);
  Reader rd(p, n, kReplyFixedSize, where);
  for (uint32_t i = 0; i < nresults; ++i) {
    const uint8_t* q = rd.Take(kReplyResultSize);
    ReplyResult res;
    res.desc = DecodeArrayDesc(q, where, "result");
    uint32_t loc = Load<uint32_t>(q + kArrayDescSize);
    if (loc != 1 && loc != 2) Bad(where, fmt::format("result location {} is unknown", loc));
    res.location = static_cast<ReplyLocation>(loc);
    res.fd_index = Load<uint32_t>(q + kArrayDescSize + 4);
    res.kind = Load<uint32_t>(q + kArrayDescSize + 8);
    if (res.kind > kKindTable) Bad(where, fmt::format("result kind {} is unknown", res.kind));
    r.results.push_back(res);
  }
  r.error_type = rd.Str();
  r.error_text = rd.Str();
  uint32_t nwarnings = rd.U32();
  for (uint32_t i = 0; i < nwarnings; ++i) r.warnings.push_back(rd.Str());
  rd.End();
  return r;
}

}  // namespace pyrmap
