"""Mapping the input and storing the result (the numpy half of pyrmap).

Input: the data segment is mapped read-only and shared (PROT_READ,
MAP_SHARED); the array handed to the user is a view of that mapping, never a
copy, and cannot be written to. The mapping lives as long as any array that
views it. Segments are checked against the header (offset + nbytes must lie
inside the segment) before they are mapped, so a short segment is a
ProtocolError, never a SIGBUS.

Result: the user's value goes through numpy.asarray and a fixed set of
lossless conversions to one of the protocol's dtypes. Its bytes are written
with pwrite straight into the result segment, after the segment has been
reserved to the exact size with posix_fallocate (a full /dev/shm is an
OSError, never a SIGBUS). An array already laid out in the wanted order is
written from its own buffer; any other is re-laid out through a bounded
staging buffer, so no full-size copy is ever made. On any failure the result
segment holds garbage and the header is left untouched: it is the caller of
``write_payload`` (the Connection) that describes the result and sets state 1,
and only after the payload is complete.
"""

from __future__ import annotations

import errno
import mmap
import os

import numpy as np

from . import _header as H
from ._errors import ProtocolError, ResultTypeError
from ._meta import ENV_DATA, ENV_RESULT, open_segment, segment_dir

NUMPY_DTYPES = {code: np.dtype(s) for code, s in H.NUMPY_TYPESTRS.items()}

# Bytes of the staging buffer used to re-lay out a result, and the most one
# pwrite call is asked to write.
STAGING_BYTES = 16 << 20
PWRITE_CAP = 1 << 30

_WIDENING = ("int8/int16/uint16 are widened to int32, uint32 to int64, "
             "float16 to float32, uint64 to int64 when every value fits")


# ------------------------------------------------------------------ input

