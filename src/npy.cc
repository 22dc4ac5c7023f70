#include "npy.h"

#include <cctype>
#include <cstring>

#include <fmt/format.h>

#include "error.h"

namespace pyrmap {

namespace {

[[noreturn]] void Bad(const std::string& where, const std::string& why) {
  throw Error(ErrorKind::kUsage, fmt::format("{}: not a readable .npy file: {}", where, why));
}

// A tiny reader for the Python literal dict of an .npy header, e.g.
// {'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }
class DictReader {
 public:
  DictReader(std::string_view s, const std::string& where) : s_(s), where_(where) {}

  void Expect(char c) {
    Skip();
    if (i_ >= s_.size() || s_[i_] != c) Bad(where_, fmt::format("expected '{}' in header", c));
    ++i_;
  }
  bool Peek(char c) {
    Skip();
    return i_ < s_.size() && s_[i_] == c;
  }
  std::string String() {
    Skip();
    if (i_ >= s_.size() || (s_[i_] != '\'' && s_[i_] != '"')) Bad(where_, "expected a string in header");
    char q = s_[i_++];
    size_t end = s_.find(q, i_);
    if (end == std::string_view::npos) Bad(where_, "unterminated string in header");
    std::string out(s_.substr(i_, end - i_));
    i_ = end + 1;
    return out;
  }
  bool Bool() {
    Skip();
    if (s_.substr(i_, 4) == "True") {
      i_ += 4;
      return true;
    }
    if (s_.substr(i_, 5) == "False") {
      i_ += 5;
      return false;
    }
    Bad(where_, "expected True or False in header");
  }
  std::vector<uint64_t> Tuple() {
    Expect('(');
    std::vector<uint64_t> dims;
    while (!Peek(')')) {
      Skip();
      if (i_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[i_])))
        Bad(where_, "expected a non-negative integer in shape");
      uint64_t v = 0;
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) {
        if (__builtin_mul_overflow(v, 10u, &v) ||
            __builtin_add_overflow(v, static_cast<uint64_t>(s_[i_] - '0'), &v))
          Bad(where_, "shape entry overflows");
        ++i_;
      }
      if (Peek('L')) ++i_;  // old Python 2 long suffix
      dims.push_back(v);
      if (Peek(',')) ++i_;
    }
    Expect(')');
    return dims;
  }

 private:
  void Skip() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  std::string_view s_;
  size_t i_ = 0;
  const std::string& where_;
};

}  // namespace

bool IsNpy(const uint8_t* data, size_t size) {
  return size >= kNpyMagicLen && std::memcmp(data, kNpyMagic, kNpyMagicLen) == 0;
}

uint64_t NpyHeaderLength(const uint8_t* p, size_t size, const std::string& where) {
  if (!IsNpy(p, size)) return 0;
  if (size < 10) Bad(where, "file ends inside the header");
  uint8_t major = p[6];
  if (major == 1) {
    uint16_t len;
    std::memcpy(&len, p + 8, 2);
    return 10u + len;
  }
  if (major == 2 || major == 3) {
    if (size < 12) Bad(where, "file ends inside the header");
    uint32_t len;
    std::memcpy(&len, p + 8, 4);
    return 12u + len;
  }
  Bad(where, fmt::format("format version {}.{} is not supported", major, p[7]));
}

NpyHeader ParseNpyHeader(const uint8_t* p, size_t size, const std::string& where) {
  uint64_t total = NpyHeaderLength(p, size, where);
  if (total == 0) Bad(where, "no .npy magic");
  if (size < total) Bad(where, "file ends inside the header");
  size_t text_start = p[6] == 1 ? 10 : 12;
  std::string_view text(reinterpret_cast<const char*>(p) + text_start, total - text_start);
  DictReader r(text, where);
  std::string descr;
  bool fortran = false, have_descr = false, have_order = false, have_shape = false;
  std::vector<uint64_t> shape;
  r.Expect('{');
  while (!r.Peek('}')) {
    std::string key = r.String();
    r.Expect(':');
    if (key == "descr") {
      descr = r.String();
      have_descr = true;
    } else if (key == "fortran_order") {
      fortran = r.Bool();
      have_order = true;
    } else if (key == "shape") {
      shape = r.Tuple();
      have_shape = true;
    } else {
      Bad(where, fmt::format("unknown header key '{}'", key));
    }
    if (r.Peek(',')) r.Expect(',');
  }
  r.Expect('}');
  if (!have_descr || !have_order || !have_shape)
    Bad(where, "header lacks descr, fortran_order or shape");
  auto dtype = ParseNumpyTypeString(descr);
  if (!dtype)
    throw Error(ErrorKind::kUsage,
                fmt::format("{}: .npy dtype '{}' is not supported (supported: {}, "
                            "little-endian)",
                            where, descr, DtypeNameList()));
  NpyHeader h;
  h.desc = ArrayDesc::Make(*dtype, shape, fortran ? Order::kF : Order::kC);
  h.payload_offset = total;
  return h;
}

std::string FormatNpyHeader(const ArrayDesc& desc) {
  std::string shape;
  for (size_t i = 0; i < desc.shape.size(); ++i) shape += fmt::format("{}, ", desc.shape[i]);
  if (desc.shape.size() > 1) shape.resize(shape.size() - 2);
  if (desc.shape.size() == 1) shape.resize(shape.size() - 1);
  std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': {}, 'shape': ({}), }}",
                                 NumpyTypeString(desc.dtype),
                                 desc.order == Order::kF && desc.shape.size() >= 2 ? "True" : "False",
                                 shape);
  // Preamble (10 or 12 bytes) + text + '\n', padded with spaces to 64.
  bool v2 = dict.size() + 11 + 63 > 65535;
  size_t pre = v2 ? 12 : 10;
  size_t total = (pre + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - pre - dict.size() - 1, ' ');
  dict.push_back('\n');
  std::string out(kNpyMagic, kNpyMagicLen);
  out.push_back(static_cast<char>(v2 ? 2 : 1));
  out.push_back(0);
  if (v2) {
    uint32_t len = static_cast<uint32_t>(dict.size());
    out.append(reinterpret_cast<const char*>(&len), 4);
  } else {
    uint16_t len = static_cast<uint16_t>(dict.size());
    out.append(reinterpret_cast<const char*>(&len), 2);
  }
  return out + dict;
}

}  // namespace pyrmap
