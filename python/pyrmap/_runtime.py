"""The run: connecting to the runner's segments, the decorator, recording.

A run is one pyrmap call as seen from Python: the runner (the ``pyrmap``
command or R's run_python) created the segments, wrote the input and the
header (state 0), and started this interpreter through pyrmap._bootstrap with
PYRMAP_META / PYRMAP_DATA / PYRMAP_RESULT / PYRMAP_READY_FD set.

Per run, exactly one outcome is recorded in the header: a result (payload,
then descriptor, then state 1 last) or an error (type and traceback, then
state 2). ``connect`` refuses a header that already holds an outcome, so a
second ``process()`` in the same run is an error instead of a silent
overwrite. The runner owns and removes the segments; nothing here unlinks.

numpy is imported only when a run is connected, so ``import pyrmap`` works
in an interpreter without numpy (the bootstrap then reports it).
"""

from __future__ import annotations

import functools
import os
import sys

from . import _header as H
from . import _meta
from ._errors import NotConnectedError, ProtocolError, ResultTypeError

# True while a pool worker loads a script (pyrmap._worker): a decorated
# function called without arguments at the script's top level is then not
# run (the worker calls it for every request instead).
loading_in_worker = False

# The exception this process last recorded into a header (see record_error);
# the bootstrap re-records it with the full traceback once it has unwound.
_recorded = None


def np_may_share_memory(a, b) -> bool:
    import numpy as np

    return bool(np.may_share_memory(a, b))


def _overlaps(arr, span) -> bool:
    """Whether array ``arr`` may lie in the block at span (address, size)."""
    if span is None or arr.size == 0:
        return False
    import numpy as np

    lo, hi = np.byte_bounds(arr)
    return lo < span[0] + span[1] and span[0] < hi


def recorded_exception():
    return _recorded


def record_error(meta: _meta.Meta, exc: BaseException) -> None:
    """Writes exc's type and trimmed traceback into ``meta``, state 2."""
    global _recorded
    meta.write_error(_meta.exception_type_name(exc), _meta.format_exception(exc))
    _recorded = exc


