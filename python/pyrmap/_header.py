"""The exchange header: the byte layout of a call's "meta" segment.

This module is the Python twin of src/header.h, which is the reference for the
table below; tests/python/test_header.py compares every constant here with the
C++ build's (`pyrmap --protocol-constants`), and tests/golden/ holds header
images that both sides decode (and encode back byte for byte), so the two
cannot drift apart.

All integers are little-endian. Version 2.0 (1.1 added result_location; a
1.0 header has 0 there; 2.0 added input_kind and result_kind: a descriptor
may describe a table block, pyrmap._table, and a 1.x reader refuses 2.0):

    offset size type      field
         0    8 u8[8]     magic b"\\x89PYRMAP\\n"
         8    2 u16       version_major (2); a newer major is rejected
        10    2 u16       version_minor (0); a newer minor is accepted
        12    4 u32       header_size (4096)
        16    4 u32       state: 0 input ready, 1 result ready, 2 error
        20    4 u32       flags: bit 0 = results of ndim >= 2 in column-major;
                          bit 1 = keep the result's own layout; bit 2 = the
                          input's segment was handed over writable and may
                          receive the result; bits 3-4 = how tables reach
                          Python: 0 auto, 1 pandas, 2 numpy only; bit 5 =
                          a result table may refer to the input block
        24    8 i64       owner_pid
        32    8 i64       worker_pid (0 until the Python side starts)
        40    4 u32       result_location: 0 = the result segment, 1 = the
                          input's segment (only with flag bit 2)
        44    4 u32       input_kind: 0 one array, 1 a table block (2.0)
        48    4 u32       result_kind: 0 one array, 1 a table block (2.0)
        64  192 ArrayDesc input
       256  192 ArrayDesc result
       448   64 char[64]  error_type, NUL-padded UTF-8
       512    4 u32       error_length
       516    4 u32       error_flags: bit 0 = text was cut (its start lost)
      1024 3072 char[]    error_text, UTF-8
    all other bytes are reserved and written as 0.

    ArrayDesc (192 bytes): u32 dtype code @0, u32 order @4 (0 C, 1 F),
    u32 ndim @8, u64 count @16, u64 offset @24 (multiple of 64),
    u64 nbytes @32, u64[16] shape @48 (entries at and after ndim are 0).

Contract of this module: ``encode`` always returns exactly HEADER_SIZE bytes
and never fails on long texts (they are cut as described at ``encode``);
``decode`` never reads outside the buffer it is given and raises
``pyrmap.ProtocolError`` with a distinct message for every kind of invalid
header, using the same phrases as the C++ DecodeHeader. It does not import
numpy, so the bootstrap can use it to report a missing numpy.
"""

from __future__ import annotations

import struct

from ._errors import ProtocolError

MAGIC = b"\x89PYRMAP\n"
VERSION_MAJOR = 2
VERSION_MINOR = 0
HEADER_SIZE = 4096
MAX_DIMS = 16
PAYLOAD_ALIGNMENT = 64

# Field offsets from the start of the header.
OFF_MAGIC = 0
OFF_VERSION_MAJOR = 8
OFF_VERSION_MINOR = 10
OFF_HEADER_SIZE = 12
OFF_STATE = 16
OFF_FLAGS = 20
OFF_OWNER_PID = 24
OFF_WORKER_PID = 32
OFF_RESULT_LOCATION = 40
OFF_INPUT_KIND = 44
OFF_RESULT_KIND = 48
OFF_INPUT = 64
OFF_RESULT = 256
OFF_ERROR_TYPE = 448
OFF_ERROR_LENGTH = 512
OFF_ERROR_FLAGS = 516
OFF_ERROR_TEXT = 1024
# Offsets within an ArrayDesc.
OFF_DESC_DTYPE = 0
OFF_DESC_ORDER = 4
OFF_DESC_NDIM = 8
OFF_DESC_COUNT = 16
OFF_DESC_OFFSET = 24
OFF_DESC_NBYTES = 32
OFF_DESC_SHAPE = 48

ARRAY_DESC_SIZE = 192
ERROR_TYPE_SIZE = 64
ERROR_TEXT_SIZE = HEADER_SIZE - OFF_ERROR_TEXT  # 3072

