"""Table blocks: several named arrays, data frames, strings, categories and
date-times in one block of bytes (the Python twin of src/table.h, which is
the reference for the layout; docs/protocol.md, "Tables", describes it too).

This module holds the byte layout only (it does not import numpy): entries
and buffers, ``layout``, ``encode_directory`` and a validating ``decode``
whose messages use the same phrases as the C++ DecodeTable. The conversions
to and from numpy and pandas objects are in pyrmap._frames.

Block header (64 bytes): magic b"\\x89PYRTAB\\n" @0, u32 version @8, u32
entries @12, u32 buffers @16, u64 entries_offset @24 (64), u64
buffers_offset @32, u64 strings_offset @40, u64 strings_size @48, u64
block_size @56. Entry (64 bytes): u32 kind @0, u32 parent @4, u32 role @8,
u32 flags @12, u64 length @16, u32 buffer @24, u32 mask @28, u32 name
offset @32 and length @36, u32 time zone offset @40 and length @44, u32
unit/code width @48, u32 children @52. Buffers: the header's 192-byte
ArrayDesc; in a result table the u32 at +12 says where the buffer lies: 0
in this block, 1 in the call's input block (only when the caller allowed
it, header flag FLAG_INPUT_REFS).
"""

from __future__ import annotations

import struct

from . import _header as H
from ._errors import ProtocolError

MAGIC = b"\x89PYRTAB\n"
VERSION = 1
HEADER_SIZE = 64
ENTRY_SIZE = 64
NO_INDEX = 0xFFFFFFFF
MAX_ENTRIES = 1 << 24
IN_BLOCK = 0
IN_INPUT = 1

KIND_ARRAY = 1
KIND_STRING = 2
KIND_CATEGORY = 3
KIND_DATETIME = 4
KIND_LIST = 5
KIND_FRAME = 6
KIND_NULL = 7
KIND_NAMES = {1: "array", 2: "string", 3: "category", 4: "datetime", 5: "list", 6: "frame",
              7: "null"}

ROLE_ELEMENT = 0
ROLE_NAMES = 1
ROLE_LEVELS = 2

ENTRY_MASKED = 1 << 0
ENTRY_NAMED = 1 << 1
ENTRY_ORDERED = 1 << 2
ENTRY_INTEGER64 = 1 << 3
ENTRY_NO_TZONE = 1 << 4
ENTRY_LOCAL_TIME = 1 << 5

UNIT_DAY = 0
UNIT_SECOND = 1
UNIT_MILLI = 2
UNIT_MICRO = 3
UNIT_NANO = 4
UNIT_CODES = {"D": UNIT_DAY, "s": UNIT_SECOND, "ms": UNIT_MILLI, "us": UNIT_MICRO,
              "ns": UNIT_NANO}
UNIT_NAMES = {v: k for k, v in UNIT_CODES.items()}


_HEAD = struct.Struct("<8sIIII QQQQQ")
_ENTRY = struct.Struct("<IIIIQIIIIIIII8x")


class Entry(H._Record):
    """One entry. ``children`` lists the indices of its children (filled by
    ``layout`` and ``decode``)."""

    __slots__ = ("kind", "parent", "role", "flags", "length", "buffer", "mask", "name", "tz",
                 "unit", "children")
    _defaults = (KIND_NULL, NO_INDEX, ROLE_ELEMENT, 0, 0, NO_INDEX, NO_INDEX, "", "", 0, list)


class Table(H._Record):
    """Entries (entry 0 is the root), buffers (ArrayDesc, offsets from the
    block's start), where each buffer lies (IN_BLOCK or IN_INPUT), the
    directory's size and the block's size."""

    __slots__ = ("entries", "buffers", "locations", "directory_size", "size")
    _defaults = (list, list, list, 0, 0)

    def add(self, entry: Entry) -> int:
        """Adds ``entry`` (its parent must be there already); its index."""
        if (not self.entries) != (entry.parent == NO_INDEX):
            raise ValueError("a table has exactly one root entry, added first")
        self.entries.append(entry)
        i = len(self.entries) - 1
        if entry.parent != NO_INDEX:
            self.entries[entry.parent].children.append(i)
        return i

    def add_buffer(self, desc: H.ArrayDesc, location: int = IN_BLOCK) -> int:
        self.buffers.append(desc)
        self.locations.append(location)
        return len(self.buffers) - 1


