#include "rtable.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "error.h"
#include "rconvert.h"
#include "rlist.h"
#include "table.h"
#include "views.h"

namespace pyrmap::r {

namespace {

[[noreturn]] void Usage(const std::string& msg) { throw Error(ErrorKind::kUsage, msg); }

constexpr uint64_t kChunk = uint64_t{1} << 16;
constexpr int64_t kNaT = INT64_MIN;
constexpr uint64_t kNaRealBits = 0x7FF00000000007A2ull;

const std::string& ClassOf(SEXP x, std::string* buf) {
  SEXP cls = Rf_getAttrib(x, R_ClassSymbol);
  *buf = cls == R_NilValue ? std::string(Rf_type2char(TYPEOF(x))) : std::string(CHAR(STRING_ELT(cls, 0)));
  return *buf;
}

// The row.names attribute as stored (R's getAttrib expands the compact
// form c(NA, -n) of automatic row names; this does not).
SEXP RawRowNames(SEXP df) {
  for (SEXP a = ATTRIB(df); a != R_NilValue; a = CDR(a))
    if (TAG(a) == R_RowNamesSymbol) return CAR(a);
  return R_NilValue;
}

bool IsAutomaticRowNames(SEXP rn) {
  return TYPEOF(rn) == INTSXP && XLENGTH(rn) == 2 && INTEGER(rn)[0] == NA_INTEGER;
}

uint64_t FrameRows(SEXP df) {
  SEXP rn = RawRowNames(df);
  if (rn == R_NilValue) return XLENGTH(df) ? static_cast<uint64_t>(Rf_xlength(VECTOR_ELT(df, 0))) : 0;
  if (IsAutomaticRowNames(rn)) return static_cast<uint64_t>(std::abs(INTEGER(rn)[1]));
  return static_cast<uint64_t>(XLENGTH(rn));
}

// Writes n elements produced by `make(i, out)` (chunk by chunk) as T.
template <typename T, typename Make>
void ChunkedFill(Segment& seg, uint64_t offset, uint64_t n, void (*check)(void*), void* arg, Make make) {
  std::vector<T> buf(std::min(n, kChunk));
  for (uint64_t i = 0; i < n; i += kChunk) {
    if (check) check(arg);
    const uint64_t k = std::min(kChunk, n - i);
    for (uint64_t j = 0; j < k; ++j) buf[j] = make(i + j);
    seg.Write(offset + i * sizeof(T), buf.data(), k * sizeof(T));
  }
}

BufferFill RawFill(const void* data, uint64_t nbytes) {
  return [data, nbytes](Segment& seg, uint64_t off, void (*check)(void*), void* arg) {
    seg.Write(off, data, nbytes, check, arg);
  };
}

// Gathered strings: UTF-8 pointers (R's memory, or R_alloc'd translations
// that live until the .Call returns), lengths and which are NA.
struct Strings {
  std::vector<const char*> ptr;
  std::vector<uint32_t> len;
  std::vector<uint8_t> na;
  uint64_t bytes = 0;
  bool any_na = false;
};

std::shared_ptr<Strings> Gather(SEXP x, const std::string& what) {
  auto s = std::make_shared<Strings>();
  const R_xlen_t n = XLENGTH(x);
  s->ptr.resize(n);
  s->len.resize(n);
  s->na.resize(n);
  for (R_xlen_t i = 0; i < n; ++i) {
    SEXP c = STRING_ELT(x, i);
    if (c != NA_STRING && Rf_getCharCE(c) == CE_BYTES)
      Usage(fmt::format("{}: element {} is a string of encoding \"bytes\", which has no UTF-8 form "
                        "(give it in UTF-8: enc2utf8())",
                        what, i + 1));
  }
  Strings& S = *s;
  RCall([&] {
    for (R_xlen_t i = 0; i < n; ++i) {
      SEXP c = STRING_ELT(x, i);
      if (c == NA_STRING) {
        S.ptr[i] = "";
        S.len[i] = 0;
        S.na[i] = 1;
        S.any_na = true;
        continue;
      }
      const char* p = Rf_translateCharUTF8(c);
      S.ptr[i] = p;
      S.len[i] = static_cast<uint32_t>(std::strlen(p));
      S.bytes += S.len[i];
    }
  });
  return s;
}

class Builder {
 public:
  Table t;
  std::vector<BufferFill> fills;
  std::vector<SEXP> objects;  // per entry: the R vector it holds, or R_NilValue

  uint32_t Buffer(Dtype dtype, std::vector<uint64_t> shape, BufferFill fill, Order order = Order::kC) {
    fills.push_back(std::move(fill));
    return AddBuffer(t, dtype, std::move(shape), order);
  }

  uint32_t Entry(EntryKind kind, uint32_t parent, EntryRole role, const std::string& name, uint64_t length) {
    TableEntry e;
    e.kind = kind;
    e.parent = parent;
    e.role = role;
    e.name = name;
    e.length = length;
    objects.push_back(R_NilValue);
    return AddEntry(t, std::move(e));
  }

  // A bool mask of `n` elements: is_na(i); shaped as the entry's data (an
  // R matrix's mask is a column-major matrix too).
  template <typename IsNa>
  void Mask(uint32_t entry, uint64_t n, IsNa is_na) {
    TableEntry& e = t.entries[entry];
    const bool array = e.kind == EntryKind::kArray;
    std::vector<uint64_t> shape = array ? t.buffers[e.buffer].shape : std::vector<uint64_t>{n};
    const Order order = array ? t.buffers[e.buffer].order : Order::kC;
    e.flags |= kEntryMasked;
    const uint32_t b = Buffer(Dtype::kBool, shape, [n, is_na](Segment& seg, uint64_t off, void (*check)(void*), void* arg) {
      ChunkedFill<uint8_t>(seg, off, n, check, arg, [&](uint64_t i) -> uint8_t { return is_na(i) ? 1 : 0; });
    }, order);
    t.entries[entry].mask = b;
  }

