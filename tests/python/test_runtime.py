"""The decorator, connect(), the ready pipe and error recording, in-process."""

import os
import threading
import time

import numpy as np
import pytest

import pyrmap
from pyrmap import NotConnectedError, process_via_mmap
from pyrmap import _header as H
from pyrmap import _meta


def test_public_api():
    # The release is defined once, in src/version.h.
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "src", "version.h")) as f:
        assert '#define PYRMAP_VERSION "%s"\n' % pyrmap.__version__ in f.read()
    for name in ("process_via_mmap", "connect", "ProtocolError", "ResultTypeError",
                 "NotConnectedError", "PyrmapError", "Connection"):
        assert name in pyrmap.__all__ and hasattr(pyrmap, name)
    assert issubclass(pyrmap.ResultTypeError, TypeError)
    assert issubclass(pyrmap.ProtocolError, pyrmap.PyrmapError)
    assert repr(pyrmap.ProtocolError("x")) == "ProtocolError('x')"
    assert pyrmap.ProtocolError.__module__ == "pyrmap"


def test_decorator_forms_call_through_with_arguments():
    @process_via_mmap
    def double(data):
        """Doubles."""
        return data * 2

    @process_via_mmap()
    def add(data, k=1):
        return data + k

    assert double.__name__ == "double" and double.__doc__ == "Doubles."
    assert double.__pyrmap_function__(3) == 6
    np.testing.assert_array_equal(double(np.arange(3)), [0, 2, 4])
    assert add(np.int64(1), k=5) == 6
    assert add(data=1) == 2
    with pytest.raises(TypeError):
        process_via_mmap(42)


def test_no_arguments_outside_a_run():
    @process_via_mmap
    def process(data):
        return data

    with pytest.raises(NotConnectedError) as info:
        process()
    message = str(info.value)
    assert "process() was called without an array" in message
    assert "pyrmap run" in message and "run_python" in message
    assert "PYRMAP_META is not set" in message
    with pytest.raises(NotConnectedError, match="PYRMAP_META"):
        pyrmap.connect()


def test_connect_needs_all_three_names(call, monkeypatch):
    call.setup(np.zeros(2))
    monkeypatch.setenv("PYRMAP_META", call.meta)
    with pytest.raises(pyrmap.ProtocolError, match="PYRMAP_DATA"):
        pyrmap.connect()


def test_wrapper_runs_stores_and_returns(call, monkeypatch):
    x = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(3, 2))
    call.setup(x, flags=1)
    call.set_env(monkeypatch)

    @process_via_mmap
    def process(data):
        assert not data.flags.writeable
        return data.T @ data

    got = process()
    np.testing.assert_array_equal(got, x.T @ x)
    h = call.read_header()
    assert h.state == 1 and h.result.describe() == "float64[2, 2] (column-major)"
    np.testing.assert_array_equal(call.result_array(), x.T @ x)


def test_wrapper_records_the_error_and_reraises(call, monkeypatch):
    call.setup(np.zeros(2))
    call.set_env(monkeypatch)

    def helper(data):
        raise KeyError("missing column")

    @process_via_mmap
    def process(data):
        return helper(data)

    with pytest.raises(KeyError):
        process()
    h = call.read_header()
    assert (h.state, h.error_type) == (2, "KeyError")
    assert h.error_text.startswith("Traceback (most recent call last):\n")
    assert "in process\n" in h.error_text and "in helper\n" in h.error_text
    assert h.error_text.endswith("KeyError: 'missing column'\n")
    assert "pyrmap/_runtime.py" not in h.error_text and "pyrmap/" not in h.error_text
    assert h.worker_pid == os.getpid() and h.result == H.ArrayDesc()


def test_unstorable_result_through_the_wrapper(call, monkeypatch):
    call.setup(np.zeros(2))
    call.set_env(monkeypatch)

    @process_via_mmap
    def process(data):
        return {"not": 1j}

    with pytest.raises(pyrmap.ResultTypeError):
        process()
    h = call.read_header()
    assert h.error_type == "pyrmap.ResultTypeError"
    assert ("pyrmap.ResultTypeError: cannot store element 'not' of the result: numpy dtype "
            "complex128 is not supported") in h.error_text


