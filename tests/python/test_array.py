"""Mapping the input and storing the result, in-process, on real segments."""

import errno
import mmap
import os
import struct

import numpy as np
import pytest

import pyrmap
from pyrmap import ProtocolError, ResultTypeError
from pyrmap import _array
from pyrmap import _header as H


def connect(call, monkeypatch, array=None, **setup):
    call.setup(array, **setup)
    call.set_env(monkeypatch)
    return pyrmap.connect()


def stored(call, value, monkeypatch, flags=0):
    run = connect(call, monkeypatch, np.zeros(1), flags=flags)
    with run:
        desc = run.write_result(value)
    return desc


# ------------------------------------------------------------------ input

def test_input_is_a_zero_copy_view_of_the_segment(call, monkeypatch):
    x = np.arange(12, dtype=np.float64)
    run = connect(call, monkeypatch, x, offset=128)
    a = run.input
    np.testing.assert_array_equal(a, x)
    base = a
    while isinstance(base, np.ndarray):  # array -> memoryview of the mapping
        base = base.base
    assert isinstance(base.obj, mmap.mmap)
    whole = np.frombuffer(base.obj, dtype=np.uint8)  # the mapping itself
    assert np.shares_memory(a, whole)
    assert a.ctypes.data - whole.ctypes.data == 128
    assert len(whole) == 128 + x.nbytes
    # A live view: bytes written into the segment afterwards show up in it.
    fd = os.open(call.path(call.data), os.O_WRONLY)
    try:
        os.pwrite(fd, struct.pack("<d", 42.5), 128 + 8 * 3)
    finally:
        os.close(fd)
    assert a[3] == 42.5
    run.close()
    assert a[3] == 42.5  # the mapping outlives the connection


def test_input_is_read_only(call, monkeypatch):
    a = connect(call, monkeypatch, np.arange(4, dtype=np.int32)).input
    assert not a.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        a[0] = 7
    with pytest.raises(ValueError):
        a.flags.writeable = True
    with pytest.raises(ValueError):
        a += 1
    np.testing.assert_array_equal(a, [0, 1, 2, 3])


def test_fortran_matrix_arrives_fortran_ordered(call, monkeypatch):
    # An R matrix: elements in column-major order, descriptor order F.
    header = H.Header(input=H.ArrayDesc.make("float64", (5, 3), H.ORDER_F))
    call.setup(header=header, data=np.arange(15, dtype=np.float64).tobytes())
    call.set_env(monkeypatch)
    a = pyrmap.connect().input
    assert a.shape == (5, 3) and a.flags.f_contiguous and not a.flags.c_contiguous
    assert a[4, 0] == 4.0 and a[0, 1] == 5.0 and a[4, 2] == 14.0
    np.testing.assert_array_equal(a, np.arange(15.0).reshape(5, 3, order="F"))


@pytest.mark.parametrize("dtype", ["int32", "int64", "float32", "float64", "uint8", "bool"])
def test_every_input_dtype(call, monkeypatch, dtype):
    x = (np.arange(-3, 9).reshape(3, 4) % 2 == 0) if dtype == "bool" else \
        np.arange(-3, 9).astype(dtype).reshape(3, 4)
    a = connect(call, monkeypatch, x).input
    assert a.dtype == np.dtype(dtype) and a.shape == (3, 4)
    np.testing.assert_array_equal(a, x)


def test_empty_input(call, monkeypatch):
    a = connect(call, monkeypatch, np.zeros((0,), np.uint8)).input
    assert a.shape == (0,) and a.dtype == np.uint8 and not a.flags.writeable


def test_empty_fortran_matrix_input(call, monkeypatch):
    a = connect(call, monkeypatch, np.zeros((3, 0), np.float64, order="F")).input
    assert a.shape == (3, 0)


def test_scalar_input(call, monkeypatch):
    a = connect(call, monkeypatch, np.array(2.5)).input
    assert a.shape == () and a.ndim == 0 and float(a) == 2.5