  void StringEntry(SEXP x, uint32_t parent, EntryRole role, const std::string& name, const std::string& what) {
    auto s = Gather(x, what);
    const uint64_t n = s->ptr.size();
    const uint32_t e = Entry(EntryKind::kString, parent, role, name, n);
    t.entries[e].buffer = Buffer(Dtype::kInt64, {n + 1}, [s, n](Segment& seg, uint64_t off, void (*check)(void*), void* arg) {
      int64_t pos = 0;
      ChunkedFill<int64_t>(seg, off, n + 1, check, arg, [&](uint64_t i) -> int64_t {
        if (i == 0) return 0;
        pos += s->len[i - 1];
        return pos;
      });
    });
    Buffer(Dtype::kUInt8, {s->bytes}, [s, n](Segment& seg, uint64_t off, void (*check)(void*), void* arg) {
      std::vector<char> buf;
      buf.reserve(1 << 20);
      uint64_t at = off;
      for (uint64_t i = 0; i < n; ++i) {
        buf.insert(buf.end(), s->ptr[i], s->ptr[i] + s->len[i]);
        if (buf.size() >= (1 << 20) || i + 1 == n) {
          if (check) check(arg);
          seg.Write(at, buf.data(), buf.size());
          at += buf.size();
          buf.clear();
        }
      }
    });
    if (s->any_na) Mask(e, n, [s](uint64_t i) { return s->na[i] != 0; });
  }

  // One vector, matrix or array (anything but a list or data.frame).
  void Vector(SEXP x, uint32_t parent, EntryRole role, const std::string& name, const std::string& what,
              bool column) {
    std::string cbuf;
    const uint64_t n = static_cast<uint64_t>(XLENGTH(x));
    SEXP dim = Rf_getAttrib(x, R_DimSymbol);
    if (column && dim != R_NilValue)
      Usage(fmt::format("{} is a matrix: a data.frame column must be a vector", what));
    if (Rf_isFactor(x)) return Factor(x, parent, role, name, what);
    if (Rf_inherits(x, "Date")) return Date(x, parent, role, name, what);
    if (Rf_inherits(x, "POSIXct")) return Posixct(x, parent, role, name, what);
    SEXP cls = Rf_getAttrib(x, R_ClassSymbol);
    for (R_xlen_t i = 0; cls != R_NilValue && i < XLENGTH(cls); ++i) {
      const std::string c = CHAR(STRING_ELT(cls, i));
      if (c != "matrix" && c != "array" && c != "integer64" && c != "AsIs")
        Usage(fmt::format("{} is of class '{}', which pyrmap cannot pass to Python (supported: "
                          "numeric, integer, logical, raw, character, factor, Date, POSIXct, "
                          "bit64::integer64; unclass() passes the bare values)",
                          what, c));
    }
    if (TYPEOF(x) == STRSXP) {
      if (dim != R_NilValue && XLENGTH(dim) > 1)
        Usage(fmt::format("{} is a character matrix: only character vectors can be passed", what));
      return StringEntry(x, parent, role, name, what);
    }
    std::vector<uint64_t> shape = ShapeOf(x);
    const Order order = Order::kF;
    const uint32_t e = Entry(EntryKind::kArray, parent, role, name, n);
    objects[e] = x;
    switch (TYPEOF(x)) {
      case REALSXP: {
        const double* p = REAL(x);
        if (Rf_inherits(x, "integer64")) {
          t.entries[e].flags |= kEntryInteger64;
          t.entries[e].buffer = Buffer(Dtype::kInt64, shape, RawFill(p, n * 8), order);
          const int64_t* q = reinterpret_cast<const int64_t*>(p);
          bool na = false;
          for (uint64_t i = 0; i < n && !na; ++i) na = q[i] == INT64_MIN;
          if (na) Mask(e, n, [q](uint64_t i) { return q[i] == INT64_MIN; });
        } else {
          t.entries[e].buffer = Buffer(Dtype::kFloat64, shape, RawFill(p, n * 8), order);
        }
        return;
      }
      case INTSXP: {
        const int* p = INTEGER(x);
        t.entries[e].buffer = Buffer(Dtype::kInt32, shape, RawFill(p, n * 4), order);
        bool na = false;
        for (uint64_t i = 0; i < n && !na; ++i) na = p[i] == NA_INTEGER;
        if (na) Mask(e, n, [p](uint64_t i) { return p[i] == NA_INTEGER; });
        return;
      }
      case LGLSXP: {
        const int* p = LOGICAL(x);
        t.entries[e].buffer = Buffer(Dtype::kBool, shape, [p, n](Segment& seg, uint64_t off, void (*check)(void*), void* arg) {
          ChunkedFill<uint8_t>(seg, off, n, check, arg, [p](uint64_t i) -> uint8_t { return p[i] != 0 && p[i] != NA_LOGICAL; });
        }, order);
        bool na = false;
        for (uint64_t i = 0; i < n && !na; ++i) na = p[i] == NA_LOGICAL;
        if (na) Mask(e, n, [p](uint64_t i) { return p[i] == NA_LOGICAL; });
        return;
      }
      case RAWSXP:
        t.entries[e].buffer = Buffer(Dtype::kUInt8, shape, RawFill(RAW(x), n), order);
        return;
      default:
        Usage(fmt::format("{} is of type '{}', which pyrmap cannot pass to Python", what,
                          Rf_type2char(TYPEOF(x))));
    }
  }