def test_connect_context_manager_records_errors(call, monkeypatch):
    call.setup(np.arange(3, dtype=np.int32))
    call.set_env(monkeypatch)
    with pytest.raises(ZeroDivisionError):
        with pyrmap.connect() as run:
            assert run.input.sum() == 3
            1 / 0
    h = call.read_header()
    assert (h.state, h.error_type) == (2, "ZeroDivisionError")
    assert "1 / 0" in h.error_text


def test_connect_context_manager_success(call, monkeypatch):
    call.setup(np.arange(3, dtype=np.int32))
    call.set_env(monkeypatch)
    with pyrmap.connect() as run:
        desc = run.write_result(run.input[::-1])
    assert desc.shape == (3,)
    np.testing.assert_array_equal(call.result_array(), [2, 1, 0])


# ------------------------------------------------------------------ ready pipe

def test_waits_for_the_ready_byte(call, monkeypatch):
    call.setup(None, create_header=False)
    r, w = os.pipe()
    monkeypatch.setenv("PYRMAP_READY_FD", str(r))
    call.set_env(monkeypatch)
    x = np.arange(5, dtype=np.int64)

    def runner():
        # The header and the payload are written only now, then the byte.
        time.sleep(0.3)
        call.create(call.meta, H.encode(H.Header(input=H.ArrayDesc.make("int64", (5,)))))
        with open(call.path(call.data), "wb") as f:
            f.write(x.tobytes())
        os.write(w, b"\x01")

    t = threading.Thread(target=runner)
    start = time.monotonic()
    t.start()
    try:
        run = pyrmap.connect()
    finally:
        t.join()
        os.close(w)
    assert time.monotonic() - start >= 0.25
    np.testing.assert_array_equal(run.input, x)
    assert _meta._ready is True  # waited once; the read end is closed
    run.close()


def test_runner_gone_before_the_input_was_ready(call, monkeypatch):
    call.setup(np.zeros(1))
    r, w = os.pipe()
    os.close(w)
    monkeypatch.setenv("PYRMAP_READY_FD", str(r))
    call.set_env(monkeypatch)
    with pytest.raises(NotConnectedError,
                       match="the pyrmap runner went away before the input was ready"):
        pyrmap.connect()
    assert call.read_header().state == 0  # nothing written


def test_bad_ready_fd(call, monkeypatch):
    call.setup(np.zeros(1))
    call.set_env(monkeypatch)
    monkeypatch.setenv("PYRMAP_READY_FD", "three")
    with pytest.raises(pyrmap.ProtocolError, match="not a file descriptor number"):
        pyrmap.connect()
    monkeypatch.setattr(_meta, "_ready", None)
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    monkeypatch.setenv("PYRMAP_READY_FD", str(r))
    with pytest.raises(pyrmap.ProtocolError, match="cannot be read"):
        pyrmap.connect()


# ------------------------------------------------------------------ tracebacks

class CustomError(Exception):
    pass


def test_exception_type_names():
    assert _meta.exception_type_name(ValueError()) == "ValueError"
    assert _meta.exception_type_name(CustomError()) == "test_runtime.CustomError"
    assert _meta.exception_type_name(pyrmap.ProtocolError()) == "pyrmap.ProtocolError"
    assert _meta.exception_type_name(np.linalg.LinAlgError()) == "numpy.linalg.LinAlgError"


def test_format_exception_drops_pyrmap_frames_but_keeps_chains():
    def user():
        try:
            {}["k"]
        except KeyError as e:
            raise RuntimeError("wrapped") from e

    @process_via_mmap
    def process(data):
        return user()

    try:
        process(1)
    except RuntimeError as e:
        text = _meta.format_exception(e)
    assert "The above exception was the direct cause" in text
    assert text.count("Traceback (most recent call last):") == 2
    assert "pyrmap/_runtime.py" not in text
    assert text.endswith("RuntimeError: wrapped\n")


def test_format_exception_without_user_frames():
    try:
        _meta.segment_path("a/b")
    except pyrmap.ProtocolError as e:
        text = _meta.format_exception(e)
    # Only test-file frames remain above pyrmap's; pyrmap's own are gone.
    assert "_meta.py" not in text
    assert text.endswith("is not a valid shared memory segment name\n")


# ------------------------------------------------------------------ the data descriptor