def test_payload_that_does_not_fit_is_rejected_before_mapping(call, monkeypatch):
    x = np.arange(10, dtype=np.float64)
    call.setup(x, data=x.tobytes()[:-1])
    call.set_env(monkeypatch)
    with pytest.raises(ProtocolError, match="does not fit segment '%s' of 79 bytes" % call.data):
        pyrmap.connect()


def test_missing_data_segment(call, monkeypatch):
    call.setup(np.arange(3.0))
    os.unlink(call.path(call.data))
    call.set_env(monkeypatch)
    with pytest.raises(FileNotFoundError, match="PYRMAP_DATA"):
        pyrmap.connect()


def test_header_without_input(call, monkeypatch):
    call.setup(None)
    call.set_env(monkeypatch)
    with pytest.raises(ProtocolError, match="no input array"):
        pyrmap.connect()


def test_invalid_header(call, monkeypatch):
    call.setup(np.arange(3.0))
    with open(call.path(call.meta), "r+b") as f:
        f.write(b"garbage!")
    call.set_env(monkeypatch)
    with pytest.raises(ProtocolError, match="bad magic"):
        pyrmap.connect()


def test_connect_refuses_a_header_with_an_outcome(call, monkeypatch):
    run = connect(call, monkeypatch, np.arange(3.0))
    run.write_result(np.arange(2))
    run.close()
    with pytest.raises(ProtocolError, match="state 1 .result ready."):
        pyrmap.connect()


def test_segment_names_with_a_slash(call, monkeypatch):
    call.setup(np.arange(3.0))
    monkeypatch.setenv("PYRMAP_META", "/" + call.meta)  # the shm_open spelling
    monkeypatch.setenv("PYRMAP_DATA", call.data)
    monkeypatch.setenv("PYRMAP_RESULT", call.result)
    assert pyrmap.connect().input.shape == (3,)
    monkeypatch.setenv("PYRMAP_META", "../etc/" + call.meta)
    with pytest.raises(ProtocolError, match="not a valid shared memory segment name"):
        pyrmap.connect()


# ------------------------------------------------------------------ result: dtypes

def special_values(dtype):
    if dtype == "float64":
        bits = np.array([0x7FF8000000000001, 0xFFF0000000000001, 0x7FF4000000000000,
                         0x8000000000000000, 0x7FF0000000000000, 0xFFF0000000000000,
                         0x0000000000000001, 0x3FF0000000000000], dtype=np.uint64)
        return bits.view(np.float64)
    if dtype == "float32":
        bits = np.array([0x7FC00001, 0xFFC12345, 0x7FA00000, 0x80000000, 0x7F800000,
                         0xFF800000, 0x00000001, 0x3F800000], dtype=np.uint32)
        return bits.view(np.float32)
    if dtype == "bool":
        return np.array([True, False, False, True, True, False, True, True])
    info = np.iinfo(dtype)
    return np.array([info.min, info.max, 0, -1 if info.min else 1, 1, 2, 3, 4], dtype=dtype)


@pytest.mark.parametrize("dtype", ["int32", "int64", "float32", "float64", "uint8", "bool"])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_supported_dtypes_round_trip_byte_exact(call, monkeypatch, dtype, layout):
    x = special_values(dtype)
    if layout == "strided":
        x = np.repeat(x, 2)[::2]  # same values, not contiguous
        assert not x.flags.c_contiguous
    desc = stored(call, x, monkeypatch)
    assert (desc.dtype_name, desc.shape, desc.order, desc.offset) == (dtype, (8,), 0, 0)
    h = call.read_header()
    assert h.state == H.STATE_RESULT_READY and h.result == desc
    assert h.worker_pid == os.getpid()
    assert call.result_bytes() == np.ascontiguousarray(x).tobytes()


@pytest.mark.parametrize("src,dst", [("int8", "int32"), ("int16", "int32"), ("uint16", "int32"),
                                     ("uint32", "int64"), ("float16", "float32"),
                                     ("uint64", "int64"), (">f8", "float64"), (">i4", "int32"),
                                     ("<u1", "uint8")])