  void Factor(SEXP x, uint32_t parent, EntryRole role, const std::string& name, const std::string& what) {
    SEXP levels = Rf_getAttrib(x, R_LevelsSymbol);
    if (TYPEOF(levels) != STRSXP) Usage(fmt::format("{} is a factor without character levels", what));
    const uint64_t n = static_cast<uint64_t>(XLENGTH(x)), nl = static_cast<uint64_t>(XLENGTH(levels));
    for (uint64_t i = 0; i < nl; ++i)
      if (STRING_ELT(levels, i) == NA_STRING)
        Usage(fmt::format("{} is a factor with NA among its levels, which pandas cannot hold (use NA "
                          "values instead of an NA level)",
                          what));
    const int* p = INTEGER(x);
    for (uint64_t i = 0; i < n; ++i)
      if (p[i] != NA_INTEGER && (p[i] < 1 || static_cast<uint64_t>(p[i]) > nl))
        Usage(fmt::format("{}[{}] = {} is not a code of one of its {} levels", what, i + 1, p[i], nl));
    const uint32_t width = nl < 128 ? 1 : nl < 32768 ? 2 : 4;
    const uint32_t e = Entry(EntryKind::kCategory, parent, role, name, n);
    objects[e] = x;
    t.entries[e].unit = width;
    if (Rf_inherits(x, "ordered")) t.entries[e].flags |= kEntryOrdered;
    t.entries[e].buffer = Buffer(Dtype::kUInt8, {n * width}, [p, n, width](Segment& seg, uint64_t off, void (*check)(void*), void* arg) {
      auto code = [p](uint64_t i) -> int32_t { return p[i] == NA_INTEGER ? -1 : p[i] - 1; };
      if (width == 1) ChunkedFill<int8_t>(seg, off, n, check, arg, [&](uint64_t i) { return static_cast<int8_t>(code(i)); });
      else if (width == 2) ChunkedFill<int16_t>(seg, off, n, check, arg, [&](uint64_t i) { return static_cast<int16_t>(code(i)); });
      else ChunkedFill<int32_t>(seg, off, n, check, arg, code);
    });
    StringEntry(levels, e, EntryRole::kLevels, "", "the levels of " + what);
  }

  void Date(SEXP x, uint32_t parent, EntryRole role, const std::string& name, const std::string& what) {
    const uint64_t n = static_cast<uint64_t>(XLENGTH(x));
    const uint32_t e = Entry(EntryKind::kDatetime, parent, role, name, n);
    objects[e] = x;
    t.entries[e].unit = static_cast<uint32_t>(TimeUnit::kDay);
    if (TYPEOF(x) == INTSXP) {
      const int* p = INTEGER(x);
      t.entries[e].buffer = Buffer(Dtype::kInt64, {n}, [p, n](Segment& seg, uint64_t off, void (*check)(void*), void* arg) {
        ChunkedFill<int64_t>(seg, off, n, check, arg, [p](uint64_t i) -> int64_t { return p[i] == NA_INTEGER ? kNaT : p[i]; });
      });
      return;
    }
    if (TYPEOF(x) != REALSXP) Usage(fmt::format("{} is a Date of type '{}'", what, Rf_type2char(TYPEOF(x))));
    const double* p = REAL(x);
    for (uint64_t i = 0; i < n; ++i) {
      const double v = p[i];
      if (std::isnan(v)) continue;
      if (!std::isfinite(v) || v != std::floor(v) || std::fabs(v) > 9007199254740992.0)
        Usage(fmt::format("{}[{}] = {} is not a whole day, which datetime64[D] cannot hold", what, i + 1, v));
    }
    t.entries[e].buffer = Buffer(Dtype::kInt64, {n}, [p, n](Segment& seg, uint64_t off, void (*check)(void*), void* arg) {
      ChunkedFill<int64_t>(seg, off, n, check, arg, [p](uint64_t i) -> int64_t {
        return std::isnan(p[i]) ? kNaT : static_cast<int64_t>(p[i]);
      });
    });
  }

  void Posixct(SEXP x, uint32_t parent, EntryRole role, const std::string& name, const std::string& what) {
    const uint64_t n = static_cast<uint64_t>(XLENGTH(x));
    const uint32_t e = Entry(EntryKind::kDatetime, parent, role, name, n);
    objects[e] = x;
    t.entries[e].unit = static_cast<uint32_t>(TimeUnit::kNano);
    SEXP tz = Rf_getAttrib(x, Rf_install("tzone"));
    if (tz == R_NilValue) {
      t.entries[e].flags |= kEntryNoTzone;
    } else {
      if (TYPEOF(tz) != STRSXP || XLENGTH(tz) != 1 || STRING_ELT(tz, 0) == NA_STRING)
        Usage(fmt::format("{} is a POSIXct whose tzone attribute is not one string", what));
      t.entries[e].tz = Utf8(STRING_ELT(tz, 0), "the tzone of " + what);
      if (t.entries[e].tz.empty()) t.entries[e].flags |= kEntryLocalTime;
    }
    if (TYPEOF(x) == INTSXP) {
      const int* p = INTEGER(x);
      t.entries[e].buffer = Buffer(Dtype::kInt64, {n}, [p, n](Segment& seg, uint64_t off, void (*check)(void*), void* arg) {
        ChunkedFill<int64_t>(seg, off, n, check, arg, [p](uint64_t i) -> int64_t {
          return p[i] == NA_INTEGER ? kNaT : int64_t{p[i]} * 1000000000;
        });
      });
      return;
    }
    if (TYPEOF(x) != REALSXP) Usage(fmt::format("{} is a POSIXct of type '{}'", what, Rf_type2char(TYPEOF(x))));
    const double* p = REAL(x);
    // Nanoseconds, exactly: the count must read back as the same double.
    for (uint64_t i = 0; i < n; ++i) {
      const double v = p[i];
      if (std::isnan(v)) continue;
      if (!std::isfinite(v) || std::fabs(v) >= 9.2e9)
        Usage(fmt::format("{}[{}] = {} seconds is beyond what datetime64[ns] holds (years 1677 to 2262)",
                          what, i + 1, v));
      const int64_t ns = std::llround(static_cast<long double>(v) * 1e9L);
      if (static_cast<double>(static_cast<long double>(ns) / 1e9L) != v)
        Usage(fmt::format("{}[{}] = {:.17g} seconds has a fraction of a nanosecond, which datetime64[ns] "
                          "cannot hold",
                          what, i + 1, v));
    }
    t.entries[e].buffer = Buffer(Dtype::kInt64, {n}, [p, n](Segment& seg, uint64_t off, void (*check)(void*), void* arg) {
      ChunkedFill<int64_t>(seg, off, n, check, arg, [p](uint64_t i) -> int64_t {
        return std::isnan(p[i]) ? kNaT : std::llround(static_cast<long double>(p[i]) * 1e9L);
      });
    });
  }