def _align(n: int) -> int:
    return (n + H.PAYLOAD_ALIGNMENT - 1) // H.PAYLOAD_ALIGNMENT * H.PAYLOAD_ALIGNMENT


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def layout(t: Table) -> None:
    """Assigns the offsets of the buffers that lie in the block (after the
    directory, each at a multiple of 64) and the sizes."""
    strings = sum(len(_utf8(e.name)) + len(_utf8(e.tz)) for e in t.entries)
    buffers_offset = HEADER_SIZE + ENTRY_SIZE * len(t.entries)
    strings_offset = buffers_offset + H.ARRAY_DESC_SIZE * len(t.buffers)
    t.directory_size = _align(strings_offset + strings)
    pos = t.directory_size
    for i, d in enumerate(t.buffers):
        if t.locations[i] == IN_BLOCK:
            d.offset = pos
            pos += _align(d.nbytes)
    t.size = pos


def encode_directory(t: Table) -> bytes:
    """The directory's bytes (t.directory_size of them), after ``layout``."""
    n, nb = len(t.entries), len(t.buffers)
    buffers_offset = HEADER_SIZE + ENTRY_SIZE * n
    strings_offset = buffers_offset + H.ARRAY_DESC_SIZE * nb
    buf = bytearray(t.directory_size)
    strings = bytearray()
    for i, e in enumerate(t.entries):
        name, tz = _utf8(e.name), _utf8(e.tz)
        name_at = len(strings)
        strings += name
        tz_at = len(strings)
        strings += tz
        _ENTRY.pack_into(buf, HEADER_SIZE + ENTRY_SIZE * i, e.kind, e.parent, e.role, e.flags,
                         e.length, e.buffer, e.mask, name_at, len(name), tz_at, len(tz), e.unit,
                         len(e.children))
    for i, d in enumerate(t.buffers):
        pos = buffers_offset + H.ARRAY_DESC_SIZE * i
        buf[pos:pos + H.ARRAY_DESC_SIZE] = H.encode_desc(d)
        struct.pack_into("<I", buf, pos + 12, t.locations[i])
    buf[strings_offset:strings_offset + len(strings)] = strings
    _HEAD.pack_into(buf, 0, MAGIC, VERSION, n, nb, 0, HEADER_SIZE, buffers_offset,
                    strings_offset, len(strings), t.size)
    return bytes(buf)


def _reject(where: str, why: str):
    raise ProtocolError("invalid table in %s: %s" % (where, why))


def entry_path(t: Table, i: int) -> str:
    """"column 'x' of element 'df'", for messages."""
    parts = []
    while 0 <= i < len(t.entries):
        e = t.entries[i]
        if e.parent == NO_INDEX:
            break
        p = t.entries[e.parent]
        if e.role == ROLE_NAMES:
            parts.append("the row names" if p.kind == KIND_FRAME else "the names")
        elif e.role == ROLE_LEVELS:
            parts.append("the levels")
        elif p.kind == KIND_FRAME:
            parts.append("column '%s'" % e.name)
        elif p.flags & ENTRY_NAMED:
            parts.append("element '%s'" % e.name)
        else:
            k = [c for c in p.children if t.entries[c].role == ROLE_ELEMENT].index(i)
            parts.append("element %d" % (k + 1))
        i = e.parent
    return " of ".join(parts) if parts else "the table's root"