class Connection:
    """One connected run. ``input`` is the read-only, zero-copy input array;
    ``write_result(x)`` stores the result (state 1), ``fail(exc)`` records an
    error (state 2). Usable as a context manager: an exception leaving the
    ``with`` block is recorded, then propagates."""

    def __init__(self, meta_name: str, data_name: str, result_name: str):
        self._reader = None  # the input's table (pyrmap._frames.Reader), if it is one
        self._span = None    # (address, size) of the input's table block
        self.meta_name = meta_name
        self.data_name = data_name
        self.result_name = result_name
        self._input_fd = -1  # writable descriptor of the input's segment (flag bit 2)
        self._meta = _meta.Meta(meta_name)
        try:
            self.header = self._meta.read()
            if self.header.state != H.STATE_INPUT_READY:
                raise ProtocolError(
                    "the header in segment '%s' is in state %d (%s), not 0 (input ready): "
                    "this run already has its outcome; the @process_via_mmap function may "
                    "be called without arguments only once per run"
                    % (meta_name, self.header.state, H.STATE_NAMES[self.header.state]))
            self._meta.set_worker_pid()
            from . import _array

            # The runner hands the input's segment over as a descriptor with
            # the ready byte (its name may be gone); the name is the
            # fallback. When the segment is this script's alone (flag bit 2)
            # the descriptor is writable and a copy is kept: the result may
            # then go into the input's pages instead of new ones.
            fd = _meta.take_input_fd() if data_name == os.environ.get(_meta.ENV_DATA) else -1
            if fd >= 0 and self.header.flags & H.FLAG_IN_PLACE:
                self._input_fd = os.dup(fd)
            if self.header.input_kind == H.KIND_TABLE:
                self._open_table(data_name, fd)
            else:
                self.input = _array.map_input(data_name, self.header.input, fd)
        except BaseException:
            self._close_input_fd()
            self._meta.close()
            raise
        self.result = None  # the stored result's ArrayDesc, once stored

    def _open_table(self, data_name, fd):
        from . import _array, _frames, _table

        desc = self.header.input
        mm = _array.map_block(data_name, desc, fd)
        where = "the input of segment '%s'" % data_name
        table = _table.decode(memoryview(mm)[desc.offset:desc.offset + desc.nbytes], where)
        self._reader = _frames.reader_for_block(mm, desc.offset, table, self.header.flags, where)
        self._span = _frames.input_span(mm, desc.offset, desc.nbytes)
        self._table_mm = mm
        self.input = self._reader.root()

    def call(self, func):
        """Calls ``func`` with the input: a table whose root is a named list
        as keyword arguments, an unnamed list as positional arguments,
        anything else as the one argument."""
        if self._reader is not None:
            e = self._reader.t.entries[0]
            from . import _table

            if e.kind == _table.KIND_LIST:
                return func(**self.input) if e.flags & _table.ENTRY_NAMED else func(*self.input)
        return func(self.input)

    def _write_table(self, value) -> H.ArrayDesc:
        from . import _frames

        if self.header.version_major < 2:
            raise ResultTypeError(
                "cannot store the result: %s needs a table, which the caller cannot read (it "
                "speaks exchange protocol %d.%d; tables came with 2.0): update the caller, or "
                "return one numpy array" % (_frames._describe(value), self.header.version_major,
                                             self.header.version_minor))
        span = self._span if self.header.flags & H.FLAG_INPUT_REFS else None
        writer = _frames.Writer(self.header.flags, span)
        writer.add(value)
        fd = _meta.open_segment(self.result_name, os.O_RDWR, _meta.ENV_RESULT)
        try:
            desc = writer.store(_frames.FdSink(fd))
        finally:
            os.close(fd)
        # The input goes only now: the writer read it (or refers to it).
        self.release_input()
        self._close_input_fd()
        self._meta.write_result_desc(desc, H.RESULT_IN_RESULT_SEGMENT, H.KIND_TABLE)
        self._meta.set_worker_pid()
        self._meta.set_state(H.STATE_RESULT_READY)  # last: it publishes the result
        self.result = desc
        return desc

    def write_result(self, value, _write=None) -> H.ArrayDesc:
        """Stores ``value`` as the run's result and returns its descriptor.
        Raises ResultTypeError for a value the exchange cannot hold and
        OSError when /dev/shm has no room; the header then keeps state 0."""
        from . import _array, _frames

        if self.result is not None:
            raise ProtocolError("this run's result was already stored")
        if _frames.plan_size_hint(value):
            return self._write_table(value)
        arr, code = _array.as_storable(value)
        # Unless the result is (a view of) the input, the input is let go of
        # first: its memory is freed while the result is written, and, when
        # the runner allowed it and nothing else still views the input (an
        # array the script kept), the result is written over it.
        if self._reader is not None:
            shares = _overlaps(arr, self._span)
        else:
            shares = self.input is not None and np_may_share_memory(arr, self.input)
        unviewed = False
        if not shares:
            unviewed = self.release_input()
        in_place = self._input_fd >= 0 and not shares and unviewed
        if in_place:
            desc = _array.store_array(self._input_fd, arr, code, self.header.flags, _write)
            location = H.RESULT_IN_INPUT_SEGMENT
        else:
            fd = _meta.open_segment(self.result_name, os.O_RDWR, _meta.ENV_RESULT)
            try:
                desc = _array.store_array(fd, arr, code, self.header.flags, _write)
            finally:
                os.close(fd)
            location = H.RESULT_IN_RESULT_SEGMENT
        self._close_input_fd()
        self._meta.write_result_desc(desc, location)
        self._meta.set_worker_pid()
        self._meta.set_state(H.STATE_RESULT_READY)  # last: it publishes the result
        self.result = desc
        return desc

    def release_input(self, keep=None) -> bool:
        """Lets go of the input: its mapping is closed in the background once
        nothing views it, unless ``keep`` (the result) may share its memory.
        ``self.input`` is None afterwards. Returns True when nothing else
        refers to the input's mapping any more (no array the script kept,
        no buffer of it): only then may its pages be written over."""
        from . import _array

        if self._reader is not None:
            # A table: its views are the script's objects; the mapping goes
            # when the last of them does (no writing over it).
            self.input = self._reader = None
            mm, self._table_mm = self._table_mm, None
            if mm is not None:
                _array.close_in_background(mm)
            return False
        mm = _array.detach_input(self.input, keep) if self.input is not None else None
        self.input = None  # the last reference here: no array holds `mm` now
        if mm is None:
            return keep is None  # no mapping (an empty input), or `keep` shares it
        # Every array, memoryview or buffer export of the mapping holds a
        # reference to it; here only `mm` and getrefcount's argument do.
        unviewed = sys.getrefcount(mm) <= 2
        _array.close_in_background(mm)
        return unviewed

    def fail(self, exc: BaseException) -> None:
        """Records ``exc`` as the run's error (state 2)."""
        record_error(self._meta, exc)

    def read_header(self) -> H.Header:
        return self._meta.read()

    def _close_input_fd(self) -> None:
        if self._input_fd >= 0:
            os.close(self._input_fd)
            self._input_fd = -1

    def close(self) -> None:
        """Closes the meta segment. The input array stays valid."""
        self._close_input_fd()
        self._meta.close()

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        try:
            if exc is not None and not isinstance(exc, SystemExit) and self._meta.fd >= 0:
                self.fail(exc)
        finally:
            self.close()
        return False