STATE_INPUT_READY = 0
STATE_RESULT_READY = 1
STATE_ERROR = 2
STATE_NAMES = {0: "input ready", 1: "result ready", 2: "error"}

ORDER_C = 0
ORDER_F = 1

FLAG_RESULT_ORDER_F = 1 << 0
FLAG_RESULT_ORDER_ANY = 1 << 1
FLAG_IN_PLACE = 1 << 2
RESULT_IN_RESULT_SEGMENT = 0
RESULT_IN_INPUT_SEGMENT = 1
ERROR_FLAG_TRUNCATED = 1 << 0
# Flags bits 3-4: how a table input reaches Python.
FLAG_TABLES_SHIFT = 3
FLAG_TABLES_MASK = 3 << FLAG_TABLES_SHIFT
TABLES_AUTO = 0
TABLES_PANDAS = 1
TABLES_NUMPY = 2
FLAG_INPUT_REFS = 1 << 5
# What an input or result descriptor describes.
KIND_ARRAY = 0
KIND_TABLE = 1

# Dtype codes (src/dtype.h); they never change.
DTYPE_NONE = 0
DTYPE_INT32 = 1
DTYPE_INT64 = 2
DTYPE_FLOAT32 = 3
DTYPE_FLOAT64 = 4
DTYPE_UINT8 = 5
DTYPE_BOOL = 6
MAX_DTYPE_CODE = 6

DTYPE_NAMES = {
    DTYPE_NONE: "none",
    DTYPE_INT32: "int32",
    DTYPE_INT64: "int64",
    DTYPE_FLOAT32: "float32",
    DTYPE_FLOAT64: "float64",
    DTYPE_UINT8: "uint8",
    DTYPE_BOOL: "bool",
}
DTYPE_CODES = {name: code for code, name in DTYPE_NAMES.items()}
ITEM_SIZES = {
    DTYPE_NONE: 0,
    DTYPE_INT32: 4,
    DTYPE_INT64: 8,
    DTYPE_FLOAT32: 4,
    DTYPE_FLOAT64: 8,
    DTYPE_UINT8: 1,
    DTYPE_BOOL: 1,
}
# numpy type strings (as in .npy headers), all little-endian.
NUMPY_TYPESTRS = {
    DTYPE_INT32: "<i4",
    DTYPE_INT64: "<i8",
    DTYPE_FLOAT32: "<f4",
    DTYPE_FLOAT64: "<f8",
    DTYPE_UINT8: "|u1",
    DTYPE_BOOL: "|b1",
}
SUPPORTED_DTYPES = "int32, int64, float32, float64, uint8, bool"

_U64_MAX = (1 << 64) - 1

_DESC_HEAD = struct.Struct("<IIII QQQ")  # dtype, order, ndim, reserved, count, offset, nbytes


def _dtype_code(dtype) -> int:
    if isinstance(dtype, str):
        if dtype not in DTYPE_CODES:
            raise ValueError(
                "unknown dtype %r (supported: %s)" % (dtype, SUPPORTED_DTYPES))
        return DTYPE_CODES[dtype]
    code = int(dtype)
    if code not in DTYPE_NAMES:
        raise ValueError("unknown dtype code %d" % code)
    return code


class _Record:
    """Keyword/positional init, ==, repr over __slots__, like a dataclass;
    written by hand because the dataclasses machinery costs milliseconds
    of start-up in every run."""

    __slots__ = ()
    _defaults = ()

    def __init__(self, *args, **kwargs):
        if len(args) > len(self.__slots__):
            raise TypeError("%s takes at most %d arguments"
                            % (type(self).__name__, len(self.__slots__)))
        for name, value in zip(self.__slots__, args):
            if name in kwargs:
                raise TypeError("%s got two values for %r" % (type(self).__name__, name))
            kwargs[name] = value
        for name, default in zip(self.__slots__, self._defaults):
            if name in kwargs:
                value = kwargs.pop(name)
            else:
                value = default() if callable(default) else default
            object.__setattr__(self, name, value)
        if kwargs:
            raise TypeError("%s has no field %r" % (type(self).__name__, next(iter(kwargs))))

    def _values(self):
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join(
            "%s=%r" % (name, getattr(self, name)) for name in self.__slots__))