def _send_ready(monkeypatch, fd):
    """As the runner does: the ready byte, with `fd` passed along (SCM_RIGHTS)."""
    import array
    import socket

    ours, theirs = socket.socketpair()
    ours.sendmsg([b"1"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
    ours.close()
    monkeypatch.setattr(pyrmap._meta, "_ready", None)
    monkeypatch.setenv("PYRMAP_READY_FD", str(theirs.detach()))


def test_input_is_mapped_from_the_descriptor_sent_with_the_ready_byte(call, monkeypatch):
    x = np.arange(12.0).reshape(3, 4, order="F")
    call.setup(x)
    call.set_env(monkeypatch)
    fd = os.open(call.path(call.data), os.O_RDONLY)
    _send_ready(monkeypatch, fd)
    os.close(fd)
    os.unlink(call.path(call.data))  # the runner removes the name early
    call.made.remove(call.data)
    run = pyrmap.connect()
    with run:
        np.testing.assert_array_equal(run.input, x)
        assert run.input.flags.f_contiguous and not run.input.flags.writeable
        assert pyrmap._meta.take_input_fd() == -1  # handed out once, then closed


@pytest.mark.parametrize("allowed", [True, False])
def test_the_result_goes_into_the_input_segment_when_the_runner_allows(call, monkeypatch, allowed):
    x = np.arange(1000, dtype=np.float64)
    call.setup(x, flags=H.FLAG_IN_PLACE if allowed else 0)
    call.set_env(monkeypatch)
    fd = os.open(call.path(call.data), os.O_RDWR if allowed else os.O_RDONLY)
    _send_ready(monkeypatch, fd)
    os.close(fd)
    run = pyrmap.connect()
    with run:
        desc = run.write_result(run.input[:10] * 3.0)
    h = call.read_header()
    assert h.state == 1 and h.result == desc
    with open(call.path(call.data), "rb") as f:
        data = f.read()
    if allowed:
        assert h.result_location == H.RESULT_IN_INPUT_SEGMENT
        assert data == (x[:10] * 3.0).tobytes()  # written over the input, cut to size
        assert call.result_bytes() == b""
    else:
        assert h.result_location == H.RESULT_IN_RESULT_SEGMENT
        assert data == x.tobytes()  # the input is untouched
        assert call.result_bytes() == (x[:10] * 3.0).tobytes()


def test_a_result_that_is_a_view_of_the_input_never_overwrites_it(call, monkeypatch):
    x = np.arange(100, dtype=np.int32)
    call.setup(x, flags=H.FLAG_IN_PLACE)
    call.set_env(monkeypatch)
    fd = os.open(call.path(call.data), os.O_RDWR)
    _send_ready(monkeypatch, fd)
    os.close(fd)
    run = pyrmap.connect()
    with run:
        run.write_result(run.input[1:])  # shifted onto itself would corrupt it
    h = call.read_header()
    assert h.result_location == H.RESULT_IN_RESULT_SEGMENT
    assert call.result_bytes() == x[1:].tobytes()


def _input_mappings(name):
    with open("/proc/self/maps") as f:
        return [line for line in f if name in line]


def test_the_input_is_unmapped_before_the_result_is_stored(call, monkeypatch):
    x = np.arange(1 << 16, dtype=np.float64)
    call.setup(x)
    call.set_env(monkeypatch)
    run = pyrmap.connect()
    with run:
        assert _input_mappings(call.data)
        result = run.input * 2
        run.release_input(result)
        assert run.input is None
        deadline = time.monotonic() + 30  # closed in a background thread
        while _input_mappings(call.data) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not _input_mappings(call.data)
        run.write_result(result)
    np.testing.assert_array_equal(call.result_array(), x * 2)


@pytest.mark.parametrize("kept", ["the input itself", "a view of it", "a view held elsewhere"])
def test_the_input_stays_mapped_while_something_views_it(call, monkeypatch, kept):
    x = np.arange(100, dtype=np.int32)
    call.setup(x)
    call.set_env(monkeypatch)
    run = pyrmap.connect()
    held = []
    with run:
        if kept == "the input itself":
            result = run.input
        elif kept == "a view of it":
            result = run.input[::2]
        else:
            held.append(run.input[10:20])
            result = np.zeros(3)
        run.release_input(result)
        time.sleep(0.1)
        assert _input_mappings(call.data)  # still mapped: nothing breaks
        run.write_result(result)
    if kept != "a view held elsewhere":
        np.testing.assert_array_equal(call.result_array(), np.asarray(result))
    np.testing.assert_array_equal(held[0] if held else x[:1], x[10:20] if held else x[:1])
