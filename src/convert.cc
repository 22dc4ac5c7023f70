#include "convert.h"

#include <algorithm>
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

constexpr double kTwo63 = 9223372036854775808.0;

// A value read from any dtype: integers are held exactly, floats as double.
struct Value {
  bool is_float;
  int64_t i;
  double f;
  bool missing = false;  // a missing value under Missing::kSentinels
};

bool IsFloat64Missing(double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  return std::isnan(v) && (bits & 0xFFFFFFFFu) == (kFloat64Missing & 0xFFFFFFFFu);
}

Value Load(Dtype t, const uint8_t* p, Missing missing) {
  const bool sentinels = missing == Missing::kSentinels;
  switch (t) {
    case Dtype::kInt32: {
      int32_t v;
      std::memcpy(&v, p, 4);
      return {false, v, 0, sentinels && v == INT32_MIN};
    }
    case Dtype::kInt64: {
      int64_t v;
      std::memcpy(&v, p, 8);
      return {false, v, 0, sentinels && v == INT64_MIN};
    }
    case Dtype::kFloat32: {
      float v;
      uint32_t bits;
      std::memcpy(&v, p, 4);
      std::memcpy(&bits, p, 4);
      return {true, 0, v, sentinels && bits == kFloat32Missing};
    }
    case Dtype::kFloat64: {
      double v;
      std::memcpy(&v, p, 8);
      return {true, 0, v, sentinels && IsFloat64Missing(v)};
    }
    case Dtype::kUInt8: return {false, p[0], 0};
    case Dtype::kBool: return {false, p[0] != 0, 0};
    case Dtype::kNone: break;
  }
  return {false, 0, 0};
}

std::string Show(const Value& v) {
  if (!v.is_float) return fmt::format("{}", v.i);
  return std::isnan(v.f) ? "NaN" : fmt::format("{}", v.f);
}

enum class Stored { kOk, kDoesNotFit, kMissing };

// The whole-number value of `v` within [lo, hi] into *out, or false. The
// range is checked on the integer: -2^63 + 1 as a double rounds to -2^63.
bool ToInteger(const Value& v, int64_t lo, int64_t hi, int64_t* out) {
  int64_t x;
  if (!v.is_float) {
    x = v.i;
  } else {
    if (!std::isfinite(v.f) || std::trunc(v.f) != v.f || v.f >= kTwo63 || v.f < -kTwo63) return false;
    x = static_cast<int64_t>(v.f);
  }
  if (x < lo || x > hi) return false;
  *out = x;
  return true;
}

// Writes `v` as `to` at `p`. With `sentinels`, the integer types' sentinels
// are not values and a missing value is written as the float types' NaN.
Stored Store(const Value& v, Dtype to, uint8_t* p, bool sentinels) {
  if (v.missing) {
    if (to == Dtype::kFloat64) {
      std::memcpy(p, &kFloat64Missing, 8);
      return Stored::kOk;
    }
    if (to == Dtype::kFloat32) {
      std::memcpy(p, &kFloat32Missing, 4);
      return Stored::kOk;
    }
    return Stored::kMissing;
  }
  int64_t x = 0;
  switch (to) {
    case Dtype::kInt32: {
      if (!ToInteger(v, sentinels ? INT32_MIN + 1 : INT32_MIN, INT32_MAX, &x)) return Stored::kDoesNotFit;
      int32_t y = static_cast<int32_t>(x);
      std::memcpy(p, &y, 4);
      return Stored::kOk;
    }
    case Dtype::kInt64:
      if (!ToInteger(v, sentinels ? INT64_MIN + 1 : INT64_MIN, INT64_MAX, &x)) return Stored::kDoesNotFit;
      std::memcpy(p, &x, 8);
      return Stored::kOk;
    case Dtype::kUInt8:
    case Dtype::kBool:
      if (!ToInteger(v, 0, to == Dtype::kBool ? 1 : 255, &x)) return Stored::kDoesNotFit;
      p[0] = static_cast<uint8_t>(x);
      return Stored::kOk;
    case Dtype::kFloat64: {
      double d = v.is_float ? v.f : static_cast<double>(v.i);
      // An integer is exact in a double iff it survives the round trip
      // (2^63 itself would overflow the cast back, so it is checked first).
      if (!v.is_float && (d >= kTwo63 || static_cast<int64_t>(d) != v.i)) return Stored::kDoesNotFit;
      std::memcpy(p, &d, 8);
      return Stored::kOk;
    }
    case Dtype::kFloat32: {
      double d = v.is_float ? v.f : static_cast<double>(v.i);
      float f = static_cast<float>(d);
      if (std::isinf(f) && std::isfinite(d)) return Stored::kDoesNotFit;
      if (!v.is_float && (static_cast<double>(f) >= kTwo63 ||
                          static_cast<int64_t>(static_cast<double>(f)) != v.i))
        return Stored::kDoesNotFit;
      std::memcpy(p, &f, 4);
      return Stored::kOk;
    }
    case Dtype::kNone: break;
  }
  return Stored::kDoesNotFit;
}

