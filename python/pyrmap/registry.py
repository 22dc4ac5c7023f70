"""Variables that R registered in shared memory, read from Python.

R's ``registerVariables(namespace, list(x = ...))`` (the memshare API of the
pyrmap R package) puts each variable into a *page*: a file of the segment
directory named ``pyrmap-<uid>-ns-<hash of namespace and name>``, read-only
(mode 0400) once written. Any process of the same user can map it, so a
Python session — a Jupyter notebook next to an R session — can look at R's
data without a copy::

    import pyrmap.registry
    x = pyrmap.registry.get("demo", "X")      # a read-only numpy view
    pyrmap.registry.variables()               # [("demo", "X"), ...]

The view maps the page itself: nothing is copied, and it stays valid after R
releases the variable or exits (the memory goes when the last mapping does).
It is read-only; ``x.copy()`` gives a private, writable copy.

What arrives, by R type (R stores every type column-major, so matrices and
arrays are Fortran-ordered views of R's ``dim``):

========================  ==========================================
double                    float64
integer                   int32 (R's NA is -2**31)
logical                   int32: 1 TRUE, 0 FALSE, -2**31 NA (R's storage;
                          ``x == 1`` gives booleans)
raw                       uint8
bit64::integer64          int64 (NA is -2**63)
list of these             a list of views, or a dict when every element
                          has a distinct name
========================  ==========================================

Safety: the page is opened without following symbolic links and used only
if it is a regular file of this user with mode 0400 or 0600 (another user
could plant a file under a page's predictable name in /dev/shm); the
segment directory must not be writable by other users unless it is sticky;
every length in the page header is checked against the file's size before
anything is mapped. The layout is documented in ``src/registry.h`` of the
pyrmap sources.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import struct
from typing import TYPE_CHECKING, Dict, List, NamedTuple, Optional, Tuple, Union

from . import _header as H
from . import _segment_dir
from ._errors import NotRegisteredError, ProtocolError
from ._meta import check_segment_fd

if TYPE_CHECKING:  # numpy is imported when a page is mapped, not before
    import numpy as np

__all__ = ["VariableInfo", "get", "info", "page_name", "variables"]

PAGE_MAGIC = b"\x89PYRPAGE"
PAGE_VERSION_MAJOR = 1
PAGE_HEADER_SIZE = 4096
_NAME_FIELD = 256
_MAX_NAME_BYTES = 255

# Offsets in the page header (src/registry.h).
_OFF_VERSION_MAJOR = 8
_OFF_VERSION_MINOR = 10
_OFF_OWNER_PID = 16
_OFF_GENERATION = 24
_OFF_IS_LIST = 32
_OFF_COUNT = 36
_OFF_TABLE = 40
_OFF_NAMES = 48
_OFF_NAMES_SIZE = 56
_OFF_TOTAL_SIZE = 64
_OFF_READY = 72
_OFF_NAMESPACE = 128
_OFF_VARIABLE = 384
# In each ArrayDesc of the table: the R type (1 double, 2 integer, 3
# logical, 4 raw, 5 integer64) and bit 8 "had a dim attribute".
_OFF_TAG = 12
_TAG_KIND_MASK = 0xFF
_TAG_HAS_DIM = 0x100
R_TYPES = {1: "double", 2: "integer", 3: "logical", 4: "raw", 5: "integer64"}

View = Union["np.ndarray", List["np.ndarray"], Dict[str, "np.ndarray"]]


class VariableInfo(NamedTuple):
    """What a page holds, read from its header without mapping the data."""

    namespace: str
    name: str
    path: str                 # the page's file
    owner_pid: int            # the R process that registered it
    generation: int           # changes when the name is registered again
    is_list: bool
    r_types: Tuple[str, ...]  # one per array: "double", "integer", ...
    dtypes: Tuple[str, ...]   # numpy dtype names of the views
    shapes: Tuple[Tuple[int, ...], ...]
    element_names: Tuple[str, ...]  # a list's element names ("" if none)
    nbytes: int               # the page's size


def _fnv1a(namespace: bytes, variable: bytes) -> int:
    h = 1469598103934665603
    for c in namespace + b"\0" + variable:
        h ^= c
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def _encode_name(value: str, what: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError("the %s must be a string, not %s" % (what, type(value).__name__))
    raw = value.encode("utf-8")
    if not raw:
        raise ValueError("the %s must not be empty" % what)
    if len(raw) > _MAX_NAME_BYTES:
        raise ValueError("the %s %r is longer than %d bytes" % (what, value[:20] + "...",
                                                                 _MAX_NAME_BYTES))
    if b"\0" in raw:
        raise ValueError("the %s contains a NUL character" % what)
    return raw


def page_name(namespace: str, name: str) -> str:
    """The file name of the page of (namespace, name) for this user."""
    return "pyrmap-%d-ns-%016x" % (os.geteuid(), _fnv1a(_encode_name(namespace, "namespace"),
                                                         _encode_name(name, "variable name")))


def _label(namespace: str, name: str) -> str:
    return "variable '%s' of namespace '%s'" % (name, namespace)


def _damaged(path: str, why: str) -> ProtocolError:
    return ProtocolError("invalid page '%s': %s" % (path, why))


class _Page:
    """An open, checked page: its descriptor, size and decoded header."""

    def __init__(self, fd: int, path: str, size: int, info: VariableInfo,
                 descs: List[H.ArrayDesc], tags: List[int]):
        self.fd, self.path, self.size, self.info = fd, path, size, info
        self.descs, self.tags = descs, tags


def _read_header(fd: int, path: str, size: int) -> Tuple[VariableInfo, List[H.ArrayDesc], List[int]]:
    if size < PAGE_HEADER_SIZE:
        raise _damaged(path, "%d bytes, too few for a page header" % size)
    head = os.pread(fd, PAGE_HEADER_SIZE, 0)
    if len(head) < PAGE_HEADER_SIZE:
        raise _damaged(path, "could read only %d bytes of its header" % len(head))
    if head[:8] != PAGE_MAGIC:
        raise _damaged(path, "bad magic (not a pyrmap page)")
    major, minor = struct.unpack_from("<HH", head, _OFF_VERSION_MAJOR)
    if major != PAGE_VERSION_MAJOR:
        raise _damaged(path, "page version %d.%d is not understood by this pyrmap (%d.x)"
                       % (major, minor, PAGE_VERSION_MAJOR))
    owner, generation = struct.unpack_from("<qQ", head, _OFF_OWNER_PID)
    is_list, count = struct.unpack_from("<II", head, _OFF_IS_LIST)
    table, names_off, names_size, total = struct.unpack_from("<QQQQ", head, _OFF_TABLE)
    (ready,) = struct.unpack_from("<I", head, _OFF_READY)
    if total != size:
        raise _damaged(path, "total_size %d differs from the file's %d bytes" % (total, size))
    if ready != 1:
        raise ProtocolError("page '%s' is still being written (or its writer died: pyrmap gc "
                            "removes it once that process is gone)" % path)
    fields = []
    for off in (_OFF_NAMESPACE, _OFF_VARIABLE):
        raw = head[off:off + _NAME_FIELD]
        end = raw.find(b"\0")
        if end < 0:
            raise _damaged(path, "namespace or variable name is not terminated")
        fields.append(raw[:end].decode("utf-8", "replace"))
    if not is_list and count != 1:
        raise _damaged(path, "a single array with count %d" % count)
    table_end = table + count * H.ARRAY_DESC_SIZE
    if table < PAGE_HEADER_SIZE or table_end > size:
        raise _damaged(path, "a table of %d arrays at offset %d does not fit its %d bytes"
                       % (count, table, size))
    if names_size and names_off + names_size > size:
        raise _damaged(path, "the names block does not fit")
    raw_table = os.pread(fd, count * H.ARRAY_DESC_SIZE, table) if count else b""
    raw_names = os.pread(fd, names_size, names_off) if names_size else b""
    descs, tags, names = [], [], []
    pos = 0
    for i in range(count):
        at = i * H.ARRAY_DESC_SIZE
        desc = H.decode_desc(raw_table, at, path, "array %d" % (i + 1))
        (tag,) = struct.unpack_from("<I", raw_table, at + _OFF_TAG)
        if (tag & _TAG_KIND_MASK) not in R_TYPES:
            raise _damaged(path, "array %d has tag %d, which is not an R type" % (i + 1, tag))
        if desc.dtype != H.DTYPE_NONE:
            H.check_payload_fits(desc, size, path)
        if names_size:
            end = raw_names.find(b"\0", pos)
            if end < 0:
                raise _damaged(path, "element names are not terminated")
            names.append(raw_names[pos:end].decode("utf-8", "replace"))
            pos = end + 1
        else:
            names.append("")
        descs.append(desc)
        tags.append(tag)
    info = VariableInfo(
        namespace=fields[0], name=fields[1], path=path, owner_pid=owner, generation=generation,
        is_list=bool(is_list), r_types=tuple(R_TYPES[t & _TAG_KIND_MASK] for t in tags),
        dtypes=tuple(d.dtype_name for d in descs),
        shapes=tuple(_shape(d, t) for d, t in zip(descs, tags)),
        element_names=tuple(names), nbytes=size)
    return info, descs, tags


def _shape(desc: H.ArrayDesc, tag: int) -> Tuple[int, ...]:
    # A vector without dim arrives 1-D whatever the page recorded.
    return tuple(desc.shape) if tag & _TAG_HAS_DIM else (desc.count,)


def _open_page(namespace: str, name: str, segment_dir: Optional[str]) -> _Page:
    file_name = page_name(namespace, name)
    dir_fd, dir_path = _segment_dir.open_dir(segment_dir)
    path = os.path.join(dir_path, file_name)
    try:
        try:
            fd = os.open(file_name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK,
                         dir_fd=dir_fd)
        except FileNotFoundError:
            where = "" if dir_path == _segment_dir.SHM_DIR else " in segment directory '%s'" % dir_path
            raise NotRegisteredError("%s is not registered%s" % (_label(namespace, name), where)) from None
        except OSError as e:
            if e.errno == errno.ELOOP:  # a symbolic link planted under the name
                raise PermissionError(
                    errno.EPERM, "the page %s is a symbolic link, not a page pyrmap made; refusing "
                    "to follow it" % path, path) from None
            raise
    finally:
        os.close(dir_fd)
    try:
        check_segment_fd(fd, path)
        size = os.fstat(fd).st_size
        info, descs, tags = _read_header(fd, path, size)
        if (info.namespace, info.name) != (namespace, name):
            raise ProtocolError("page '%s' holds %s, not %s (a hash collision)"
                                % (path, _label(info.namespace, info.name), _label(namespace, name)))
    except BaseException:
        os.close(fd)
        raise
    return _Page(fd, path, size, info, descs, tags)


def info(namespace: str, name: str, *, segment_dir: Optional[str] = None) -> VariableInfo:
    """Describes the variable `name` of `namespace` without mapping it.

    `segment_dir` is where R registered it: "RAM" (/dev/shm), "DISK", a
    directory, or None for the environment variable PYRMAP_SEGMENT_DIR,
    else /dev/shm (R's ``options(pyrmap.segment_dir)`` is R's own: pass the
    same directory here). Raises pyrmap.NotRegisteredError if there is no
    such variable, PermissionError for a file pyrmap did not make, and
    pyrmap.ProtocolError for a damaged page."""
    page = _open_page(namespace, name, segment_dir)
    os.close(page.fd)
    return page.info


def get(namespace: str, name: str, *, segment_dir: Optional[str] = None) -> View:
    """A read-only numpy view of the variable `name` that R registered under
    `namespace` (see the module's docstring for the types and the
    layout); for a list, a list of views (a dict when every element has a
    distinct name). Nothing is copied. `segment_dir` and the errors are as
    for info()."""
    import numpy as np

    page = _open_page(namespace, name, segment_dir)
    try:
        mm = mmap.mmap(page.fd, page.size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    finally:
        os.close(page.fd)
    views = []
    for desc, tag in zip(page.descs, page.tags):
        shape = _shape(desc, tag)
        dtype = np.dtype(H.NUMPY_TYPESTRS[desc.dtype])
        if desc.nbytes == 0:
            arr = np.empty(shape, dtype=dtype, order="F")
            arr.flags.writeable = False
        else:
            order = "F" if desc.order == H.ORDER_F else "C"
            arr = np.ndarray(shape, dtype=dtype, buffer=mm, offset=desc.offset, order=order)
        views.append(arr)
    if not page.info.is_list:
        return views[0]
    names = page.info.element_names
    if names and all(names) and len(set(names)) == len(names):
        return dict(zip(names, views))
    return views


def variables(segment_dir: Optional[str] = None) -> List[Tuple[str, str]]:
    """(namespace, name) of every variable of this user registered in the
    segment directory (see info()), sorted. Files that are not this user's
    pages are passed over."""
    dir_fd, dir_path = _segment_dir.open_dir(segment_dir)
    prefix = "pyrmap-%d-ns-" % os.geteuid()
    found = []
    try:
        for entry in os.listdir(dir_fd):
            if not entry.startswith(prefix):
                continue
            try:
                fd = os.open(entry, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK,
                             dir_fd=dir_fd)
            except OSError:
                continue  # removed meanwhile, or not ours to open
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                    continue
                page_info, _, _ = _read_header(fd, os.path.join(dir_path, entry), st.st_size)
                found.append((page_info.namespace, page_info.name))
            except (OSError, ProtocolError):
                continue  # being written, or damaged: not a variable to show
            finally:
                os.close(fd)
    finally:
        os.close(dir_fd)
    return sorted(found)