def test_lossless_widening(call, monkeypatch, src, dst):
    dt = np.dtype(src)
    if dt.kind == "f":
        x = np.array([-1.5, 0.0, np.inf, -np.inf, 65504.0 if dt.itemsize == 2 else 1e300],
                     dtype=dt)
    else:
        info = np.iinfo(dt)
        hi = min(int(info.max), np.iinfo(np.int64).max)
        x = np.array([info.min, 0, 1, hi], dtype=dt)
    x = x.reshape(1, -1)
    desc = stored(call, x, monkeypatch)
    assert desc.dtype_name == dst and desc.shape == x.shape
    got = call.result_array()
    assert got.dtype == np.dtype(dst)
    np.testing.assert_array_equal(got, x.astype(dst))
    assert np.array_equal(got.astype(np.float64), x.astype(np.float64))  # values unchanged


def test_float16_nan_widening(call, monkeypatch):
    stored(call, np.array([np.nan, 1.0], dtype=np.float16), monkeypatch)
    got = call.result_array()
    assert np.isnan(got[0]) and got[1] == 1.0


def test_uint64_overflow_names_the_largest_value(call, monkeypatch):
    x = np.array([1, 2**63, 2**64 - 1, 5], dtype=np.uint64)
    run = connect(call, monkeypatch, np.zeros(1))
    with pytest.raises(ResultTypeError, match="largest value 18446744073709551615"):
        run.write_result(x)
    assert call.read_header().state == 0


@pytest.mark.parametrize("value,type_name,dtype_text", [
    (np.array([1 + 2j]), "numpy.ndarray", "dtype complex128"),
    (3 + 4j, "complex", "dtype complex128"),
    (np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]), "numpy.ndarray", "dtype [("),
    (2**70, "int", "dtype object"),
    (np.zeros(2, dtype=np.longdouble), "numpy.ndarray", "dtype float128"),
])
def test_unstorable_results_name_the_type(call, monkeypatch, value, type_name, dtype_text):
    run = connect(call, monkeypatch, np.zeros(1))
    with pytest.raises(ResultTypeError) as info:
        run.write_result(value)
    message = str(info.value)
    assert "a %s with numpy %s" % (type_name, dtype_text) in message
    assert "int32, int64, float32, float64, uint8, bool" in message
    h = call.read_header()
    assert h.state == 0 and h.result == H.ArrayDesc()


@pytest.mark.parametrize("value,phrase", [
    (np.array([object(), 1], dtype=object),
     "the result: it is an object column holding a Python object at element 1"),
    ({"a": np.array([1 + 2j])}, "element 'a' of the result: numpy dtype complex128 is not supported"),
    ((1, np.array([1], dtype="m8[s]")), "element 2 of the result: numpy dtype timedelta64[s]"),
    ({1: 2}, "its key 1 is a int"),
])
def test_unstorable_tables_name_the_element_and_the_type(call, monkeypatch, value, phrase):
    run = connect(call, monkeypatch, np.zeros(1))
    with pytest.raises(ResultTypeError) as info:
        run.write_result(value)
    assert phrase in str(info.value)
    h = call.read_header()
    assert h.state == 0 and h.result == H.ArrayDesc()


def test_ragged_list_names_the_type(call, monkeypatch):
    run = connect(call, monkeypatch, np.zeros(1))
    with pytest.raises(ResultTypeError) as info:
        run.write_result([[1, 2], [3]])
    message = str(info.value)
    assert "a list that numpy.asarray cannot turn into an array" in message
    assert "int32, int64, float32, float64, uint8, bool" in message
    assert call.read_header().state == 0