  void Frame(SEXP df, uint32_t parent, EntryRole role, const std::string& name, const std::string& what) {
    const uint64_t rows = FrameRows(df);
    const uint32_t e = Entry(EntryKind::kFrame, parent, role, name, rows);
    SEXP names = Rf_getAttrib(df, R_NamesSymbol);
    for (R_xlen_t j = 0; j < XLENGTH(df); ++j) {
      SEXP col = VECTOR_ELT(df, j);
      const std::string cname = names == R_NilValue || STRING_ELT(names, j) == NA_STRING
                                    ? ""
                                    : Utf8(STRING_ELT(names, j), fmt::format("the name of column {}", j + 1));
      const std::string cwhat = fmt::format("column '{}' of {}", cname, what);
      if (TYPEOF(col) == VECSXP) Usage(fmt::format("{} is a list column, which pyrmap cannot pass", cwhat));
      if (static_cast<uint64_t>(XLENGTH(col)) != rows)
        Usage(fmt::format("{} has {} elements for {} rows", cwhat, XLENGTH(col), rows));
      Vector(col, e, EntryRole::kElement, cname, cwhat, true);
    }
    SEXP rn = RawRowNames(df);
    if (rn != R_NilValue && !IsAutomaticRowNames(rn)) {
      if (TYPEOF(rn) == STRSXP) {
        StringEntry(rn, e, EntryRole::kNames, "", "the row names of " + what);
      } else if (TYPEOF(rn) == INTSXP) {
        const uint32_t r = Entry(EntryKind::kArray, e, EntryRole::kNames, "", rows);
        t.entries[r].buffer = Buffer(Dtype::kInt32, {rows}, RawFill(INTEGER(rn), rows * 4));
      }
    }
  }

  void Any(SEXP x, uint32_t parent, EntryRole role, const std::string& name, const std::string& what) {
    if (x == R_NilValue) {
      Entry(EntryKind::kNull, parent, role, name, 0);
      return;
    }
    if (Rf_inherits(x, "data.frame")) return Frame(x, parent, role, name, what);
    if (TYPEOF(x) == VECSXP) {
      SEXP cls = Rf_getAttrib(x, R_ClassSymbol);
      if (cls != R_NilValue)
        Usage(fmt::format("{} is a list of class '{}', which pyrmap cannot pass to Python (plain "
                          "lists and data.frames can)",
                          what, CHAR(STRING_ELT(cls, 0))));
      SEXP names = Rf_getAttrib(x, R_NamesSymbol);
      const uint32_t e = Entry(EntryKind::kList, parent, role, name, static_cast<uint64_t>(XLENGTH(x)));
      if (names != R_NilValue) t.entries[e].flags |= kEntryNamed;
      for (R_xlen_t i = 0; i < XLENGTH(x); ++i) {
        std::string el;
        std::string ewhat;
        if (names != R_NilValue) {
          SEXP c = STRING_ELT(names, i);
          if (c == NA_STRING || CHAR(c)[0] == '\0')
            Usage(fmt::format("element {} of {} has no name: name every element of a list, or none",
                              i + 1, what));
          el = Utf8(c, fmt::format("the name of element {} of {}", i + 1, what));
          ewhat = fmt::format("element '{}'", el);
        } else {
          ewhat = fmt::format("element {}", i + 1);
        }
        if (parent != kNoIndex || !t.entries.empty()) {
          if (parent != kNoIndex) ewhat += " of " + what;
        }
        Any(VECTOR_ELT(x, i), e, EntryRole::kElement, el, ewhat);
      }
      return;
    }
    Vector(x, parent, role, name, what, false);
  }
};

}  // namespace

bool NeedsTable(SEXP x, bool dtype_given) {
  if (TYPEOF(x) == VECSXP || x == R_NilValue) return true;
  if (Rf_isFactor(x) || Rf_inherits(x, "Date") || Rf_inherits(x, "POSIXct") || TYPEOF(x) == STRSXP)
    return true;
  // Functions, environments, ...: not data; ClassifyInput names them.
  // (XLENGTH of them would be an R error.)
  if (dtype_given || !Rf_isVectorAtomic(x)) return false;
  const R_xlen_t n = XLENGTH(x);
  if (TYPEOF(x) == INTSXP && Rf_getAttrib(x, R_ClassSymbol) == R_NilValue) {
    const int* p = INTEGER(x);
    for (R_xlen_t i = 0; i < n; ++i)
      if (p[i] == NA_INTEGER) return true;
  }
  if (TYPEOF(x) == LGLSXP) {
    const int* p = LOGICAL(x);
    for (R_xlen_t i = 0; i < n; ++i)
      if (p[i] == NA_LOGICAL) return true;
  }
  if (TYPEOF(x) == REALSXP && Rf_inherits(x, "integer64")) {
    const int64_t* p = reinterpret_cast<const int64_t*>(REAL(x));
    for (R_xlen_t i = 0; i < n; ++i)
      if (p[i] == INT64_MIN) return true;
  }
  return false;
}

Input TableInputOf(SEXP x, TableOrigins* origins) {
  Builder b;
  b.Any(x, kNoIndex, EntryRole::kElement, "", "the data");
  LayoutTable(b.t);
  if (origins) {
    origins->table = b.t;
    origins->objects = std::move(b.objects);
  }
  return TableInput(std::move(b.t), std::move(b.fills));
}

// ---- table -> R ---------------------------------------------------------------

namespace {

// Keeps an R object alive while C++ frames may throw (R_PreserveObject is
// exception-safe where PROTECT is not).
class Keep {
 public:
  explicit Keep(SEXP x) : x_(x) { RCall([&] { R_PreserveObject(x_); }); }
  ~Keep() { R_ReleaseObject(x_); }
  Keep(const Keep&) = delete;
  Keep& operator=(const Keep&) = delete;
  SEXP get() const { return x_; }