def decode(buf, where: str = "?", input_size: int = None) -> Table:
    """Reads and validates the table block at the start of ``buf`` (bytes,
    memoryview, mmap or a uint8 array). Buffers that lie in the call's input
    block (a result's) are checked against ``input_size`` (None: none may).
    Raises ProtocolError naming ``where`` and the entry."""
    size = len(buf)
    if size < HEADER_SIZE:
        _reject(where, "%d bytes, too few for a table header" % size)
    (magic, version, n, nb, _, entries_offset, buffers_offset, strings_offset, strings_size,
     block_size) = _HEAD.unpack_from(buf, 0)
    if magic != MAGIC:
        _reject(where, "bad magic (not a pyrmap table)")
    if version != VERSION:
        _reject(where, "table version %d is not the %d this pyrmap reads" % (version, VERSION))
    if n == 0 or n > MAX_ENTRIES or nb > MAX_ENTRIES * 3:
        _reject(where, "%d entries and %d buffers" % (n, nb))
    if (entries_offset != HEADER_SIZE or buffers_offset != entries_offset + ENTRY_SIZE * n
            or strings_offset != buffers_offset + H.ARRAY_DESC_SIZE * nb):
        _reject(where, "the directory's offsets do not follow its counts")
    if block_size > size:
        _reject(where, "block_size %d exceeds the %d bytes it was given" % (block_size, size))
    strings_end = strings_offset + strings_size
    if strings_end > block_size:
        _reject(where, "the strings area runs past the block")
    t = Table()
    t.size = block_size
    t.directory_size = _align(strings_end)
    for i in range(nb):
        pos = buffers_offset + H.ARRAY_DESC_SIZE * i
        d = H.decode_desc(buf, pos, where, "buffer %d" % i)
        (location,) = struct.unpack_from("<I", buf, pos + 12)
        if d.dtype == H.DTYPE_NONE:
            _reject(where, "buffer %d has no dtype" % i)
        if location == IN_INPUT and input_size is not None:
            limit, low = input_size, 0
        elif location == IN_BLOCK:
            limit, low = block_size, strings_end
        else:
            _reject(where, "buffer %d lies in the input block, which this reader does not have"
                    % i if location == IN_INPUT else "buffer %d location %d is unknown"
                    % (i, location))
        if d.offset < low or d.offset + d.nbytes > limit:
            _reject(where, "buffer %d (%s at offset %d) lies outside the block's payload area"
                    % (i, d.describe(), d.offset))
        t.buffers.append(d)
        t.locations.append(location)
    strings = bytes(buf[strings_offset:strings_end])
    raw = []
    for i in range(n):
        (kind, parent, role, flags, length, buffer, mask, name_at, name_len, tz_at, tz_len, unit,
         nchildren) = _ENTRY.unpack_from(buf, entries_offset + ENTRY_SIZE * i)
        if not 1 <= kind <= KIND_NULL:
            _reject(where, "entry %d has unknown kind %d" % (i, kind))
        if (i == 0) != (parent == NO_INDEX) or (i > 0 and parent >= i):
            _reject(where, "entry %d's parent %d does not come before it" % (i, parent))
        if role > ROLE_LEVELS:
            _reject(where, "entry %d has unknown role %d" % (i, role))
        if name_at + name_len > strings_size:
            _reject(where, "entry %d's name lies outside the strings area" % i)
        if tz_at + tz_len > strings_size:
            _reject(where, "entry %d's time zone lies outside the strings area" % i)
        try:
            name = strings[name_at:name_at + name_len].decode("utf-8")
            tz = strings[tz_at:tz_at + tz_len].decode("utf-8")
        except UnicodeDecodeError:
            _reject(where, "entry %d's name or time zone is not valid UTF-8" % i)
        e = Entry(kind, parent, role, flags, length, buffer, mask, name, tz, unit, [])
        if parent != NO_INDEX:
            t.entries[parent].children.append(i)
        t.entries.append(e)
        raw.append(nchildren)
    for i, e in enumerate(t.entries):
        _check_entry(t, i, e, raw[i], where)
    return t