class ArrayDesc(_Record):
    """An array's type and geometry. ``dtype`` is the protocol code (0 = no
    array); ``make`` derives count and nbytes from shape and dtype."""

    __slots__ = ("dtype", "order", "shape", "count", "offset", "nbytes")
    _defaults = (DTYPE_NONE, ORDER_C, (), 0, 0, 0)

    @classmethod
    def make(cls, dtype, shape, order: int = ORDER_C, offset: int = 0) -> "ArrayDesc":
        """A consistent descriptor; ``dtype`` is a code or a name ("int32")."""
        code = _dtype_code(dtype)
        shape = tuple(int(n) for n in shape)
        if len(shape) > MAX_DIMS:
            raise ValueError("arrays of %d dimensions are not supported (at most %d)"
                             % (len(shape), MAX_DIMS))
        count = 1
        for n in shape:
            count *= n
        return cls(code, int(order), shape, count, int(offset), count * ITEM_SIZES[code])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES.get(self.dtype, "code %d" % self.dtype)

    @property
    def itemsize(self) -> int:
        return ITEM_SIZES.get(self.dtype, 0)

    def describe(self) -> str:
        """'float64[3, 2] (column-major)', for messages (as the C++ side)."""
        dims = ", ".join(str(n) for n in self.shape)
        order = ""
        if len(self.shape) >= 2:
            order = " (column-major)" if self.order == ORDER_F else " (row-major)"
        return "%s[%s]%s" % (self.dtype_name, dims, order)


class Header(_Record):
    """The decoded exchange header. Texts are str; ``error_truncated`` says
    that the start of the traceback was cut to fit its area. Fields:
    version_major, version_minor, state, flags, owner_pid, worker_pid,
    input, result (ArrayDesc), error_type, error_text, error_truncated,
    result_location, input_kind, result_kind (KIND_ARRAY or KIND_TABLE)."""

    __slots__ = ("version_major", "version_minor", "state", "flags", "owner_pid",
                 "worker_pid", "input", "result", "error_type", "error_text",
                 "error_truncated", "result_location", "input_kind", "result_kind")
    _defaults = (VERSION_MAJOR, VERSION_MINOR, STATE_INPUT_READY, 0, 0, 0,
                 ArrayDesc, ArrayDesc, "", "", False, RESULT_IN_RESULT_SEGMENT,
                 KIND_ARRAY, KIND_ARRAY)


# ---------------------------------------------------------------- encoding

def encode_desc(desc: ArrayDesc) -> bytes:
    """The 192 bytes of one ArrayDesc (reserved bytes 0)."""
    if len(desc.shape) > MAX_DIMS:
        raise ValueError("arrays of %d dimensions are not supported (at most %d)"
                         % (len(desc.shape), MAX_DIMS))
    buf = bytearray(ARRAY_DESC_SIZE)
    _DESC_HEAD.pack_into(buf, 0, desc.dtype, desc.order, len(desc.shape), 0,
                         desc.count, desc.offset, desc.nbytes)
    struct.pack_into("<%dQ" % len(desc.shape), buf, OFF_DESC_SHAPE, *desc.shape)
    return bytes(buf)


def _utf8(text: str) -> bytes:
    # backslashreplace: a str holding lone surrogates (undecodable file names)
    # must still be recorded rather than fail the error path itself.
    return text.encode("utf-8", "backslashreplace")


def encode_error_type(error_type: str) -> bytes:
    """error_type as its 64-byte NUL-padded field, cut at its end (on a UTF-8
    character boundary) when longer."""
    raw = _utf8(error_type)
    if len(raw) > ERROR_TYPE_SIZE:
        raw = raw[:ERROR_TYPE_SIZE]
        # Drop a multi-byte character that the cut split.
        raw = raw.decode("utf-8", "ignore").encode("utf-8")
    return raw.ljust(ERROR_TYPE_SIZE, b"\0")