def test_python_values(call, monkeypatch, make_call):
    # Scalars are stored as shape (1,): R has no 0-d arrays.
    for value, dtype, shape in [([1, 2, 3], "int64", (3,)), (True, "bool", (1,)),
                                (2.5, "float64", (1,)), ([[1.0, 2.0]], "float64", (1, 2)),
                                (np.float32(1.5), "float32", (1,))]:
        c = make_call()
        desc = stored(c, value, monkeypatch)
        assert (desc.dtype_name, desc.shape) == (dtype, shape)
        np.testing.assert_array_equal(c.result_array(), np.asarray(value).reshape(shape))
        monkeypatch.setattr("pyrmap._meta._ready", None)


# ------------------------------------------------------------------ result: layout

@pytest.mark.parametrize("value", [np.float64(3.25), np.array(3.25), 3.25])
def test_a_scalar_result_is_stored_as_shape_1(call, monkeypatch, value):
    desc = stored(call, value, monkeypatch, flags=1)
    assert (desc.shape, desc.count, desc.nbytes, desc.order) == ((1,), 1, 8, H.ORDER_C)
    assert call.result_bytes() == struct.pack("<d", 3.25)


def test_empty_result_truncates_the_segment(call, monkeypatch):
    run = connect(call, monkeypatch, np.zeros(1))
    with open(call.path(call.result), "wb") as f:
        f.write(b"junk" * 100)
    desc = run.write_result(np.zeros((4, 0), np.int32))
    assert (desc.shape, desc.nbytes) == ((4, 0), 0)
    assert os.path.getsize(call.path(call.result)) == 0
    assert call.read_header().state == 1


def test_larger_result_segment_is_cut_to_size(call, monkeypatch):
    run = connect(call, monkeypatch, np.zeros(1))
    with open(call.path(call.result), "wb") as f:
        f.write(b"\xff" * 1000)
    run.write_result(np.arange(3, dtype=np.uint8))
    assert call.result_bytes() == b"\x00\x01\x02"


def test_fortran_layout_of_a_c_ordered_3d_result(call, monkeypatch):
    x = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    desc = stored(call, x, monkeypatch, flags=H.FLAG_RESULT_ORDER_F)
    assert desc.order == H.ORDER_F and desc.shape == (2, 3, 4)
    assert call.result_bytes() == np.asfortranarray(x).tobytes(order="F")
    np.testing.assert_array_equal(call.result_array(), x)


def test_fortran_layout_of_a_non_contiguous_slice(call, monkeypatch):
    base = np.arange(6 * 7 * 5, dtype=np.int32).reshape(6, 7, 5)
    x = base[::2, 1:, ::-1]
    assert not x.flags.c_contiguous and not x.flags.f_contiguous
    stored(call, x, monkeypatch, flags=1)
    assert call.result_bytes() == np.asfortranarray(x).tobytes(order="F")


def test_c_layout_of_a_fortran_array_without_the_flag(call, monkeypatch):
    x = np.asfortranarray(np.arange(12, dtype=np.int64).reshape(3, 4))
    desc = stored(call, x, monkeypatch, flags=0)
    assert desc.order == H.ORDER_C
    assert call.result_bytes() == x.tobytes(order="C")


@pytest.mark.parametrize("layout, flags, expect", [
    ("C", H.FLAG_RESULT_ORDER_ANY, H.ORDER_C),
    ("F", H.FLAG_RESULT_ORDER_ANY, H.ORDER_F),
    ("F", H.FLAG_RESULT_ORDER_ANY | H.FLAG_RESULT_ORDER_F, H.ORDER_F),
    ("C", H.FLAG_RESULT_ORDER_ANY | H.FLAG_RESULT_ORDER_F, H.ORDER_C),
    ("strided", H.FLAG_RESULT_ORDER_ANY, H.ORDER_C),
    ("strided", H.FLAG_RESULT_ORDER_ANY | H.FLAG_RESULT_ORDER_F, H.ORDER_F),
])
def test_any_order_keeps_the_result_layout(call, monkeypatch, layout, flags, expect):
    base = np.arange(4 * 6, dtype=np.float64).reshape(4, 6)
    x = {"C": base, "F": np.asfortranarray(base), "strided": base[:, ::2]}[layout]
    desc = stored(call, x, monkeypatch, flags=flags)
    assert desc.order == expect
    assert call.result_bytes() == x.tobytes(order="F" if expect == H.ORDER_F else "C")
    np.testing.assert_array_equal(call.result_array(), x)


