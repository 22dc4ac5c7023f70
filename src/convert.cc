#include "convert.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include <fmt/format.h>

#include "error.h"

namespace pyrmap {

namespace {

// A value read from any dtype: integers are held exactly, floats as double.
struct Value {
  bool is_float;
  int64_t i;
  double f;
};

Value Load(Dtype t, const uint8_t* p) {
  switch (t) {
    case Dtype::kInt32: {
      int32_t v;
      std::memcpy(&v, p, 4);
      return {false, v, 0};
    }
    case Dtype::kInt64: {
      int64_t v;
      std::memcpy(&v, p, 8);
      return {false, v, 0};
    }
    case Dtype::kFloat32: {
      float v;
      std::memcpy(&v, p, 4);
      return {true, 0, v};
    }
    case Dtype::kFloat64: {
      double v;
      std::memcpy(&v, p, 8);
      return {true, 0, v};
    }
    case Dtype::kUInt8: return {false, p[0], 0};
    case Dtype::kBool: return {false, p[0] != 0, 0};
    case Dtype::kNone: break;
  }
  return {false, 0, 0};
}

std::string Show(const Value& v) { return v.is_float ? fmt::format("{}", v.f) : fmt::format("{}", v.i); }

[[noreturn]] void DoesNotFit(const Value& v, Dtype to, uint64_t index, const std::string& where) {
  throw Error(ErrorKind::kUsage, fmt::format("{}: value {} at position {} does not fit {}", where,
                                             Show(v), index, DtypeName(to)));
}

// Whole-number value of `v` within [lo, hi], or an error.
int64_t ToInteger(const Value& v, int64_t lo, int64_t hi, Dtype to, uint64_t index,
                  const std::string& where) {
  if (!v.is_float) {
    if (v.i < lo || v.i > hi) DoesNotFit(v, to, index, where);
    return v.i;
  }
  // 2^63 is the first double beyond int64; compare in double space.
  if (!std::isfinite(v.f) || std::trunc(v.f) != v.f || v.f < static_cast<double>(lo) ||
      v.f >= 9223372036854775808.0 || v.f > static_cast<double>(hi))
    DoesNotFit(v, to, index, where);
  return static_cast<int64_t>(v.f);
}

void Store(const Value& v, Dtype to, uint8_t* p, uint64_t index, const std::string& where) {
  switch (to) {
    case Dtype::kInt32: {
      int32_t x = static_cast<int32_t>(ToInteger(v, INT32_MIN, INT32_MAX, to, index, where));
      std::memcpy(p, &x, 4);
      return;
    }
    case Dtype::kInt64: {
      int64_t x = ToInteger(v, INT64_MIN, INT64_MAX, to, index, where);
      std::memcpy(p, &x, 8);
      return;
    }
    case Dtype::kUInt8: p[0] = static_cast<uint8_t>(ToInteger(v, 0, 255, to, index, where)); return;
    case Dtype::kBool: p[0] = static_cast<uint8_t>(ToInteger(v, 0, 1, to, index, where)); return;
    case Dtype::kFloat64: {
      double x = v.is_float ? v.f : static_cast<double>(v.i);
      // An integer is exact in a double iff it survives the round trip
      // (2^63 itself would overflow the cast back, so it is checked first).
      if (!v.is_float && (x >= 9223372036854775808.0 || static_cast<int64_t>(x) != v.i))
        DoesNotFit(v, to, index, where);
      std::memcpy(p, &x, 8);
      return;
    }
    case Dtype::kFloat32: {
      double d = v.is_float ? v.f : static_cast<double>(v.i);
      float x = static_cast<float>(d);
      if (std::isinf(x) && std::isfinite(d)) DoesNotFit(v, to, index, where);
      if (!v.is_float && (static_cast<double>(x) >= 9223372036854775808.0 ||
                          static_cast<int64_t>(static_cast<double>(x)) != v.i))
        DoesNotFit(v, to, index, where);
      std::memcpy(p, &x, 4);
      return;
    }
    case Dtype::kNone: break;
  }
}

}  // namespace

void ConvertElements(Dtype from, const void* src, Dtype to, void* dst, uint64_t count,
                     uint64_t first_index, const std::string& where) {
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  if (from == to) {
    std::memcpy(d, s, count * ItemSize(from));
    return;
  }
  const size_t in = ItemSize(from), out = ItemSize(to);
  for (uint64_t i = 0; i < count; ++i)
    Store(Load(from, s + i * in), to, d + i * out, first_index + i, where);
}

std::vector<uint8_t> ParseTextNumbers(std::istream& in, Dtype dtype, const std::string& where,
                                      uint64_t* count) {
  std::vector<uint8_t> out;
  const size_t item = ItemSize(dtype);
  std::string line, tok;
  uint64_t n = 0, lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
      if (i >= line.size()) break;
      size_t j = i;
      while (j < line.size() && !std::isspace(static_cast<unsigned char>(line[j]))) ++j;
      tok.assign(line, i, j - i);
      i = j;
      Value v{false, 0, 0};
      const char* s = tok.c_str();
      char* end = nullptr;
      errno = 0;
      if (tok == "true" || tok == "True") {
        v = {false, 1, 0};
      } else if (tok == "false" || tok == "False") {
        v = {false, 0, 0};
      } else {
        // Integers are read exactly for integer types; float types read
        // every token as a decimal (so "-0" keeps its sign).
        const bool float_type = dtype == Dtype::kFloat32 || dtype == Dtype::kFloat64;
        long long ll = float_type ? 0 : std::strtoll(s, &end, 10);
        if (!float_type && *end == '\0' && errno == 0) {
          v = {false, ll, 0};
        } else {
          errno = 0;
          double f = std::strtod(s, &end);
          if (*end != '\0' || end == s)
            throw Error(ErrorKind::kUsage, fmt::format("{}: line {}: '{}' is not a number", where,
                                                       lineno, tok));
          v = {true, 0, f};
          if (errno == ERANGE && std::isinf(f))
            throw Error(ErrorKind::kUsage, fmt::format("{}: line {}: '{}' is out of range", where,
                                                       lineno, tok));
        }
      }
      out.resize(out.size() + item);
      Store(v, dtype, out.data() + out.size() - item, n, where);
      ++n;
    }
  }
  if (in.bad()) throw Error(ErrorKind::kSystem, fmt::format("{}: read failed", where));
  *count = n;
  return out;
}