def encode_error_text(error_text: str, truncated: bool = False):
    """(the 3072-byte text field, error_length, error_flags). A text longer
    than the area keeps its END (the last frames and the message say most);
    the cut moves forward to a UTF-8 character boundary."""
    raw = _utf8(error_text)
    cut = bool(truncated)
    if len(raw) > ERROR_TEXT_SIZE:
        cut = True
        raw = raw[len(raw) - ERROR_TEXT_SIZE:]
        start = 0
        while start < len(raw) and (raw[start] & 0xC0) == 0x80:
            start += 1
        raw = raw[start:]
    flags = ERROR_FLAG_TRUNCATED if cut else 0
    return raw.ljust(ERROR_TEXT_SIZE, b"\0"), len(raw), flags


def encode(header: Header) -> bytes:
    """The HEADER_SIZE bytes of ``header``; reserved bytes are 0 and
    header_size is HEADER_SIZE whatever the version fields say."""
    buf = bytearray(HEADER_SIZE)
    buf[OFF_MAGIC:OFF_MAGIC + 8] = MAGIC
    struct.pack_into("<HHIIIqq", buf, OFF_VERSION_MAJOR,
                     header.version_major, header.version_minor, HEADER_SIZE,
                     header.state, header.flags, header.owner_pid, header.worker_pid)
    struct.pack_into("<III", buf, OFF_RESULT_LOCATION, header.result_location,
                     header.input_kind, header.result_kind)
    buf[OFF_INPUT:OFF_INPUT + ARRAY_DESC_SIZE] = encode_desc(header.input)
    buf[OFF_RESULT:OFF_RESULT + ARRAY_DESC_SIZE] = encode_desc(header.result)
    buf[OFF_ERROR_TYPE:OFF_ERROR_TYPE + ERROR_TYPE_SIZE] = encode_error_type(header.error_type)
    text, length, flags = encode_error_text(header.error_text, header.error_truncated)
    struct.pack_into("<II", buf, OFF_ERROR_LENGTH, length, flags)
    buf[OFF_ERROR_TEXT:HEADER_SIZE] = text
    return bytes(buf)


# ---------------------------------------------------------------- decoding

def _reject(where: str, why: str):
    raise ProtocolError("invalid header in segment '%s': %s" % (where, why))


def decode_desc(buf, pos: int, where: str, what: str) -> ArrayDesc:
    """Decodes and validates the ArrayDesc at ``buf[pos:pos+192]`` (the
    caller guarantees those bytes exist). ``what`` is "input" or "result"."""
    code, order, ndim, _, count, offset, nbytes = _DESC_HEAD.unpack_from(buf, pos)
    if code > MAX_DTYPE_CODE:
        _reject(where, "%s dtype code %d is unknown" % (what, code))
    if order > 1:
        _reject(where, "%s order %d is unknown" % (what, order))
    if ndim > MAX_DIMS:
        _reject(where, "%s has %d dimensions (at most %d)" % (what, ndim, MAX_DIMS))
    shape = struct.unpack_from("<%dQ" % ndim, buf, pos + OFF_DESC_SHAPE)
    product = 1
    for n in shape:
        product *= n
        if product > _U64_MAX:
            _reject(where, "%s shape overflows 64 bits" % what)
    desc = ArrayDesc(code, order, tuple(shape), count, offset, nbytes)
    if code == DTYPE_NONE:
        return desc  # no array: its geometry is not checked
    if count != product:
        _reject(where, "%s count %d does not match its shape (%d elements)"
                % (what, count, product))
    if product * ITEM_SIZES[code] > _U64_MAX or nbytes != product * ITEM_SIZES[code]:
        _reject(where, "%s nbytes %d does not match %d elements of %s"
                % (what, nbytes, product, DTYPE_NAMES[code]))
    if offset % PAYLOAD_ALIGNMENT != 0:
        _reject(where, "%s offset %d is not a multiple of %d"
                % (what, offset, PAYLOAD_ALIGNMENT))
    return desc


def _check_kind(kind, desc, where, what):
    if kind > KIND_TABLE:
        _reject(where, "%s_kind %d is unknown" % (what, kind))
    if kind == KIND_TABLE and desc.dtype != DTYPE_NONE and (
            desc.dtype != DTYPE_UINT8 or len(desc.shape) != 1):
        _reject(where, "%s is a table block described as %s, not as uint8[n]"
                % (what, desc.describe()))