def test_one_dimensional_result_is_row_major_even_with_the_flag(call, monkeypatch):
    x = np.arange(10, dtype=np.float32)[::-1]
    desc = stored(call, x, monkeypatch, flags=1)
    assert desc.order == H.ORDER_C
    assert call.result_bytes() == x.tobytes()


def test_fortran_input_returned_unchanged_is_written_from_its_buffer(call, monkeypatch):
    x = np.asfortranarray(np.arange(20, dtype=np.float64).reshape(4, 5))
    run = connect(call, monkeypatch, x, flags=1)
    writes = []
    real = os.pwrite

    def spy(fd, data, offset):
        writes.append(np.frombuffer(data, np.uint8))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", spy)
    run.write_result(run.input)
    monkeypatch.undo()
    assert call.result_bytes() == x.tobytes(order="F")
    # The payload went to pwrite straight from the input mapping: no copy.
    assert any(np.shares_memory(w, run.input) for w in writes)


def test_contiguous_result_is_written_from_its_own_memory(call, monkeypatch):
    x = np.arange(1000, dtype=np.int64)
    run = connect(call, monkeypatch, np.zeros(1))
    seen = []
    real = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, d, o: (seen.append(np.frombuffer(d, np.uint8)),
                                                        real(fd, d, o))[1])
    run.write_result(x)
    monkeypatch.undo()
    payload = [s for s in seen if s.nbytes == x.nbytes]
    assert payload and np.shares_memory(payload[0], x)


@pytest.mark.parametrize("flags", [0, 1])
@pytest.mark.parametrize("shape,index", [
    ((37, 11, 5), (slice(None, None, -1), slice(None), slice(1, None))),
    ((3, 200), (slice(None), slice(None, None, 3))),
    ((1000,), (slice(None, None, 7),)),
    ((4, 3, 2, 50), (slice(None), slice(None), slice(None), slice(None, None, 2))),
])
def test_staged_writes_are_bounded_and_correct(call, monkeypatch, flags, shape, index):
    monkeypatch.setattr(_array, "STAGING_BYTES", 64)
    x = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)[index]
    sizes = []
    real = os.pwrite

    def spy(fd, data, offset):
        sizes.append(len(data))
        return real(fd, data, offset)

    run = connect(call, monkeypatch, np.zeros(1), flags=flags)
    monkeypatch.setattr(os, "pwrite", spy)
    run.write_result(x)
    monkeypatch.setattr(os, "pwrite", real)
    want = x.tobytes(order="F" if flags and x.ndim >= 2 else "C")
    assert call.result_bytes() == want
    payload_writes = sizes[:-4]  # then the descriptor, its location, worker pid and state
    assert max(payload_writes) <= 64 and sum(payload_writes) == len(want)


def test_staged_widening_large(call, monkeypatch):
    monkeypatch.setattr(_array, "STAGING_BYTES", 4096)
    x = (np.arange(300 * 200, dtype=np.int64) % 251).astype(np.uint16).reshape(300, 200)
    stored(call, x, monkeypatch, flags=1)
    got = call.result_array()
    assert got.dtype == np.int32 and got.flags.f_contiguous
    np.testing.assert_array_equal(got, x)


