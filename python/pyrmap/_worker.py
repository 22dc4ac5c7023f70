"""A warm worker of a pyrmap pool (src/pool.h is the other side).

The pool starts this interpreter once:

    <python> -c "from pyrmap._worker import main; main()"

with a SOCK_SEQPACKET control socket (PYRMAP_WORKER_FD) and its *area*
(PYRMAP_AREA_FD, PYRMAP_AREA_SIZE bytes), a segment both sides keep mapped.
The worker greets the pool with one message b"h", imports numpy, then
answers one request per call with one reply (layouts: src/pool_message.h and
docs/protocol.md, "Warm workers"):

- each script is loaded once as a module (not as ``__main__``: its
  ``if __name__ == "__main__":`` block does not run) and reloaded when its
  file changes; the function called is the one named in the request, else
  the script's one ``@process_via_mmap`` function;
- the input is a read-only numpy array: a private copy of the bytes in the
  area for small inputs (so an array the script keeps never changes under
  it), a read-only view of the passed segment for large ones;
- the stages of a pipeline run one after the other in this process, each
  result handed to the next stage without leaving it;
- results that fit go into the area's result region; larger ones into an
  unnamed segment (O_TMPFILE in PYRMAP_SEGMENT_DIR) passed back;
- an exception is a reply (its type and traceback): the worker keeps serving.

State a script keeps in its module between calls stays (that is the point of
a warm worker); so does anything it imported. The end of the control socket
means the pool is gone: the worker kills its process group and exits.
"""

import os
import sys

from . import _meta

import struct

_REQ_FIXED = 256
_REPLY_FIXED = 32
_MAX_MESSAGE = 64 * 1024
_MAX_FDS = 4

# The fixed part of a request after its magic, and an ArrayDesc (header.h:
# dtype, order, ndim, count, offset, nbytes, shape[16]), packed directly:
# the worker's per-call cost is what a warm pool is for.
_REQUEST = struct.Struct("<HHQIIIIIIQQ")
_DESC = struct.Struct("<III4xQQQ8x16Q16x")  # 192 bytes
_REPLY = struct.Struct("<4sHHQIIII")
_RESULT_TAIL = struct.Struct("<IIII")  # location, descriptor index, kind, reserved
_VERSION = 2
# Reply flags (the u32 at offset 28).
REPLY_INPUT_RELEASED = 1  # the worker holds nothing of the call's passed input segment
_U32 = struct.Struct("<I")

# Bound by main() once numpy is imported (imports inside the per-call
# functions would cost microseconds each).
np = None
_array = None
H = None
_frames = None
_table = None


def main():
    """The worker's loop; never returns."""
    try:
        sock_fd = int(os.environ["PYRMAP_WORKER_FD"])
        area_fd = int(os.environ["PYRMAP_AREA_FD"])
        area_size = int(os.environ["PYRMAP_AREA_SIZE"])
    except (KeyError, ValueError) as e:
        sys.stderr.write("pyrmap worker: started without its pool (%s)\n" % e)
        raise SystemExit(2)
    import _socket

    sock = _socket.socket(fileno=sock_fd)
    try:
        sock.send(b"h")
    except OSError:
        os._exit(1)
    from . import _bootstrap

    problem = _bootstrap._import_numpy()
    if problem is None:
        _bind()
    os.register_at_fork(before=_meta._before_fork, after_in_child=_meta._die_with_parent)
    worker = Worker(sock, area_fd, area_size, problem)
    if problem is None:
        worker.warnings.install()
    try:
        worker.serve()
    finally:
        _end()


def _bind():
    global np, _array, H, _frames, _table
    import numpy

    from . import _array as array_module
    from . import _frames as frames_module
    from . import _header as header_module
    from . import _table as table_module

    np, _array, H = numpy, array_module, header_module
    _frames, _table = frames_module, table_module