def decode(buf, where: str = "?") -> Header:
    """Reads and validates a header from ``buf`` (bytes, bytearray, mmap or
    memoryview holding the meta segment from its start). ``where`` names the
    segment in messages. Raises ProtocolError for: fewer than 16 bytes, a
    bad magic, a newer major version (a newer minor is accepted), a
    header_size that does not fit, an unknown state, an inconsistent
    descriptor (unknown dtype code or order, more than 16 dimensions, count
    or nbytes that do not match the shape, an offset not a multiple of 64),
    an error_length beyond its area, state 1 with no result described, and
    an unknown kind or a table block described as anything but uint8[n]."""
    size = len(buf)
    # The fixed preamble first: magic and version decide how to read the rest.
    if size < 16:
        _reject(where, "segment holds %d bytes, too few for a header" % size)
    if bytes(buf[OFF_MAGIC:OFF_MAGIC + 8]) != MAGIC:
        _reject(where, "bad magic (not a pyrmap header, or overwritten)")
    major, minor, header_size = struct.unpack_from("<HHI", buf, OFF_VERSION_MAJOR)
    if major > VERSION_MAJOR:
        _reject(where, "header version %d.%d is newer than this pyrmap understands (%d.%d)"
                % (major, minor, VERSION_MAJOR, VERSION_MINOR))
    if major < 1:
        _reject(where, "header version %d.%d is unknown" % (major, minor))
    if header_size < HEADER_SIZE or header_size > size:
        _reject(where, "header_size %d does not fit: the segment holds %d bytes "
                "and a header needs %d" % (header_size, size, HEADER_SIZE))
    state, flags, owner_pid, worker_pid = struct.unpack_from("<IIqq", buf, OFF_STATE)
    if state > 2:
        _reject(where, "state %d is unknown" % state)
    h = Header(major, minor, state, flags, owner_pid, worker_pid)
    (h.result_location,) = struct.unpack_from("<I", buf, OFF_RESULT_LOCATION)
    if h.result_location > RESULT_IN_INPUT_SEGMENT:
        _reject(where, "result_location %d is unknown" % h.result_location)
    if h.result_location == RESULT_IN_INPUT_SEGMENT and not flags & FLAG_IN_PLACE:
        _reject(where, "result_location says the input's segment, which the caller did "
                "not hand over")
    h.input = decode_desc(buf, OFF_INPUT, where, "input")
    h.result = decode_desc(buf, OFF_RESULT, where, "result")
    if major >= 2:
        h.input_kind, h.result_kind = struct.unpack_from("<II", buf, OFF_INPUT_KIND)
    _check_kind(h.input_kind, h.input, where, "input")
    _check_kind(h.result_kind, h.result, where, "result")
    raw_type = bytes(buf[OFF_ERROR_TYPE:OFF_ERROR_TYPE + ERROR_TYPE_SIZE])
    h.error_type = raw_type.split(b"\0", 1)[0].decode("utf-8", "replace")
    length, error_flags = struct.unpack_from("<II", buf, OFF_ERROR_LENGTH)
    if length > ERROR_TEXT_SIZE:
        _reject(where, "error_length %d exceeds the error area (%d bytes)"
                % (length, ERROR_TEXT_SIZE))
    # A text cut by the C++ side may start inside a UTF-8 character.
    h.error_text = bytes(buf[OFF_ERROR_TEXT:OFF_ERROR_TEXT + length]).decode("utf-8", "replace")
    h.error_truncated = bool(error_flags & ERROR_FLAG_TRUNCATED)
    if h.state == STATE_RESULT_READY and h.result.dtype == DTYPE_NONE:
        _reject(where, "state is 'result ready' but no result is described")
    return h


def check_payload_fits(desc: ArrayDesc, segment_size: int, where: str) -> None:
    """Raises ProtocolError naming ``where`` unless desc's payload
    [offset, offset + nbytes) lies inside a segment of segment_size bytes."""
    end = desc.offset + desc.nbytes
    if end > _U64_MAX or end > segment_size:
        raise ProtocolError(
            "payload of %s at offset %d (%d bytes) does not fit segment '%s' of %d bytes"
            % (desc.describe(), desc.offset, desc.nbytes, where, segment_size))