namespace {

// Shortest round-trip text of a float, always recognisable as one ("2.0",
// not "2"), as Python's repr writes it.
template <typename F>
void FormatFloat(F v, fmt::memory_buffer& buf) {
  if (std::isnan(v)) {  // whatever its sign and payload, as Python prints it
    buf.append(std::string_view("nan"));
    return;
  }
  size_t start = buf.size();
  fmt::format_to(std::back_inserter(buf), "{}", v);
  if (!std::isfinite(v)) return;
  for (size_t i = start; i < buf.size(); ++i)
    if (buf[i] == '.' || buf[i] == 'e') return;
  buf.append(std::string_view(".0"));
}

void FormatValue(Dtype t, const uint8_t* p, fmt::memory_buffer& buf) {
  switch (t) {
    case Dtype::kFloat32: {
      float v;
      std::memcpy(&v, p, 4);
      FormatFloat(v, buf);
      return;
    }
    case Dtype::kFloat64: {
      double v;
      std::memcpy(&v, p, 8);
      FormatFloat(v, buf);
      return;
    }
    case Dtype::kBool: fmt::format_to(std::back_inserter(buf), "{}", p[0] ? "True" : "False"); return;
    default: fmt::format_to(std::back_inserter(buf), "{}", Load(t, p).i); return;
  }
}

}  // namespace

void FormatTextArray(const ArrayDesc& d, const uint8_t* data, std::ostream& out) {
  const size_t item = ItemSize(d.dtype);
  const size_t nd = d.shape.size();
  // Strides in elements for the logical (row-major) index, honouring order.
  std::vector<uint64_t> stride(nd, 1);
  if (d.order == Order::kF) {
    for (size_t k = 1; k < nd; ++k) stride[k] = stride[k - 1] * d.shape[k - 1];
  } else {
    for (size_t k = nd; k-- > 1;) stride[k - 1] = stride[k] * d.shape[k];
  }
  fmt::memory_buffer buf;
  auto flush = [&]() {
    out.write(buf.data(), static_cast<std::streamsize>(buf.size()));
    buf.clear();
  };
  if (nd <= 1) {
    for (uint64_t i = 0; i < d.count; ++i) {
      FormatValue(d.dtype, data + i * item, buf);
      buf.push_back('\n');
      if (buf.size() > 1 << 16) flush();
    }
    flush();
    return;
  }
  const uint64_t rows = d.shape[nd - 2], cols = d.shape[nd - 1];
  const uint64_t blocks = rows != 0 && cols != 0 ? d.count / (rows * cols) : 0;
  std::vector<uint64_t> idx(nd, 0);
  for (uint64_t b = 0; b < blocks; ++b) {
    // Decode block number b into the leading indices (row-major).
    uint64_t rem = b;
    for (size_t k = nd - 2; k-- > 0;) {
      idx[k] = rem % d.shape[k];
      rem /= d.shape[k];
    }
    uint64_t base = 0;
    for (size_t k = 0; k + 2 < nd; ++k) base += idx[k] * stride[k];
    if (b > 0) buf.push_back('\n');
    for (uint64_t r = 0; r < rows; ++r) {
      for (uint64_t c = 0; c < cols; ++c) {
        if (c) buf.push_back(' ');
        uint64_t e = base + r * stride[nd - 2] + c * stride[nd - 1];
        FormatValue(d.dtype, data + e * item, buf);
      }
      buf.push_back('\n');
      if (buf.size() > 1 << 16) flush();
    }
  }
  flush();
}

}  // namespace pyrmap
