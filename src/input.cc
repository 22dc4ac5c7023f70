#include "input.h"

#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

#include <fmt/format.h>

#include "error.h"
#include "npy.h"
#include "npz.h"

namespace pyrmap {

namespace {

[[noreturn]] void Usage(const std::string& msg) { throw Error(ErrorKind::kUsage, msg); }

// Elements converted per chunk: bounded memory whatever the input's size,
// and an interrupt check between chunks.
constexpr uint64_t kChunkElements = uint64_t{1} << 20;
// Bytes per sendfile call (each call is one interrupt check).
constexpr uint64_t kSendfileChunk = uint64_t{64} << 20;

std::shared_ptr<const int> OpenFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    ErrorKind kind = err == ENOENT || err == EACCES ? ErrorKind::kNotFound : ErrorKind::kSystem;
    throw Error(kind, fmt::format("input '{}': cannot open ({})", path, ErrnoText(err))).with_errno(err);
  }
  return std::shared_ptr<const int>(new int(fd), [](const int* p) {
    close(*p);
    delete p;
  });
}

void PreadAll(int fd, void* dst, uint64_t n, uint64_t off, const std::string& path) {
  auto* p = static_cast<uint8_t*>(dst);
  while (n > 0) {
    ssize_t r = pread(fd, p, std::min<uint64_t>(n, 1 << 30), static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw SystemError("read input", path, "pread", errno);
    if (r == 0) Usage(fmt::format("input '{}': ends early", path));
    p += r;
    off += static_cast<uint64_t>(r);
    n -= static_cast<uint64_t>(r);
  }
}

std::string ShapeText(const std::vector<uint64_t>& shape) {
  std::string s;
  for (uint64_t d : shape) s += (s.empty() ? "" : ",") + std::to_string(d);
  return s;
}

// The dtype of raw input, which has no header to say it.
Dtype RawDtype(const InputLayout& layout, const std::string& name, bool from_file) {
  if (!layout.dtype)
    Usage(from_file ? fmt::format("{}: not a .npy file; raw binary input needs a dtype", name)
                    : fmt::format("{}: raw binary input needs a dtype", name));
  return *layout.dtype;
}

uint64_t RawCount(uint64_t size, Dtype dtype, const std::string& name) {
  if (size % ItemSize(dtype) != 0)
    Usage(fmt::format("{}: {} bytes is not a whole number of {} elements", name, size, DtypeName(dtype)));
  return size / ItemSize(dtype);
}

void CheckNpy(const NpyHeader& h, uint64_t size, const InputLayout& layout, const std::string& name) {
  if (size - h.payload_offset != h.desc.nbytes)
    Usage(fmt::format("{}: .npy payload holds {} bytes, its header describes {}", name,
                      size - h.payload_offset, h.desc.nbytes));
  if (layout.shape)
    Usage(fmt::format("{}: a shape applies to raw and text input; a .npy file has its own", name));
}

// An archive's arrays have their own dtypes and shapes.
void CheckNpz(const InputLayout& layout, const std::string& name) {
  if (layout.dtype || layout.shape)
    Usage(fmt::format("{}: a dtype or shape applies to one array; an .npz archive's arrays have their own",
                      name));
}

// Whitespace-separated numbers, parsed now into the asked dtype.
Input TextInput(const std::string& text, const InputLayout& layout, const std::string& name) {
  std::istringstream in(text);
  uint64_t count = 0;
  const Dtype dtype = layout.dtype.value_or(Dtype::kFloat64);
  auto bytes = std::make_shared<std::vector<uint8_t>>(ParseTextNumbers(in, dtype, name, &count));
  InputSource src;
  src.dtype = dtype;
  src.rules.name = name;
  src.data = bytes->data();
  src.owner = bytes;
  return SourceInput(std::move(src), InputGeometry(dtype, count, layout.shape, layout.order, name));
}

}  // namespace

void FillSource(const InputSource& src, Dtype to, uint64_t count, Segment& seg, uint64_t base,
                void (*check)(void*), void* arg) {
  const std::string& name = src.rules.name;
  const size_t in_item = ItemSize(src.dtype), out_item = ItemSize(to);
  const bool same = src.dtype == to;
  // Nothing to look at on the way: the bytes go as they are.
  const bool as_is = same && (src.rules.missing == Missing::kNone || HoldsMissing(to));
  if (as_is && src.fd) {
    // In-kernel copy: no user-space buffer, no page faults on our side.
    off_t off = static_cast<off_t>(src.file_offset);
    uint64_t left = count * in_item;
    // sendfile writes at the segment descriptor's file position.
    if (lseek(seg.fd(), static_cast<off_t>(base), SEEK_SET) < 0)
      throw SystemError("copy input", name, "lseek", errno);
    while (left > 0) {
      if (check) check(arg);
      ssize_t n = sendfile(seg.fd(), *src.fd, &off, std::min(left, kSendfileChunk));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw SystemError("copy input", name, "sendfile", errno);
      if (n == 0) Usage(fmt::format("input '{}': ends early", name));
      left -= static_cast<uint64_t>(n);
    }
    return;
  }
  if (as_is) {
    seg.Write(base, src.data, count * in_item, check, arg);
    return;
  }
  const uint64_t per_chunk = std::min(count, kChunkElements);
  std::vector<uint8_t> read_buf(src.fd ? per_chunk * in_item : 0);
  std::vector<uint8_t> out_buf(same ? 0 : per_chunk * out_item);
  for (uint64_t i = 0; i < count; i += per_chunk) {
    if (check) check(arg);
    const uint64_t k = std::min(per_chunk, count - i);
    const uint8_t* from = src.data + i * in_item;
    if (src.fd) {
      PreadAll(*src.fd, read_buf.data(), k * in_item, src.file_offset + i * in_item, name);
      from = read_buf.data();
    }
    if (same) {
      RefuseMissing(src.dtype, from, k, i, to, src.rules);
      seg.Write(base + i * out_item, from, k * out_item);
    } else {
      ConvertElements(src.dtype, from, to, out_buf.data(), k, i, src.rules);
      seg.Write(base + i * out_item, out_buf.data(), k * out_item);
    }
  }
}