def map_input(name: str, desc: H.ArrayDesc, fd: int = -1) -> np.ndarray:
    """A read-only, zero-copy ndarray over segment ``name`` as ``desc``
    describes it (F order for order 1). ``fd``, when given, is a descriptor
    of that segment inherited from the runner (which may already have
    removed the name); it is closed here, the mapping keeps the memory."""
    if desc.dtype == H.DTYPE_NONE:
        if fd >= 0:
            os.close(fd)
        raise ProtocolError("the header describes no input array (dtype code 0) for "
                            "segment '%s'" % name)
    dtype = NUMPY_DTYPES[desc.dtype]
    order = "F" if desc.order == H.ORDER_F else "C"
    if fd < 0:
        fd = open_segment(name, os.O_RDONLY, ENV_DATA)
    try:
        H.check_payload_fits(desc, os.fstat(fd).st_size, name)
        if desc.nbytes == 0:
            # mmap cannot map 0 bytes; an empty array has no memory to share.
            arr = np.empty(desc.shape, dtype, order=order)
            arr.flags.writeable = False
            return arr
        mm = mmap.mmap(fd, desc.offset + desc.nbytes, flags=mmap.MAP_SHARED,
                       prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    # frombuffer keeps a memoryview of `mm` as its base: while any array views
    # the mapping, mm.close() refuses (np.ndarray(buffer=mm) would let it
    # unmap under live arrays). A read-only mapping makes a read-only array.
    flat = np.frombuffer(mm, dtype, count=desc.count, offset=desc.offset)
    return flat.reshape(desc.shape, order=order)


def map_block(name: str, desc: H.ArrayDesc, fd: int = -1):
    """A read-only shared mapping of segment ``name`` holding the table block
    ``desc`` describes (uint8[n] at desc.offset), checked to fit. ``fd`` as
    for map_input (closed here)."""
    if fd < 0:
        fd = open_segment(name, os.O_RDONLY, ENV_DATA)
    try:
        H.check_payload_fits(desc, os.fstat(fd).st_size, name)
        return mmap.mmap(fd, desc.offset + desc.nbytes, flags=mmap.MAP_SHARED,
                         prot=mmap.PROT_READ)
    finally:
        os.close(fd)


def detach_input(arr: np.ndarray, keep):
    """The mapping under the input array ``arr`` if it may be released once
    ``arr`` is dropped (the caller's last reference), else None: ``keep``
    (the result) may share its memory, or there is no mapping."""
    mm = arr
    while isinstance(mm, np.ndarray):  # array -> ... -> memoryview -> mmap
        mm = mm.base
    if isinstance(mm, memoryview):
        mm = mm.obj
    if not isinstance(mm, mmap.mmap):
        return None
    if isinstance(keep, np.ndarray) and np.may_share_memory(keep, arr):
        return None
    return mm


def close_in_background(mm: mmap.mmap) -> None:
    """Unmaps ``mm`` in a thread. Once the runner has removed the segment's
    name, this frees the input's memory while the result is being written,
    so input and result never both take memory here. An array the script
    kept that still views the mapping makes mmap.close refuse (the arrays
    hold a buffer export of it): the memory then goes at exit."""
    def close():
        try:
            mm.close()
        except (BufferError, ValueError):
            pass

    import threading

    threading.Thread(target=close, name="pyrmap-release-input", daemon=True).start()


# ------------------------------------------------------------------ result type

def _describe_value(value, arr=None) -> str:
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == "builtins" else \
        "%s.%s" % (kind.__module__, kind.__qualname__)
    if arr is None:
        return "a %s" % name
    return "a %s with numpy dtype %s" % (name, arr.dtype)


def _target_code(dt: np.dtype):
    """The protocol dtype code a numpy dtype is stored as, or None."""
    if dt.hasobject or dt.fields is not None or dt.subdtype is not None:
        return None
    kind, size = dt.kind, dt.itemsize
    if kind == "b":
        return H.DTYPE_BOOL
    if kind == "i":
        return {1: H.DTYPE_INT32, 2: H.DTYPE_INT32, 4: H.DTYPE_INT32, 8: H.DTYPE_INT64}.get(size)
    if kind == "u":
        return {1: H.DTYPE_UINT8, 2: H.DTYPE_INT32, 4: H.DTYPE_INT64, 8: H.DTYPE_INT64}.get(size)
    if kind == "f":
        return {2: H.DTYPE_FLOAT32, 4: H.DTYPE_FLOAT32, 8: H.DTYPE_FLOAT64}.get(size)
    return None


def as_storable(value):
    """(array, protocol dtype code) for ``value``, or ResultTypeError. The
    array is numpy.asarray(value): a view, not a copy, when value already is
    an array; conversions happen later, chunk by chunk, while writing."""
    try:
        arr = np.asarray(value)
    except Exception as e:  # numpy refuses: ragged nested lists and the like
        raise ResultTypeError(
            "cannot store the result: %s that numpy.asarray cannot turn into an array "
            "(%s: %s); return a numpy array of one of the supported dtypes: %s"
            % (_describe_value(value), type(e).__name__, e, H.SUPPORTED_DTYPES)) from e
    if arr.ndim == 0:
        # R has no 0-d arrays, and the next stage of a pipeline indexes its
        # input: a scalar is stored as shape (1,), everywhere.
        arr = arr.reshape(1)
    code = _target_code(arr.dtype)
    if code is None:
        raise ResultTypeError(
            "cannot store the result: %s is not supported; supported dtypes: %s "
            "(%s)" % (_describe_value(value, arr), H.SUPPORTED_DTYPES, _WIDENING))
    if arr.ndim > H.MAX_DIMS:  # numpy >= 2 allows more dimensions than the header
        raise ResultTypeError("cannot store the result: it has %d dimensions (at most %d)"
                              % (arr.ndim, H.MAX_DIMS))
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 8 and arr.size:
        largest = int(arr.max())
        if largest > np.iinfo(np.int64).max:
            raise ResultTypeError(
                "cannot store the result: a uint64 array is stored as int64, but its "
                "largest value %d exceeds the int64 maximum %d; convert it yourself "
                "(for example to float64)" % (largest, np.iinfo(np.int64).max))
    return arr, code


# ------------------------------------------------------------------ writing

def _pwrite_all(fd: int, view: memoryview, pos: int) -> int:
    """Writes the bytes of ``view`` at ``pos``; returns the end position."""
    done, total = 0, len(view)
    while done < total:
        n = os.pwrite(fd, view[done:done + min(PWRITE_CAP, total - done)], pos + done)
        if n <= 0:
            raise OSError(errno.EIO, "pwrite wrote nothing at offset %d" % (pos + done))
        done += n
    return pos + total


def _byte_view(flat: np.ndarray) -> memoryview:
    return memoryview(flat.reshape(-1).view(np.uint8))


def _write_staged(fd: int, src: np.ndarray, target: np.dtype, base: int = 0) -> int:
    """Writes src's elements in C order, converted to ``target``, through a
    staging buffer of at most STAGING_BYTES: slabs along the first axis, or
    along deeper axes when one slab is too large."""
    stage = np.empty(max(1, min(STAGING_BYTES // target.itemsize, src.size)), target)
    cap = stage.size

    def emit(block, pos):
        dst = stage[:block.size]
        np.copyto(dst.reshape(block.shape), block, casting="unsafe")
        return _pwrite_all(fd, _byte_view(dst), pos)

    def walk(a, pos):
        if a.size <= cap:
            return emit(a, pos)
        per_row = a.size // a.shape[0]
        if per_row > cap:
            for i in range(a.shape[0]):
                pos = walk(a[i], pos)
            return pos
        step = cap // per_row
        for i in range(0, a.shape[0], step):
            pos = emit(a[i:i + step], pos)
        return pos

    return walk(src, base) - base


def write_payload(fd: int, arr: np.ndarray, code: int, fortran: bool, base: int = 0) -> int:
    """Writes arr's elements as dtype ``code`` at offset ``base`` of ``fd``,
    in column-major order when ``fortran`` else row-major. Returns the bytes
    written. The file must already be large enough (fallocate)."""
    target = NUMPY_DTYPES[code]
    if arr.size == 0:
        return 0
    # F-order bytes of arr are the C-order bytes of arr.T.
    src = arr.T if fortran else arr
    if arr.dtype == target and src.flags.c_contiguous:
        return _pwrite_all(fd, _byte_view(src), base) - base
    return _write_staged(fd, src, target, base)


def _wants_fortran(arr: np.ndarray, flags: int) -> bool:
    """Whether to write ``arr`` column-major: with FLAG_RESULT_ORDER_ANY the
    array's own layout is kept (no re-layout), else flag bit 0 decides."""
    if arr.ndim < 2:
        return False
    if flags & H.FLAG_RESULT_ORDER_ANY:
        if arr.flags.c_contiguous:
            return False
        if arr.flags.f_contiguous:
            return True
    return bool(flags & H.FLAG_RESULT_ORDER_F)


def store(result_name: str, value, flags: int, write=None) -> H.ArrayDesc:
    """Converts ``value`` and writes its payload into segment ``result_name``;
    returns the descriptor to record. ``write`` replaces write_payload (tests
    use it to fail mid-way)."""
    arr, code = as_storable(value)
    fd = open_segment(result_name, os.O_RDWR, ENV_RESULT)
    try:
        return store_array(fd, arr, code, flags, write)
    finally:
        os.close(fd)


def store_array(fd: int, arr: np.ndarray, code: int, flags: int, write=None) -> H.ArrayDesc:
    """Writes ``arr`` (already storable as dtype ``code``) at offset 0 of the
    segment open as ``fd``, sized to exactly its bytes: reserved first with
    posix_fallocate (a full /dev/shm is an OSError, never a SIGBUS), cut
    with ftruncate if the segment was larger. Returns the descriptor."""
    fortran = _wants_fortran(arr, flags)
    desc = H.ArrayDesc.make(code, arr.shape, H.ORDER_F if fortran else H.ORDER_C, 0)
    reserve(fd, desc.nbytes, desc.describe())
    (write or write_payload)(fd, arr, code, fortran)
    return desc


def reserve(fd: int, nbytes: int, what: str) -> None:
    """Sizes the segment open as ``fd`` to exactly ``nbytes``: reserved with
    posix_fallocate (a full segment directory is an OSError naming ``what``
    and the remedy, never a SIGBUS), cut with ftruncate if it was larger."""
    if nbytes:
        try:
            os.posix_fallocate(fd, 0, nbytes)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                where = segment_dir()
                raise OSError(e.errno, "no space in %s for the result of %d bytes: "
                              "%s (%s; free space in %s, choose a larger segment directory "
                              "(path = \"DISK\" / segment_dir = in R, --segment-dir, "
                              "PYRMAP_SEGMENT_DIR) or return a smaller result)"
                              % (where, nbytes, e.strerror, what, where)) from None
            if e.errno == errno.EFBIG:
                raise OSError(e.errno, "the result of %d bytes (%s) exceeds the file size "
                              "limit of this process: %s (see ulimit -f)"
                              % (nbytes, what, e.strerror)) from None
            raise
    if os.fstat(fd).st_size > nbytes:
        os.ftruncate(fd, nbytes)