 private:
  SEXP x_;
};

SEXP AllocR(SEXPTYPE type, R_xlen_t n) {
  SEXP ans = R_NilValue;
  RCall([&] { ans = Rf_allocVector(type, n); });
  return ans;
}

void SetAttr(SEXP x, SEXP name, SEXP value) {
  RCall([&] {
    PROTECT(value);
    Rf_setAttrib(x, name, value);
    UNPROTECT(1);
  });
}

SEXP StrScalar(const std::string& s) {
  SEXP ans = R_NilValue;
  RCall([&] { ans = Rf_mkCharLenCE(s.data(), static_cast<int>(s.size()), CE_UTF8); ans = Rf_ScalarString(ans); });
  return ans;
}

SEXP ClassVec(std::initializer_list<const char*> names) {
  SEXP ans = R_NilValue;
  RCall([&] {
    ans = PROTECT(Rf_allocVector(STRSXP, static_cast<R_xlen_t>(names.size())));
    R_xlen_t i = 0;
    for (const char* n : names) SET_STRING_ELT(ans, i++, Rf_mkChar(n));
    UNPROTECT(1);
  });
  return ans;
}

// Whether [p, p + n) is well-formed UTF-8 without NUL (R's strings cannot
// hold NUL).
bool IsUtf8(const char* s, size_t n) {
  const auto* p = reinterpret_cast<const unsigned char*>(s);
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      if (c == 0) return false;
      ++i;
      continue;
    }
    const size_t len = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > n) return false;
    uint32_t cp = c & (0xff >> (len + 1));
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

class ToR {
 public:
  ToR(const Result& r, bool bit64, const TableOrigins* origins)
      : r_(r), t_(*r.table), bit64_(bit64), origins_(origins) {}

  SEXP Value(uint32_t i) {
    const TableEntry& e = t_.entries[i];
    if (SEXP same = Unchanged(i)) return same;
    switch (e.kind) {
      case EntryKind::kNull: return R_NilValue;
      case EntryKind::kList: return List(i);
      case EntryKind::kFrame: return Frame(i);
      case EntryKind::kArray: return Array(i);
      case EntryKind::kString: return Strings(i);
      case EntryKind::kCategory: return Category(i);
      case EntryKind::kDatetime: return Datetime(i);
    }
    throw Error(ErrorKind::kProtocol, "unknown table entry");
  }

 private:
  [[noreturn]] void Bad(uint32_t i, const std::string& why) const {
    throw Error(ErrorKind::kProtocol, fmt::format("invalid table in the result of script '{}': {} {}",
                                                  r_.script.Display(), EntryPath(t_, i), why));
  }
  [[noreturn]] void Cannot(uint32_t i, const std::string& why) const {
    throw Error(ErrorKind::kUsage, fmt::format("the result of script '{}': {} {}", r_.script.Display(),
                                               EntryPath(t_, i), why));
  }

  const uint8_t* Data(uint32_t b) const { return r_.buffer(b); }
  bool Transient(uint32_t b) const { return r_.transient && t_.locations[b] == kInBlock; }
  const std::shared_ptr<Mapping>& MappingOf(uint32_t b) const {
    return t_.locations[b] == kInInput ? r_.input_mapping : r_.mapping;
  }
  const uint8_t* Mask(const TableEntry& e) const {
    return e.mask == kNoIndex ? nullptr : Data(e.mask);
  }

  // A view of buffer b as `type` (a copy when it is transient).
  SEXP ViewOf(SEXPTYPE type, uint32_t b) {
    const ArrayDesc& d = t_.buffers[b];
    if (Transient(b) || d.nbytes == 0) {
      SEXP ans = AllocR(type, static_cast<R_xlen_t>(d.count));
      if (d.nbytes) std::memcpy(DATAPTR(ans), Data(b), d.nbytes);
      return ans;
    }
    ViewSource s;
    s.mapping = MappingOf(b);
    s.data = Data(b);
    s.length = static_cast<R_xlen_t>(d.count);
    return MakeView(type, std::move(s));
  }

  int32_t Child(const TableEntry& e, EntryRole role) const {
    for (uint32_t c : e.children)
      if (t_.entries[c].role == role) return static_cast<int32_t>(c);
    return -1;
  }

  SEXP Names(const std::vector<uint32_t>& elems) {
    SEXP nm = AllocR(STRSXP, static_cast<R_xlen_t>(elems.size()));
    Keep k(nm);
    RCall([&] {
      for (size_t j = 0; j < elems.size(); ++j) {
        const std::string& s = t_.entries[elems[j]].name;
        SET_STRING_ELT(nm, static_cast<R_xlen_t>(j), Rf_mkCharLenCE(s.data(), static_cast<int>(s.size()), CE_UTF8));
      }
    });
    return nm;
  }

  std::vector<uint32_t> Elements(const TableEntry& e) const {
    std::vector<uint32_t> out;
    for (uint32_t c : e.children)
      if (t_.entries[c].role == EntryRole::kElement) out.push_back(c);
    return out;
  }

  SEXP List(uint32_t i) {
    const TableEntry& e = t_.entries[i];
    const std::vector<uint32_t> elems = Elements(e);
    SEXP ans = AllocR(VECSXP, static_cast<R_xlen_t>(elems.size()));
    Keep k(ans);
    for (size_t j = 0; j < elems.size(); ++j) SET_VECTOR_ELT(ans, static_cast<R_xlen_t>(j), Value(elems[j]));
    if (e.flags & kEntryNamed) SetAttr(ans, R_NamesSymbol, Names(elems));
    return ans;
  }