def test_partial_pwrite_and_call_cap(call, monkeypatch):
    monkeypatch.setattr(_array, "PWRITE_CAP", 5)
    real = os.pwrite
    calls = []

    def short(fd, data, offset):
        if os.readlink("/proc/self/fd/%d" % fd).endswith(call.result):
            calls.append(len(data))
        return real(fd, bytes(data)[:3], offset)  # the kernel may write less

    run = connect(call, monkeypatch, np.zeros(1))
    monkeypatch.setattr(os, "pwrite", short)
    x = np.arange(10, dtype=np.int32)
    run.write_result(x)
    monkeypatch.setattr(os, "pwrite", real)
    assert call.result_bytes() == x.tobytes()
    assert max(calls) <= 5 and len(calls) == 14  # 40 bytes, 3 at a time
    assert call.read_header().result.shape == (10,)  # meta writes were short too


# ------------------------------------------------------------------ result: ordering and failures

def test_state_stays_0_when_the_payload_write_fails(call, monkeypatch):
    run = connect(call, monkeypatch, np.zeros(1))

    def half_then_fail(fd, arr, code, fortran):
        os.pwrite(fd, b"\x01" * 4, 0)
        raise OSError(errno.EIO, "simulated write failure")

    with pytest.raises(OSError, match="simulated write failure"):
        run.write_result(np.arange(4, dtype=np.int32), _write=half_then_fail)
    h = call.read_header()
    assert h.state == 0 and h.result == H.ArrayDesc()
    try:
        raise ValueError("after the failed write")
    except ValueError as e:
        run.fail(e)
    h = call.read_header()
    assert (h.state, h.error_type, h.result) == (2, "ValueError", H.ArrayDesc())


def test_state_is_written_last(call, monkeypatch):
    run = connect(call, monkeypatch, np.zeros(1))
    order = []
    real = os.pwrite

    def spy(fd, data, offset):
        order.append((os.path.basename(os.readlink("/proc/self/fd/%d" % fd)), offset, len(data)))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", spy)
    run.write_result(np.arange(6, dtype=np.float64))
    monkeypatch.setattr(os, "pwrite", real)
    assert order[0] == (call.result, 0, 48)
    assert order[-1] == (call.meta, H.OFF_STATE, 4)
    assert (call.meta, H.OFF_RESULT, H.ARRAY_DESC_SIZE) in order[1:-1]


def test_no_space_in_dev_shm(call, monkeypatch):
    run = connect(call, monkeypatch, np.zeros(1))

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError) as info:
        run.write_result(np.zeros(1000))
    assert info.value.errno == errno.ENOSPC
    assert "no space in /dev/shm for the result of 8000 bytes: No space left on device" \
        in str(info.value)
    assert call.read_header().state == 0


def test_file_size_limit_is_not_called_no_space(call, monkeypatch):
    run = connect(call, monkeypatch, np.zeros(1))

    def too_big(fd, offset, length):
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))

    monkeypatch.setattr(os, "posix_fallocate", too_big)
    with pytest.raises(OSError) as info:
        run.write_result(np.zeros(1000))
    assert info.value.errno == errno.EFBIG
    assert "exceeds the file size limit of this process" in str(info.value)
    assert "no space" not in str(info.value)
    assert call.read_header().state == 0


def test_fallocate_reserves_the_exact_size(call, monkeypatch):
    run = connect(call, monkeypatch, np.zeros(1))
    seen = []
    real = os.posix_fallocate
    monkeypatch.setattr(os, "posix_fallocate", lambda fd, o, n: (seen.append((o, n)),
                                                                 real(fd, o, n))[1])
    run.write_result(np.zeros((3, 5), np.float32))
    assert seen == [(0, 60)]
    assert os.path.getsize(call.path(call.result)) == 60


def test_second_result_is_refused(call, monkeypatch):
    run = connect(call, monkeypatch, np.zeros(1))
    run.write_result(np.ones(2))
    with pytest.raises(ProtocolError, match="already stored"):
        run.write_result(np.ones(3))
    assert call.read_header().result.shape == (2,)


def test_missing_result_segment(call, monkeypatch):
    run = connect(call, monkeypatch, np.zeros(1))
    os.unlink(call.path(call.result))
    with pytest.raises(FileNotFoundError, match="PYRMAP_RESULT"):
        run.write_result(np.ones(2))
    assert call.read_header().state == 0