def _end():
    """The pool is gone: this process and its group end now."""
    import signal

    sys.stdout.flush()
    sys.stderr.flush()
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(0)


def _string(buf, pos):
    (n,) = _U32.unpack_from(buf, pos)
    pos += 4
    if pos + n > len(buf):
        raise ValueError("a string runs past the end of the message")
    return bytes(buf[pos:pos + n]).decode("utf-8", "surrogateescape"), pos + n


def _pack_string(text):
    raw = text.encode("utf-8", "backslashreplace")
    return _U32.pack(len(raw)) + raw


class Desc:
    """An ArrayDesc, decoded and checked (the fields the worker uses)."""

    __slots__ = ("dtype", "order", "shape", "count", "offset", "nbytes")

    def __init__(self, dtype, order, shape, count, offset, nbytes):
        self.dtype, self.order, self.shape = dtype, order, shape
        self.count, self.offset, self.nbytes = count, offset, nbytes

    @classmethod
    def unpack(cls, buf, pos):
        f = _DESC.unpack_from(buf, pos)
        dtype, order, ndim, count, offset, nbytes = f[:6]
        if dtype not in _array.NUMPY_DTYPES or order > 1 or ndim > 16:
            raise ValueError("an invalid array descriptor (dtype %d, order %d, ndim %d)"
                             % (dtype, order, ndim))
        shape = f[6:6 + ndim]
        n = 1
        for d in shape:
            n *= d
        if n != count or nbytes != count * _array.NUMPY_DTYPES[dtype].itemsize:
            raise ValueError("an array descriptor whose count or nbytes does not match its shape")
        return cls(dtype, order, shape, count, offset, nbytes)

    @classmethod
    def make(cls, code, shape, order, offset):
        count = 1
        for d in shape:
            count *= d
        return cls(code, order, tuple(shape), count, offset,
                   count * _array.NUMPY_DTYPES[code].itemsize)

    def pack(self):
        shape = tuple(self.shape) + (0,) * (16 - len(self.shape))
        return _DESC.pack(self.dtype, self.order, len(self.shape), self.count, self.offset,
                          self.nbytes, *shape)


class Request:
    """A decoded request."""

    def __init__(self, buf):
        if len(buf) < _REQ_FIXED or buf[:4] != b"PYRQ":
            raise ValueError("not a request")
        (version, kind, self.call_id, self.flags, self.input_location, nscripts, nargs, keep,
         self.input_kind, self.result_offset, self.result_capacity) = _REQUEST.unpack_from(buf, 4)
        if version != _VERSION or kind != 1 or self.input_kind > 1:
            raise ValueError("request version %d kind %d" % (version, kind))
        self.keep = bool(keep)
        self.input = Desc.unpack(buf, 64)
        pos = _REQ_FIXED
        self.scripts = []
        for _ in range(nscripts):
            path, pos = _string(buf, pos)
            function, pos = _string(buf, pos)
            self.scripts.append((path, function))
        self.args = []
        for _ in range(nargs):
            arg, pos = _string(buf, pos)
            self.args.append(arg)


class ScriptNotLoaded(Exception):
    """The script cannot be used by a worker (no function to call)."""