def _check_entry(t: Table, i: int, e: Entry, recorded: int, where: str) -> None:
    who = "entry %d (%s, %s)" % (i, KIND_NAMES[e.kind], entry_path(t, i))
    if recorded != len(e.children):
        _reject(where, "%s records %d children but has %d" % (who, recorded, len(e.children)))

    def need(b, dtype, what):
        if b >= len(t.buffers):
            _reject(where, "%s has no %s buffer" % (who, what))
        d = t.buffers[b]
        if dtype is not None and d.dtype != dtype:
            _reject(where, "%s's %s is %s, not %s" % (who, what, d.describe(), H.DTYPE_NAMES[dtype]))
        return d

    masked = e.mask != NO_INDEX
    if masked != bool(e.flags & ENTRY_MASKED):
        _reject(where, "%s: its mask flag and mask buffer disagree" % who)
    if masked:
        m = need(e.mask, H.DTYPE_BOOL, "mask")
        if m.count != e.length:
            _reject(where, "%s's mask has %d elements for %d" % (who, m.count, e.length))
    names = levels = 0
    for c in e.children:
        ce = t.entries[c]
        if ce.role == ROLE_NAMES:
            names += 1
            ok = ce.kind == KIND_STRING or (e.kind == KIND_FRAME and ce.kind == KIND_ARRAY)
            if not ok or e.kind not in (KIND_FRAME, KIND_ARRAY):
                _reject(where, "%s has names of kind %s" % (who, KIND_NAMES[ce.kind]))
        elif ce.role == ROLE_LEVELS:
            levels += 1
            if e.kind != KIND_CATEGORY or ce.kind != KIND_STRING or ce.mask != NO_INDEX:
                _reject(where, "%s has levels it cannot have" % who)
        elif e.kind not in (KIND_LIST, KIND_FRAME):
            _reject(where, "%s cannot have elements" % who)
    if names > 1 or levels > 1:
        _reject(where, "%s has more than one set of names or levels" % who)
    if e.kind == KIND_ARRAY:
        d = need(e.buffer, None, "data")
        if d.count != e.length:
            _reject(where, "%s: data of %d elements for length %d" % (who, d.count, e.length))
        if e.flags & ENTRY_INTEGER64 and d.dtype != H.DTYPE_INT64:
            _reject(where, "%s is marked integer64 but holds %s" % (who, d.dtype_name))
    elif e.kind == KIND_STRING:
        o = need(e.buffer, H.DTYPE_INT64, "offsets")
        b = need(e.buffer + 1, H.DTYPE_UINT8, "bytes")
        if len(o.shape) != 1 or o.count != e.length + 1 or len(b.shape) != 1:
            _reject(where, "%s: %d offsets for %d strings" % (who, o.count, e.length))
    elif e.kind == KIND_CATEGORY:
        if e.unit not in (1, 2, 4):
            _reject(where, "%s: code width %d is not 1, 2 or 4" % (who, e.unit))
        c = need(e.buffer, H.DTYPE_UINT8, "codes")
        if c.count != e.length * e.unit:
            _reject(where, "%s: %d bytes of codes for %d codes of %d bytes"
                    % (who, c.count, e.length, e.unit))
        if levels != 1:
            _reject(where, "%s has no levels" % who)
    elif e.kind == KIND_DATETIME:
        if e.unit > UNIT_NANO:
            _reject(where, "%s: time unit %d is unknown" % (who, e.unit))
        d = need(e.buffer, H.DTYPE_INT64, "data")
        if d.count != e.length:
            _reject(where, "%s: data of %d elements for length %d" % (who, d.count, e.length))
    elif e.buffer != NO_INDEX or masked:
        _reject(where, "%s cannot have buffers" % who)
    if e.kind == KIND_FRAME:
        for c in e.children:
            ce = t.entries[c]
            vector = ce.kind in (KIND_ARRAY, KIND_STRING, KIND_CATEGORY, KIND_DATETIME)
            if (not vector or ce.length != e.length
                    or (ce.kind == KIND_ARRAY and len(t.buffers[ce.buffer].shape) != 1)):
                _reject(where, "%s: %s is not a column of %d rows"
                        % (who, entry_path(t, c), e.length))