[[noreturn]] void MissingNotRepresentable(Dtype to, uint64_t pos, const ConvertRules& rules) {
  throw Error(ErrorKind::kUsage,
              fmt::format("{}[{}] is NA (a missing value), which dtype '{}' cannot represent "
                          "(float64 and float32 keep it as NaN)",
                          rules.name, rules.index_base + pos, DtypeName(to)));
}

[[noreturn]] void Refuse(Stored why, const Value& v, Dtype to, uint64_t pos, const ConvertRules& rules) {
  if (why == Stored::kMissing) MissingNotRepresentable(to, pos, rules);
  bool sentinel = false;  // the target's own marker of a missing value
  if (rules.missing == Missing::kSentinels && (to == Dtype::kInt32 || to == Dtype::kInt64)) {
    const int64_t marker = to == Dtype::kInt32 ? INT32_MIN : INT64_MIN;
    int64_t x;
    sentinel = ToInteger(v, marker, marker, &x);
  }
  throw Error(ErrorKind::kUsage,
              fmt::format("{}[{}] = {} does not fit dtype '{}' exactly{}", rules.name,
                          rules.index_base + pos, Show(v), DtypeName(to),
                          sentinel ? " (that value marks a missing value)" : ""));
}

// The index of the first element equal to `marker` among `count` at `p`, or
// count. Blocks without a branch per element, so that the compiler
// vectorises the scan.
template <typename T>
uint64_t FindValue(const uint8_t* p, uint64_t count, T marker) {
  constexpr uint64_t kBlock = 4096;
  for (uint64_t b = 0; b < count; b += kBlock) {
    const uint64_t n = std::min(kBlock, count - b);
    bool hit = false;
    for (uint64_t i = 0; i < n; ++i) {
      T v;
      std::memcpy(&v, p + (b + i) * sizeof(T), sizeof(T));
      hit |= v == marker;
    }
    if (!hit) continue;
    for (uint64_t i = 0; i < n; ++i) {
      T v;
      std::memcpy(&v, p + (b + i) * sizeof(T), sizeof(T));
      if (v == marker) return b + i;
    }
  }
  return count;
}

bool HasSentinel(Dtype t) {
  return t == Dtype::kInt32 || t == Dtype::kInt64 || t == Dtype::kFloat32 || t == Dtype::kFloat64;
}

}  // namespace

bool HoldsMissing(Dtype to) { return to == Dtype::kFloat32 || to == Dtype::kFloat64; }