_NOT_IN_RUN = (
    "this process was not started by a pyrmap runner ({var} is not set): start the "
    "script with `pyrmap run SCRIPT` or R's run_python(), or call the function with an "
    "array to use it directly")


def connect(meta: str = None, data: str = None, result: str = None) -> Connection:
    """Connects to the current run: segment names default to PYRMAP_META,
    PYRMAP_DATA and PYRMAP_RESULT. Waits for the runner's ready byte first
    (PYRMAP_READY_FD); raises NotConnectedError outside a run or when the
    runner went away, ProtocolError for an invalid header or input segment."""
    env = os.environ
    meta = meta or env.get(_meta.ENV_META)
    if not meta:
        raise NotConnectedError(_NOT_IN_RUN.format(var=_meta.ENV_META))
    data = data or env.get(_meta.ENV_DATA)
    result = result or env.get(_meta.ENV_RESULT)
    for var, value in ((_meta.ENV_DATA, data), (_meta.ENV_RESULT, result)):
        if not value:
            raise ProtocolError("%s is set but %s is not; both come from the pyrmap runner"
                                % (_meta.ENV_META, var))
    _meta.wait_ready(required=True)
    return Connection(meta, data, result)


def run_function(func):
    """Connects, calls ``func(input)``, stores what it returns and returns
    it. An exception from any step is recorded (state 2) and re-raised;
    SystemExit is left to the bootstrap."""
    run = connect()
    try:
        value = run.call(func)
        run.write_result(value)
    except SystemExit:
        raise
    except BaseException as e:
        try:
            run.fail(e)
        except Exception as failure:  # the original error matters more
            print("pyrmap: could not record the error in the header: %s" % failure,
                  file=sys.stderr)
        raise
    finally:
        run.close()
    return value


def process_via_mmap(func=None):
    """Decorator for the user's function ``f(array) -> array``.

    Calling the decorated function with no arguments runs it on the run's
    input and stores its return value as the run's result (and returns it).
    Calling it with arguments just calls ``f``, so it stays testable without
    a runner. Usable as ``@process_via_mmap`` and ``@process_via_mmap()``.
    """
    if func is None:
        return process_via_mmap
    if not callable(func):
        raise TypeError("process_via_mmap decorates a function, not %s"
                        % type(func).__name__)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if args or kwargs:
            return func(*args, **kwargs)
        if loading_in_worker:
            return None
        if not os.environ.get(_meta.ENV_META):
            raise NotConnectedError(
                "%s() was called without an array, but " % getattr(func, "__name__", "function")
                + _NOT_IN_RUN.format(var=_meta.ENV_META))
        return run_function(func)

    wrapper.__pyrmap_function__ = func
    return wrapper