Input SourceInput(InputSource src, const ArrayDesc& desc) {
  Input in;
  in.desc = desc;
  in.fill = [src = std::move(src), to = desc.dtype, count = desc.count](
                Segment& seg, void (*check)(void*), void* arg) { FillSource(src, to, count, seg, 0, check, arg); };
  return in;
}

ArrayDesc InputGeometry(Dtype dtype, uint64_t count, const std::optional<std::vector<uint64_t>>& shape,
                        Order order, const std::string& name) {
  if (!shape) return ArrayDesc::Make(dtype, {count}, order);
  ArrayDesc d = ArrayDesc::Make(dtype, *shape, order);
  if (d.count != count)
    Usage(fmt::format("{}: shape {} holds {} elements but the input has {}", name, ShapeText(*shape),
                      d.count, count));
  return d;
}

Input FileInput(const std::string& path, const InputLayout& layout) {
  std::shared_ptr<const int> fd = OpenFile(path);
  struct stat st;
  if (fstat(*fd, &st) != 0) throw SystemError("read input", path, "fstat", errno);
  if (S_ISDIR(st.st_mode)) Usage(fmt::format("input '{}' is a directory", path));
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  uint8_t pre[16] = {};
  const uint64_t pre_size = std::min<uint64_t>(size, sizeof pre);
  PreadAll(*fd, pre, pre_size, 0, path);
  InputSource src;
  src.rules.name = path;
  src.fd = fd;
  if (layout.format == "npy" || (layout.format == "auto" && IsNpy(pre, pre_size))) {
    uint64_t hlen = NpyHeaderLength(pre, pre_size, path);
    if (hlen == 0) Usage(fmt::format("{}: not a .npy file (no magic)", path));
    if (hlen > size) Usage(fmt::format("{}: file ends inside its .npy header", path));
    std::vector<uint8_t> head(hlen);
    PreadAll(*fd, head.data(), hlen, 0, path);
    NpyHeader h = ParseNpyHeader(head.data(), head.size(), path);
    CheckNpy(h, size, layout, path);
    src.dtype = h.desc.dtype;
    src.file_offset = h.payload_offset;
    return SourceInput(std::move(src), ArrayDesc::Make(layout.dtype.value_or(h.desc.dtype),
                                                       h.desc.shape, h.desc.order));
  }
  if (layout.format == "npz" || (layout.format == "auto" && IsZip(pre, pre_size))) {
    CheckNpz(layout, path);
    const int f = *fd;
    auto members = ReadNpzDirectory(
        [f, &path](void* dst, uint64_t n, uint64_t off) { PreadAll(f, dst, n, off, path); }, size, path);
    return NpzInput(members, src, path);
  }
  if (layout.format == "text") {
    std::string text(size, '\0');
    PreadAll(*fd, text.data(), size, 0, path);
    return TextInput(text, layout, path);
  }
  src.dtype = RawDtype(layout, path, true);
  ArrayDesc desc =
      InputGeometry(src.dtype, RawCount(size, src.dtype, path), layout.shape, layout.order, path);
  return SourceInput(std::move(src), desc);
}

Input BytesInput(std::shared_ptr<const std::vector<uint8_t>> bytes, const InputLayout& layout,
                 const std::string& name) {
  InputSource src;
  src.rules.name = name;
  src.owner = bytes;
  if (layout.format == "npy" || (layout.format == "auto" && IsNpy(bytes->data(), bytes->size()))) {
    NpyHeader h = ParseNpyHeader(bytes->data(), bytes->size(), name);
    CheckNpy(h, bytes->size(), layout, name);
    src.dtype = h.desc.dtype;
    src.data = bytes->data() + h.payload_offset;
    return SourceInput(std::move(src), ArrayDesc::Make(layout.dtype.value_or(h.desc.dtype),
                                                       h.desc.shape, h.desc.order));
  }
  if (layout.format == "npz" || (layout.format == "auto" && IsZip(bytes->data(), bytes->size()))) {
    CheckNpz(layout, name);
    const std::vector<uint8_t>& b = *bytes;
    auto members = ReadNpzDirectory(
        [&b, &name](void* dst, uint64_t n, uint64_t off) {
          if (off > b.size() || b.size() - off < n) Usage(fmt::format("{}: ends early", name));
          std::memcpy(dst, b.data() + off, n);
        },
        b.size(), name);
    src.data = bytes->data();
    return NpzInput(members, src, name);
  }
  if (layout.format == "raw") {
    src.dtype = RawDtype(layout, name, false);
    src.data = bytes->data();
    ArrayDesc desc = InputGeometry(src.dtype, RawCount(bytes->size(), src.dtype, name), layout.shape,
                                   layout.order, name);
    return SourceInput(std::move(src), desc);
  }
  return TextInput(std::string(bytes->begin(), bytes->end()), layout, name);
}

}  // namespace pyrmap