  SEXP Frame(uint32_t i) {
    const TableEntry& e = t_.entries[i];
    if (e.length > static_cast<uint64_t>(INT_MAX)) Cannot(i, fmt::format("has {} rows, beyond R's data.frame", e.length));
    const std::vector<uint32_t> elems = Elements(e);
    SEXP ans = AllocR(VECSXP, static_cast<R_xlen_t>(elems.size()));
    Keep k(ans);
    for (size_t j = 0; j < elems.size(); ++j) SET_VECTOR_ELT(ans, static_cast<R_xlen_t>(j), Value(elems[j]));
    SetAttr(ans, R_NamesSymbol, Names(elems));
    const int32_t rn = Child(e, EntryRole::kNames);
    SEXP rows;
    if (rn < 0) {
      rows = AllocR(INTSXP, 2);
      INTEGER(rows)[0] = NA_INTEGER;
      INTEGER(rows)[1] = -static_cast<int>(e.length);
    } else {
      const TableEntry& re = t_.entries[static_cast<uint32_t>(rn)];
      if (re.kind == EntryKind::kString) {
        if (re.mask != kNoIndex) Cannot(static_cast<uint32_t>(rn), "hold missing values; R's row names cannot");
        rows = Strings(static_cast<uint32_t>(rn));
      } else {
        const ArrayDesc& d = t_.buffers[re.buffer];
        if (d.dtype != Dtype::kInt32) Bad(static_cast<uint32_t>(rn), fmt::format("are {}, not int32", DtypeName(d.dtype)));
        rows = AllocR(INTSXP, static_cast<R_xlen_t>(d.count));
        if (d.nbytes) std::memcpy(INTEGER(rows), Data(re.buffer), d.nbytes);
      }
    }
    SetAttr(ans, R_RowNamesSymbol, rows);
    SetAttr(ans, R_ClassSymbol, ClassVec({"data.frame"}));
    return ans;
  }

  // The attributes an entry's R vector gets (names aside), each value kept
  // alive: what the conversions below set, and what Unchanged() compares.
  struct Attributes {
    std::vector<std::pair<SEXP, SEXP>> list;  // (symbol, value)
    std::vector<std::unique_ptr<Keep>> kept;
    void Add(SEXP sym, SEXP value) {
      kept.push_back(std::make_unique<Keep>(value));
      list.emplace_back(sym, value);
    }
    void SetOn(SEXP x) const {
      for (const auto& [sym, value] : list) SetAttr(x, sym, value);
    }
  };

  // dim, for buffer d of entry i when it has two dimensions or more.
  void AddDims(Attributes& a, const ArrayDesc& d, uint32_t i) {
    if (d.shape.size() < 2) return;
    SEXP dim = AllocR(INTSXP, static_cast<R_xlen_t>(d.shape.size()));
    Keep k(dim);
    for (size_t j = 0; j < d.shape.size(); ++j) {
      if (d.shape[j] > static_cast<uint64_t>(INT_MAX)) Cannot(i, "has a dimension beyond R's limit");
      INTEGER(dim)[j] = static_cast<int>(d.shape[j]);
    }
    a.Add(R_DimSymbol, dim);
  }

  // A category's levels and class.
  static Attributes FactorAttributes(const TableEntry& e, SEXP levels) {
    Attributes a;
    a.Add(R_LevelsSymbol, levels);
    a.Add(R_ClassSymbol, (e.flags & kEntryOrdered) ? ClassVec({"ordered", "factor"}) : ClassVec({"factor"}));
    return a;
  }

  // A date-time's class and time zone: a naive date-time from Python is read
  // as UTC; R's own kinds as they came.
  static Attributes DatetimeAttributes(const TableEntry& e) {
    Attributes a;
    if (e.unit == static_cast<uint32_t>(TimeUnit::kDay)) {
      a.Add(R_ClassSymbol, ClassVec({"Date"}));
      return a;
    }
    a.Add(R_ClassSymbol, ClassVec({"POSIXct", "POSIXt"}));
    if (!(e.flags & kEntryNoTzone))
      a.Add(Rf_install("tzone"), StrScalar(e.tz.empty() && !(e.flags & kEntryLocalTime) ? std::string("UTC") : e.tz));
    return a;
  }

  void SetDims(SEXP ans, const ArrayDesc& d, uint32_t i) {
    if (d.shape.size() < 2) return;
    if (d.order != Order::kF) Bad(i, fmt::format("is {}, not column-major", d.Describe()));
    Attributes a;
    AddDims(a, d, i);
    a.SetOn(ans);
  }