class Worker:
    def __init__(self, sock, area_fd, area_size, numpy_problem):
        import mmap

        self.sock = sock
        self.numpy_problem = numpy_problem
        self.area = mmap.mmap(area_fd, area_size, flags=mmap.MAP_SHARED,
                              prot=mmap.PROT_READ | mmap.PROT_WRITE)
        os.close(area_fd)
        self.scripts = {}  # path -> (file key, module)
        self.span = None    # (address, size) of the call's input block, when results may refer to it
        # (writable descriptor, mapping) of a call's input segment that the
        # pool handed over for the result (flag bit 2), until the result is stored
        self.own_input = None
        self.own_used = False  # the result went into own_input's segment
        # The mapping of the call's input segment (passed by descriptor),
        # until the call ends: see let_go_of_input.
        self.input_map = None
        self.warnings = _meta.WarningSink()
        self.segment_dir = os.environ.get("PYRMAP_SEGMENT_DIR") or _meta.SHM_DIR

    # ---------------------------------------------------------------- loop

    def serve(self):
        import _socket

        while True:
            try:
                msg, ancillary, _, _ = self.sock.recvmsg(_MAX_MESSAGE, _socket.CMSG_SPACE(4 * _MAX_FDS))
            except InterruptedError:
                continue
            except OSError:
                return
            if not msg:
                return  # the pool is gone
            fds = _passed_fds(ancillary)
            reply, out_fds = self.handle(msg, fds)
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except Exception:
                pass
            try:
                import array

                anc = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, array.array("i", out_fds))] if out_fds else []
                self.sock.sendmsg([reply], anc)
            except OSError:
                return
            finally:
                for fd in out_fds:
                    os.close(fd)

    def handle(self, msg, fds):
        """(the reply's bytes, descriptors to pass with it)."""
        if self.numpy_problem is not None:
            for fd in fds:
                os.close(fd)
            call_id = _REQUEST.unpack_from(msg, 4)[2] if len(msg) >= _REQ_FIXED else 0
            return _error_reply(call_id, len(self.scripts), "pyrmap.NumpyMissing",
                                self.numpy_problem, 0), []
        try:
            req = Request(msg)
        except Exception as e:
            for fd in fds:
                os.close(fd)
            return _error_reply(0, 0, "pyrmap.ProtocolError", "invalid request: %s" % e, 0), []
        failed = 0
        out_fds = []
        self.warnings.take()  # (nothing is kept from between calls)
        self.warnings.new_call()
        try:
            current = self.input(req, fds)
            stored = []
            for k, (path, function) in enumerate(req.scripts):
                failed = k
                func = self.function(path, function)
                sys.argv = [path] + req.args
                value = _call(func, current)
                if _frames.plan_size_hint(value):
                    item = (value, None)
                    current = _Passed(value)
                else:
                    arr, code = _storable(value)
                    item = (arr, code)
                    current = _Passed(_read_only(arr))
                if req.keep or k == len(req.scripts) - 1:
                    stored.append(item)
                value = item = None
            current = arr = None
            own_fd = self.take_own_input(stored)
            results = self.store(req, stored, out_fds, own_fd)
            self.span = None
            stored = None
            flags = REPLY_INPUT_RELEASED if self.let_go_of_input(own_fd is not None) else 0
            return _ok_reply(req.call_id, len(self.scripts), results, self.warnings.take(), flags), out_fds
        except BaseException as e:  # the worker keeps serving whatever happened
            for fd in out_fds:
                os.close(fd)
            if self.own_input is not None:
                os.close(self.own_input[0])
                self.own_input = None
            self.input_map = None
            if isinstance(e, ScriptNotLoaded):
                kind = "pyrmap.ScriptNotLoaded"
            else:
                kind = _meta.exception_type_name(e)
            return _error_reply(req.call_id, len(self.scripts), kind,
                                _meta.format_exception(e), failed, self.warnings.take()), []

    # ---------------------------------------------------------------- input

    def input(self, req, fds):
        """The call's input: a read-only array, or for a table the Reader
        that calls the first script."""
        self.span = None
        if req.input_kind == 1:
            return self.table_input(req, fds)
        return _Passed(self.array_input(req, fds))

    def table_input(self, req, fds):
        desc = req.input
        where = "the input of a pool call"
        if req.input_location == 1:  # the area: a private copy
            for fd in fds:
                os.close(fd)
            if desc.offset + desc.nbytes > len(self.area) // 2:
                raise ValueError("the input does not fit the area's input region")
            buf = bytearray(self.area[desc.offset:desc.offset + desc.nbytes])
            base = 0
        else:
            if not fds:
                raise ValueError("the request's input segment was not passed")
            for extra in fds[1:]:
                os.close(extra)
            import mmap

            fd = fds[0]
            try:
                if desc.offset + desc.nbytes > os.fstat(fd).st_size:
                    raise ValueError("the input (%d bytes at offset %d) does not fit its segment"
                                     % (desc.nbytes, desc.offset))
                buf = mmap.mmap(fd, desc.offset + desc.nbytes, flags=mmap.MAP_SHARED,
                                prot=mmap.PROT_READ)
            finally:
                os.close(fd)
            self.input_map = buf
            base = desc.offset
            if req.flags & H.FLAG_INPUT_REFS:
                self.span = _frames.input_span(buf, base, desc.nbytes)
        table = _table.decode(memoryview(buf)[base:base + desc.nbytes], where)
        return _frames.reader_for_block(buf, base, table, req.flags, where)

    def array_input(self, req, fds):
        desc = req.input
        dtype = _array.NUMPY_DTYPES[desc.dtype]
        order = "F" if desc.order == 1 else "C"
        if req.input_location == 1:  # the area: a private copy
            for fd in fds:
                os.close(fd)
            if desc.offset + desc.nbytes > len(self.area) // 2:
                raise ValueError("the input does not fit the area's input region")
            flat = np.frombuffer(self.area, dtype, count=desc.count, offset=desc.offset).copy()
        else:
            if not fds:
                raise ValueError("the request's input segment was not passed")
            fd = fds[0]
            for extra in fds[1:]:
                os.close(extra)
            try:
                if desc.offset + desc.nbytes > os.fstat(fd).st_size:
                    raise ValueError("the input (%d bytes at offset %d) does not fit its segment"
                                     % (desc.nbytes, desc.offset))
                if desc.nbytes == 0:
                    flat = np.empty(desc.count, dtype)
                else:
                    import mmap

                    mm = mmap.mmap(fd, desc.offset + desc.nbytes, flags=mmap.MAP_SHARED,
                                   prot=mmap.PROT_READ)
                    flat = np.frombuffer(mm, dtype, count=desc.count, offset=desc.offset)
                    if req.flags & H.FLAG_IN_PLACE:
                        self.own_input = (os.dup(fd), mm)
                    self.input_map = mm
                    mm = None
            finally:
                os.close(fd)
        arr = flat.reshape(desc.shape, order=order)
        arr.flags.writeable = False
        return arr

    # ---------------------------------------------------------------- scripts

    def function(self, path, name):
        """The function to call for script ``path`` (``name``, or its one
        @process_via_mmap function), loading or reloading it as needed."""
        try:
            st = os.stat(path)
        except OSError as e:
            raise FileNotFoundError(e.errno, "the script %s cannot be read: %s" % (path, e.strerror), path)
        key = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)
        entry = self.scripts.get(path)
        if entry is None or entry[0] != key:
            module = self.load(path, entry[1].__name__ if entry else None)
            entry = (key, module, {})
            self.scripts[path] = entry
        cache = entry[2]
        if name not in cache:
            cache[name] = _find_function(entry[1], path, name)
        return cache[name]

    def load(self, path, name):
        import types

        from . import _runtime

        full = os.path.abspath(path)
        directory = os.path.dirname(os.path.realpath(full))
        if directory not in sys.path:
            sys.path.insert(0, directory)
        if name is None:
            stem = os.path.splitext(os.path.basename(full))[0]
            name = stem if stem.isidentifier() and stem not in sys.modules else \
                "__pyrmap_script_%d__" % len(self.scripts)
        with open(full, "rb") as f:
            source = f.read()
        code = compile(source, full, "exec", dont_inherit=True)
        module = types.ModuleType(name)
        module.__file__ = full
        sys.modules[name] = module
        sys.argv = [path]
        _runtime.loading_in_worker = True
        try:
            exec(code, module.__dict__)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        finally:
            _runtime.loading_in_worker = False
        return module

    # ---------------------------------------------------------------- results

    def store_table(self, req, value, pos, end, out_fds):
        """Writes a table result into the area's result region when it fits,
        else into an unnamed segment; returns (Desc, location, fd index)."""
        writer = _frames.Writer(req.flags, self.span)
        writer.add(value)
        start = (pos + 63) // 64 * 64
        cap = min(end, len(self.area)) - start
        try:
            d = writer.store(_frames.MemorySink(self.area, start, max(cap, 0)))
            return (Desc.make(d.dtype, d.shape, 0, start), 1, 0, 1)
        except MemoryError:
            pass
        fd = os.open(self.segment_dir, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            d = writer.store(_frames.FdSink(fd))
        except BaseException:
            os.close(fd)
            raise
        out_fds.append(fd)
        return (Desc.make(d.dtype, d.shape, 0, 0), 2, len(out_fds) - 1, 1)

    def take_own_input(self, stored):
        """The writable descriptor of the call's input segment when the one
        result may be written over it (as a one-shot run does): the pool
        handed it over and nothing views the input any more (no array the
        script kept, no result sharing its memory). Else None."""
        if self.own_input is None:
            return None
        fd, mm = self.own_input
        self.own_input = None
        # Every array or buffer export of the mapping holds a reference to
        # it; here only `mm`, self.input_map and getrefcount's argument do.
        if len(stored) != 1 or stored[0][1] is None or sys.getrefcount(mm) > 3:
            os.close(fd)
            return None
        self.input_map = None
        _array.close_in_background(mm)
        return fd

    def let_go_of_input(self, own_taken):
        """Lets go of the call's input segment at the end of the call;
        whether nothing of this worker holds it any more: no array the script
        kept views it and no result was written over it. The pool may then
        write a later call's input into the same segment."""
        mm, self.input_map = self.input_map, None
        if own_taken:  # take_own_input found nothing viewing it and closes it
            return not self.own_used
        if mm is None or sys.getrefcount(mm) > 2:
            return False
        _array.close_in_background(mm)
        return True

    def store(self, req, stored, out_fds, own_fd=None):
        """Writes the results; returns [(Desc, location, fd index)]. A
        result too large for the area goes into ``own_fd`` when given (the
        input's segment, see take_own_input), else into a new segment."""
        own = [own_fd]  # emptied when used
        try:
            return self._store(req, stored, out_fds, own)
        finally:
            self.own_used = own_fd is not None and own[0] is None
            if own[0] is not None:
                os.close(own[0])

    def _store(self, req, stored, out_fds, own):
        results = []
        pos = req.result_offset
        end = req.result_offset + req.result_capacity
        for arr, code in stored:
            if code is None:
                results.append(self.store_table(req, arr, pos, end, out_fds))
                if results[-1][1] == 1:
                    pos = results[-1][0].offset + results[-1][0].nbytes
                continue
            fortran = _array._wants_fortran(arr, req.flags)
            order = 1 if fortran else 0
            start = (pos + 63) // 64 * 64
            desc = Desc.make(code, arr.shape, order, start)
            if start + desc.nbytes <= end and start + desc.nbytes <= len(self.area):
                if desc.nbytes:
                    target = np.ndarray(arr.shape, _array.NUMPY_DTYPES[code], buffer=self.area,
                                        offset=start, order="F" if fortran else "C")
                    np.copyto(target, arr, casting="unsafe")
                    del target
                results.append((desc, 1, 0, 0))
                pos = start + desc.nbytes
            else:
                if own[0] is not None:
                    fd, own[0] = own[0], None
                else:
                    fd = os.open(self.segment_dir, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
                try:
                    stored_desc = _array.store_array(fd, arr, code, req.flags)
                except BaseException:
                    os.close(fd)
                    raise
                desc = Desc.make(code, stored_desc.shape, stored_desc.order, stored_desc.offset)
                out_fds.append(fd)
                results.append((desc, 2, len(out_fds) - 1, 0))
        return results


def _call(func, current):
    """Calls a stage's function with its input: a table's root as the
    one-shot runs do (a named list as keyword arguments, an unnamed one as
    positional arguments), a previous stage's dict or tuple likewise."""
    if isinstance(current, _frames.Reader):
        return current.call(func)
    value = current.value
    if isinstance(value, dict) and not isinstance(value, _frames.Frame):
        return func(**value)
    if isinstance(value, tuple):
        return func(*value)
    return func(value)


class _Passed:
    """A value handed to a stage as it is."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _passed_fds(ancillary):
    if not ancillary:
        return []
    import _socket
    import array

    fds = []
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[:len(data) - len(data) % a.itemsize])
            fds.extend(a)
    return fds


def _storable(value):
    """(array of a protocol dtype, code) for a function's return value."""
    arr, code = _array.as_storable(value)
    target = _array.NUMPY_DTYPES[code]
    if arr.dtype != target:
        arr = arr.astype(target)
    return np.asarray(arr), code


def _read_only(arr):
    view = arr.view()
    view.flags.writeable = False
    return view


def _find_function(module, path, name):
    import types

    if name:
        func = getattr(module, name, None)
        if func is None:
            defined = sorted(k for k, v in vars(module).items()
                             if isinstance(v, types.FunctionType) and not k.startswith("__")
                             and getattr(v, "__module__", None) == module.__name__)
            raise ScriptNotLoaded(
                "the script %s has no function %r; %s"
                % (path, name, "the functions it defines: " + ", ".join(defined) if defined
                   else "it defines no functions"))
        if not callable(func):
            raise ScriptNotLoaded("%r in the script %s is a %s, not a function"
                                  % (name, path, type(func).__name__))
        return getattr(func, "__pyrmap_function__", func)
    found = [(k, v) for k, v in vars(module).items()
             if callable(v) and getattr(v, "__pyrmap_function__", None) is not None
             and getattr(v.__pyrmap_function__, "__module__", None) == module.__name__]
    if len(found) == 1:
        return found[0][1].__pyrmap_function__
    if not found:
        raise ScriptNotLoaded(
            "the script %s has no @process_via_mmap function for a pool worker to call: "
            "decorate the function to call, or name it (fun = \"name\" in R, SCRIPT::NAME)" % path)
    raise ScriptNotLoaded(
        "the script %s has several @process_via_mmap functions (%s): name the one to call "
        "(fun = \"name\" in R, SCRIPT::NAME)" % (path, ", ".join(sorted(k for k, _ in found))))


def _pack_warnings(warnings):
    return _U32.pack(len(warnings)) + b"".join(_pack_string(w) for w in warnings)


def _ok_reply(call_id, loaded, results, warnings=(), flags=0):
    parts = [_REPLY.pack(b"PYRS", _VERSION, 0, call_id, len(results), loaded, 0, flags)]
    for desc, location, index, kind in results:
        parts.append(desc.pack())
        parts.append(_RESULT_TAIL.pack(location, index, kind, 0))
    parts.append(b"\0\0\0\0\0\0\0\0")  # two empty strings: no error
    parts.append(_pack_warnings(warnings))
    return b"".join(parts)


def _error_reply(call_id, loaded, error_type, text, failed, warnings=()):
    raw = text.encode("utf-8", "backslashreplace")
    room = _MAX_MESSAGE - 4096 - _meta.WARNINGS_MAX_BYTES
    if len(raw) > room:  # keep the end: the last frames and the message
        raw = b"[...]\n" + raw[len(raw) - room:]
        text = raw.decode("utf-8", "replace")
    return b"".join([_REPLY.pack(b"PYRS", _VERSION, 1, call_id, 0, loaded, failed, 0),
                     _pack_string(error_type), _pack_string(text), _pack_warnings(warnings)])