void RefuseMissing(Dtype dtype, const void* data, uint64_t count, uint64_t first, Dtype to,
                   const ConvertRules& rules) {
  if (rules.missing == Missing::kNone || HoldsMissing(to) || !HasSentinel(dtype)) return;
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t at = count;
  switch (dtype) {
    case Dtype::kInt32: at = FindValue<int32_t>(p, count, INT32_MIN); break;
    case Dtype::kInt64: at = FindValue<int64_t>(p, count, INT64_MIN); break;
    case Dtype::kFloat32: at = FindValue<uint32_t>(p, count, kFloat32Missing); break;
    default:
      for (uint64_t i = 0; i < count && at == count; ++i)
        if (Load(dtype, p + i * ItemSize(dtype), rules.missing).missing) at = i;
      break;
  }
  if (at < count) MissingNotRepresentable(to, first + at, rules);
}

void ConvertElements(Dtype from, const void* src, Dtype to, void* dst, uint64_t count,
                     uint64_t first, const ConvertRules& rules) {
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  if (from == to) {
    // The same bytes; only a missing value the type cannot hold is refused.
    RefuseMissing(from, s, count, first, to, rules);
    std::memcpy(d, s, count * ItemSize(from));
    return;
  }
  const size_t in = ItemSize(from), out = ItemSize(to);
  const bool sentinels = rules.missing == Missing::kSentinels;
  for (uint64_t i = 0; i < count; ++i) {
    Value v = Load(from, s + i * in, rules.missing);
    Stored r = Store(v, to, d + i * out, sentinels);
    if (r != Stored::kOk) Refuse(r, v, to, first + i, rules);
  }
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
    auto space = [&](size_t k) { return std::isspace(static_cast<unsigned char>(line[k])) != 0; };
    auto empty_field = [&]() {
      return Error(ErrorKind::kUsage,
                   fmt::format("{}: line {}: an empty field (numbers are separated by whitespace or "
                               "by one comma)",
                               where, lineno));
    };
    bool after_comma = false;  // a number must follow on this line
    while (i < line.size()) {
      while (i < line.size() && space(i)) ++i;
      if (i >= line.size()) break;
      if (line[i] == ',') throw empty_field();  // ",1", "1,,2"
      size_t j = i;
      while (j < line.size() && !space(j) && line[j] != ',') ++j;
      tok.assign(line, i, j - i);
      i = j;
      // One comma may follow the number (CSV-style "1, 2,3").
      while (i < line.size() && space(i)) ++i;
      after_comma = i < line.size() && line[i] == ',';
      if (after_comma) ++i;
      Value v{false, 0, 0, false};
      const char* s = tok.c_str();
      char* end = nullptr;
      errno = 0;
      if (tok == "true" || tok == "True") {
        v = {false, 1, 0, false};
      } else if (tok == "false" || tok == "False") {
        v = {false, 0, 0, false};
      } else {
        // Integers are read exactly for integer types; float types read
        // every token as a decimal (so "-0" keeps its sign).
        const bool float_type = dtype == Dtype::kFloat32 || dtype == Dtype::kFloat64;
        long long ll = float_type ? 0 : std::strtoll(s, &end, 10);
        if (!float_type && *end == '\0' && errno == 0) {
          v = {false, ll, 0, false};
        } else {
          errno = 0;
          double f = std::strtod(s, &end);
          if (*end != '\0' || end == s)
            throw Error(ErrorKind::kUsage, fmt::format("{}: line {}: '{}' is not a number", where,
                                                       lineno, tok));
          v = {true, 0, f, false};
          if (errno == ERANGE && std::isinf(f))
            throw Error(ErrorKind::kUsage, fmt::format("{}: line {}: '{}' is out of range", where,
                                                       lineno, tok));
        }
      }
      out.resize(out.size() + item);
      if (Store(v, dtype, out.data() + out.size() - item, false) != Stored::kOk)
        throw Error(ErrorKind::kUsage, fmt::format("{}: line {}: '{}' does not fit dtype '{}' exactly",
                                                   where, lineno, tok, DtypeName(dtype)));
      ++n;
    }
    if (after_comma) throw empty_field();  // "1,2,"
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
    default: fmt::format_to(std::back_inserter(buf), "{}", Load(t, p, Missing::kNone).i); return;
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