  SEXP Array(uint32_t i) {
    const TableEntry& e = t_.entries[i];
    const ArrayDesc& d = t_.buffers[e.buffer];
    const uint8_t* m = Mask(e);
    const uint64_t n = d.count;
    const uint8_t* p = Data(e.buffer);
    SEXP ans = R_NilValue;
    switch (d.dtype) {
      case Dtype::kFloat64: {
        bool ok = true;  // masked elements hold NA_real_ (the writer's duty): a view will do
        for (uint64_t j = 0; m && j < n && ok; ++j) {
          uint64_t bits;
          std::memcpy(&bits, p + 8 * j, 8);
          ok = !m[j] || bits == kNaRealBits;
        }
        if (ok) {
          ans = ViewOf(REALSXP, e.buffer);
        } else {
          ans = AllocR(REALSXP, static_cast<R_xlen_t>(n));
          std::memcpy(REAL(ans), p, n * 8);
          for (uint64_t j = 0; j < n; ++j)
            if (m[j]) REAL(ans)[j] = NA_REAL;
        }
        break;
      }
      case Dtype::kFloat32: {
        ans = AllocR(REALSXP, static_cast<R_xlen_t>(n));
        for (uint64_t j = 0; j < n; ++j) {
          float f;
          std::memcpy(&f, p + 4 * j, 4);
          REAL(ans)[j] = m && m[j] ? NA_REAL : static_cast<double>(f);
        }
        break;
      }
      case Dtype::kInt32: {
        bool value_min = false, unmarked = false;
        for (uint64_t j = 0; j < n; ++j) {
          int32_t v;
          std::memcpy(&v, p + 4 * j, 4);
          const bool na = m && m[j];
          if (v == INT32_MIN && !na) value_min = true;
          if (na && v != INT32_MIN) unmarked = true;
        }
        if (!value_min && !unmarked) {
          ans = ViewOf(INTSXP, e.buffer);
        } else if (!value_min) {
          ans = AllocR(INTSXP, static_cast<R_xlen_t>(n));
          std::memcpy(INTEGER(ans), p, n * 4);
          for (uint64_t j = 0; j < n; ++j)
            if (m[j]) INTEGER(ans)[j] = NA_INTEGER;
        } else {  // -2^31 is a value here, which R's integer cannot hold: double, exact
          ans = AllocR(REALSXP, static_cast<R_xlen_t>(n));
          for (uint64_t j = 0; j < n; ++j) {
            int32_t v;
            std::memcpy(&v, p + 4 * j, 4);
            REAL(ans)[j] = m && m[j] ? NA_REAL : v;
          }
        }
        break;
      }
      case Dtype::kInt64: ans = Int64(i, e, d, p, m); break;
      case Dtype::kUInt8:
        for (uint64_t j = 0; m && j < n; ++j)
          if (m[j]) Cannot(i, fmt::format("is uint8 with a missing value at [{}]; R's raw has no NA", j + 1));
        ans = ViewOf(RAWSXP, e.buffer);
        break;
      case Dtype::kBool:
        ans = AllocR(LGLSXP, static_cast<R_xlen_t>(n));
        for (uint64_t j = 0; j < n; ++j) LOGICAL(ans)[j] = m && m[j] ? NA_LOGICAL : p[j] != 0;
        break;
      case Dtype::kNone: Bad(i, "has no dtype");
    }
    Keep k(ans);
    SetDims(ans, d, i);
    const int32_t nm = Child(e, EntryRole::kNames);
    if (nm >= 0) {
      if (t_.entries[static_cast<uint32_t>(nm)].length != n) Bad(i, "has names of another length");
      SetAttr(ans, R_NamesSymbol, Strings(static_cast<uint32_t>(nm)));
    }
    return ans;
  }

  SEXP Int64(uint32_t i, const TableEntry& e, const ArrayDesc& d, const uint8_t* p, const uint8_t* m) {
    const uint64_t n = d.count;
    // integer64 when it came from one (and bit64 is there), else a double
    // when every value is one exactly.
    bool fits = !(e.flags & kEntryInteger64) || !bit64_;
    uint64_t bad_at = n;
    for (uint64_t j = 0; j < n; ++j) {
      int64_t v;
      std::memcpy(&v, p + 8 * j, 8);
      const bool na = m && m[j];
      if (!na && v == INT64_MIN) {
        if (!fits || !(v >= -(int64_t{1} << 53)))
          Cannot(i, fmt::format("[{}] = {} (int64) cannot be returned exactly: it is integer64's NA", j + 1, v));
      }
      if (na && v != INT64_MIN) Bad(i, fmt::format("has a masked element [{}] without R's NA", j + 1));
      if (fits && !na && (v > (int64_t{1} << 53) || v < -(int64_t{1} << 53))) {
        fits = false;
        bad_at = j;
      }
    }
    if (fits) {
      SEXP ans = AllocR(REALSXP, static_cast<R_xlen_t>(n));
      for (uint64_t j = 0; j < n; ++j) {
        int64_t v;
        std::memcpy(&v, p + 8 * j, 8);
        REAL(ans)[j] = m && m[j] ? NA_REAL : static_cast<double>(v);
      }
      return ans;
    }
    if (!bit64_) {
      int64_t v;
      std::memcpy(&v, p + 8 * bad_at, 8);
      Cannot(i, fmt::format("[{}] = {} is an int64 beyond 2^53, which a double cannot hold exactly; "
                            "install the bit64 package to receive integer64",
                            bad_at + 1, v));
    }
    SEXP ans = ViewOf(REALSXP, e.buffer);  // integer64 keeps int64 bits in a double vector
    Keep k(ans);
    SetAttr(ans, R_ClassSymbol, ClassVec({"integer64"}));
    return ans;
  }

  SEXP Strings(uint32_t i) {
    const TableEntry& e = t_.entries[i];
    const ArrayDesc& od = t_.buffers[e.buffer];
    const ArrayDesc& bd = t_.buffers[e.buffer + 1];
    const uint8_t* op = Data(e.buffer);
    const char* bytes = reinterpret_cast<const char*>(Data(e.buffer + 1));
    const uint8_t* m = Mask(e);
    const uint64_t n = e.length;
    (void)od;
    std::vector<int64_t> offs(n + 1);
    if (n + 1) std::memcpy(offs.data(), op, (n + 1) * 8);
    if (offs[0] != 0) Bad(i, "has string offsets that do not start at 0");
    for (uint64_t j = 0; j < n; ++j)
      if (offs[j + 1] < offs[j] || static_cast<uint64_t>(offs[j + 1]) > bd.nbytes ||
          offs[j + 1] - offs[j] > INT_MAX)
        Bad(i, "has string offsets that are not increasing within its bytes");
    for (uint64_t j = 0; j < n; ++j) {
      if (m && m[j]) continue;
      if (!IsUtf8(bytes + offs[j], static_cast<size_t>(offs[j + 1] - offs[j])))
        Bad(i, fmt::format("holds text that is not valid UTF-8 at [{}]", j + 1));
    }
    SEXP ans = AllocR(STRSXP, static_cast<R_xlen_t>(n));
    Keep k(ans);
    RCall([&] {
      for (uint64_t j = 0; j < n; ++j)
        SET_STRING_ELT(ans, static_cast<R_xlen_t>(j),
                       m && m[j] ? NA_STRING
                                 : Rf_mkCharLenCE(bytes + offs[j], static_cast<int>(offs[j + 1] - offs[j]), CE_UTF8));
    });
    return ans;
  }

  SEXP Category(uint32_t i) {
    const TableEntry& e = t_.entries[i];
    const int32_t li = Child(e, EntryRole::kLevels);
    SEXP levels = Strings(static_cast<uint32_t>(li));
    Keep kl(levels);
    const uint64_t nl = static_cast<uint64_t>(XLENGTH(levels));
    const uint8_t* p = Data(e.buffer);
    const uint64_t n = e.length;
    SEXP ans = AllocR(INTSXP, static_cast<R_xlen_t>(n));
    Keep k(ans);
    int* q = INTEGER(ans);
    for (uint64_t j = 0; j < n; ++j) {
      int32_t c;
      if (e.unit == 1) c = reinterpret_cast<const int8_t*>(p)[j];
      else if (e.unit == 2) { int16_t v; std::memcpy(&v, p + 2 * j, 2); c = v; }
      else std::memcpy(&c, p + 4 * j, 4);
      if (c < -1 || (c >= 0 && static_cast<uint64_t>(c) >= nl))
        Bad(i, fmt::format("has code {} at [{}], outside its {} levels", c, j + 1, nl));
      q[j] = c < 0 ? NA_INTEGER : c + 1;
    }
    FactorAttributes(e, levels).SetOn(ans);
    return ans;
  }

  SEXP Datetime(uint32_t i) {
    const TableEntry& e = t_.entries[i];
    const uint8_t* p = Data(e.buffer);
    const uint64_t n = e.length;
    SEXP ans = AllocR(REALSXP, static_cast<R_xlen_t>(n));
    Keep k(ans);
    static const long double kPerSecond[] = {1.0L / 86400, 1, 1e3L, 1e6L, 1e9L};
    const bool days = e.unit == static_cast<uint32_t>(TimeUnit::kDay);
    for (uint64_t j = 0; j < n; ++j) {
      int64_t v;
      std::memcpy(&v, p + 8 * j, 8);
      REAL(ans)[j] = v == kNaT ? NA_REAL
                     : days    ? static_cast<double>(v)
                               : static_cast<double>(static_cast<long double>(v) / kPerSecond[e.unit]);
    }
    DatetimeAttributes(e).SetOn(ans);
    return ans;
  }

  // Whether x's attributes are exactly `want`, compared as identical() does.
  static bool AttributesAre(SEXP x, const Attributes& want) {
    size_t n = 0;
    for (SEXP a = ATTRIB(x); a != R_NilValue; a = CDR(a)) ++n;
    if (n != want.list.size()) return false;
    for (const auto& [sym, value] : want.list) {
      SEXP have = Rf_getAttrib(x, sym);
      if (have == R_NilValue || !R_compute_identical(have, value, 16)) return false;
    }
    return true;
  }

  // The R vector of the call's input that result entry i is, unchanged, or
  // nullptr. It is when the entry's buffers are the input entry's own (the
  // script saw them read-only, so they hold what R wrote) and it says the
  // same about them as the input entry did (kind, dtype and shape, flags,
  // unit, time zone, levels), and when R would give it the attributes the
  // vector has. R then gets its own vector back: no view, no copy, and
  // nothing keeps the input's block.
  SEXP Unchanged(uint32_t i) {
    const TableEntry& e = t_.entries[i];
    if (!origins_ || e.buffer == kNoIndex || t_.locations[e.buffer] != kInInput) return nullptr;
    if (e.kind != EntryKind::kArray && e.kind != EntryKind::kCategory && e.kind != EntryKind::kDatetime)
      return nullptr;
    const Table& in = origins_->table;
    if (by_offset_.empty()) {
      for (uint32_t j = 0; j < in.entries.size(); ++j)
        if (origins_->objects[j] != R_NilValue && in.entries[j].buffer != kNoIndex)
          by_offset_.emplace(in.buffers[in.entries[j].buffer].offset, j);
    }
    const ArrayDesc& d = t_.buffers[e.buffer];
    const auto it = by_offset_.find(d.offset);
    if (it == by_offset_.end()) return nullptr;
    const TableEntry& o = in.entries[it->second];
    const ArrayDesc& od = in.buffers[o.buffer];
    SEXP x = origins_->objects[it->second];
    if (o.kind != e.kind || o.flags != e.flags || o.unit != e.unit || o.tz != e.tz || o.length != e.length ||
        d.dtype != od.dtype || d.shape != od.shape || d.nbytes != od.nbytes ||
        (d.shape.size() > 1 && d.order != od.order))
      return nullptr;
    if ((e.mask == kNoIndex) != (o.mask == kNoIndex)) return nullptr;
    if (e.mask != kNoIndex &&
        (t_.locations[e.mask] != kInInput || t_.buffers[e.mask].offset != in.buffers[o.mask].offset))
      return nullptr;
    if (Child(e, EntryRole::kNames) >= 0) return nullptr;
    // The attributes R would give the entry.
    Attributes want;
    switch (e.kind) {
      case EntryKind::kArray:
        if (d.dtype == Dtype::kInt64) {
          if (!bit64_) return nullptr;  // it would come back as doubles
          want.Add(R_ClassSymbol, ClassVec({"integer64"}));
        }
        AddDims(want, d, i);
        break;
      case EntryKind::kCategory: {
        const int32_t li = Child(e, EntryRole::kLevels);
        if (li < 0) return nullptr;
        want = FactorAttributes(e, Strings(static_cast<uint32_t>(li)));
        break;
      }
      case EntryKind::kDatetime:
        if (TYPEOF(x) != REALSXP) return nullptr;  // an integer Date comes back as doubles
        want = DatetimeAttributes(e);
        break;
      default:
        return nullptr;
    }
    if (!AttributesAre(x, want)) return nullptr;
    MARK_NOT_MUTABLE(x);  // R's copy-on-modify now covers both places that hold it
    return x;
  }

  const Result& r_;
  const Table& t_;
  bool bit64_;
  const TableOrigins* origins_;
  std::unordered_map<uint64_t, uint32_t> by_offset_;  // input data buffer offset -> input entry
};

}  // namespace

SEXP TableToR(const Result& r, bool bit64_available, const TableOrigins* origins) {
  if (!r.table) throw Error(ErrorKind::kProtocol, "a table result without its table");
  ToR conv(r, bit64_available, origins);
  return conv.Value(0);
}

}  // namespace pyrmap::r
