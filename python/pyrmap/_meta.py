"""Access to the meta segment, the ready pipe and error recording.

Ownership: the caller (the pyrmap runner) creates, sizes and finally removes
every segment; this side only opens them by the names it is given and never
creates, resizes (except the result segment, see _array) or unlinks one.

Writes into the header go through pwrite on the meta segment's descriptor,
never a mapping, so a meta segment that the caller shrank or removed gives an
OSError instead of a SIGBUS. Nothing is written into the header before the
ready byte has arrived on PYRMAP_READY_FD (or the pipe reached EOF): until
then the caller may still be writing the header itself.

This module does not import numpy: the bootstrap uses it to record that the
interpreter cannot import numpy.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import sys

from . import _header as H
from ._errors import NotConnectedError, ProtocolError

SHM_DIR = "/dev/shm"

ENV_META = "PYRMAP_META"
ENV_DATA = "PYRMAP_DATA"
ENV_RESULT = "PYRMAP_RESULT"
ENV_READY_FD = "PYRMAP_READY_FD"
ENV_FUNCTION = "PYRMAP_FUNCTION"
ENV_SEGMENT_DIR = "PYRMAP_SEGMENT_DIR"

# The most of a meta segment read for decoding: a newer minor version may
# grow header_size, but never beyond this.
_MAX_META_READ = 1 << 20


def segment_dir() -> str:
    """The directory of the run's segments: PYRMAP_SEGMENT_DIR as the runner
    sets it (an absolute path; "RAM" also means /dev/shm), else /dev/shm."""
    d = os.environ.get(ENV_SEGMENT_DIR, "")
    if not d or d == "RAM":
        return SHM_DIR
    if not d.startswith("/") or "\0" in d:
        raise ProtocolError("%s=%r is not an absolute directory path (the pyrmap runner "
                            "passes the directory it made the segments in)"
                            % (ENV_SEGMENT_DIR, d))
    return d


def segment_path(name: str, variable: str = "segment name") -> str:
    """<segment directory>/<name>. A leading '/' (the shm_open spelling) is
    accepted; any other '/' is rejected so a name cannot reach outside the
    segment directory."""
    bare = name[1:] if name.startswith("/") else name
    if not bare or "/" in bare or bare in (".", "..") or "\0" in bare:
        raise ProtocolError("%s %r is not a valid shared memory segment name"
                            % (variable, name))
    return os.path.join(segment_dir(), bare)


def _user(uid: int) -> str:
    try:
        import pwd
        return "%s (uid %d)" % (pwd.getpwuid(uid).pw_name, uid)
    except (ImportError, KeyError):
        return "uid %d" % uid


def check_segment_fd(fd: int, path: str) -> None:
    """Raises PermissionError unless ``fd`` is a regular file of this user
    (effective uid) with mode 0600 or 0400: what the runner makes. Anything
    else was planted by someone else under a segment's name."""
    st = os.fstat(fd)
    mode = st.st_mode & 0o7777
    if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and mode in (0o600, 0o400):
        return
    kind = "file" if stat.S_ISREG(st.st_mode) else "special file"
    raise PermissionError(
        errno.EPERM, "the segment %s was not made by the pyrmap runner for this user: it is a %s "
        "owned by %s with mode %04o (the runner's segments belong to %s, mode 0600); refusing "
        "to use it" % (path, kind, _user(st.st_uid), mode, _user(os.geteuid())), path)


def open_segment(name: str, flags: int, variable: str) -> int:
    """os.open of <segment directory>/<name> (close-on-exec, no symbolic
    link followed), checked with check_segment_fd, with a message that says
    which variable named the segment when it does not exist."""
    path = segment_path(name, variable)
    try:
        # O_NONBLOCK: a FIFO under the name must not block (no effect on files).
        fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            e.errno, "the shared memory segment %s (from %s) does not exist; "
            "the pyrmap runner creates it and removes it when the call ends"
            % (path, variable), path) from None
    try:
        check_segment_fd(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def pread_all(fd: int, size: int, offset: int) -> bytes:
    parts = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(parts)


def pwrite_all(fd: int, data, offset: int) -> None:
    view = memoryview(data).cast("B")
    done = 0
    while done < len(view):
        n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0:
            raise OSError("pwrite wrote nothing at offset %d" % (offset + done))
        done += n


# ------------------------------------------------------------------ ready pipe

# None until the ready byte was waited for; then True (byte received) or
# False (EOF: the runner is gone). One wait per process: the descriptor is
# closed afterwards and its number may be reused.
_ready = None
_input_fd = -1  # the input segment's descriptor from the runner


def wait_ready(required: bool = True) -> bool:
    """Blocks until the runner's ready byte arrives on PYRMAP_READY_FD (no-op
    when the variable is not set). The runner sends a descriptor of the
    input's segment with it (SCM_RIGHTS), kept for take_input_fd(). Returns
    False on EOF, or raises NotConnectedError on EOF when ``required``.
    In a process the runner started (see watch_caller), the channel is then
    watched: its end-of-file means the runner is gone, and this process and
    its process group are killed."""
    global _ready, _input_fd
    text = os.environ.get(ENV_READY_FD, "")
    if _ready is None and text:
        try:
            fd = int(text)
        except ValueError:
            raise ProtocolError("%s=%r is not a file descriptor number"
                                % (ENV_READY_FD, text)) from None
        try:
            got, _input_fd = _receive(fd)
        except OSError as e:
            raise ProtocolError("%s=%s cannot be read: %s"
                                % (ENV_READY_FD, text, e.strerror)) from None
        _ready = bool(got)
        if _ready and _watch:
            _start_watching(fd)
        else:
            try:
                os.close(fd)
            except OSError:
                pass
    if _ready is False and required:
        raise NotConnectedError("the pyrmap runner went away before the input was ready "
                                "(%s reached end of file)" % ENV_READY_FD)
    return _ready is not False


# Whether this process was started by a runner (the bootstrap says so): only
# then does the end of the ready channel end the process.
_watch = False


def watch_caller() -> None:
    """Called by the bootstrap, first thing: greets the runner on the ready
    channel (one byte, 'h': the runner then knows a working Python started
    its bootstrap), and arranges that this process dies with its caller —
    the channel is watched once the ready byte has come, and every process
    this one forks gets the parent-death signal SIGKILL (the runner gives
    it to this one)."""
    global _watch
    text = os.environ.get(ENV_READY_FD, "")
    if not text:
        return
    _watch = True
    try:
        os.write(int(text), b"h")
    except (OSError, ValueError):
        pass  # a read-only pipe (tests) or a runner already gone
    os.register_at_fork(before=_before_fork, after_in_child=_die_with_parent)


_fork_parent = 0

# Warnings go to the caller, which makes them its own (R warnings; lines on
# the command's stderr), instead of onto stderr. At most this many bytes of
# them per run: the caller reads them when the script has ended, so they
# must fit the socket's buffer.
WARNINGS_MAX_BYTES = 32 * 1024


class WarningSink:
    """Formats warnings as "Category: message (file:line)" and keeps them
    (``texts``); ``dropped`` counts those beyond WARNINGS_MAX_BYTES."""

    def __init__(self):
        self.texts = []
        self.size = 0
        self.dropped = 0

    def add(self, message, category, filename, lineno) -> None:
        text = "%s: %s (%s:%s)" % (getattr(category, "__name__", category), message,
                                   os.path.basename(str(filename)), lineno)
        raw = text.encode("utf-8", "backslashreplace")
        if self.size + len(raw) + 5 > WARNINGS_MAX_BYTES:
            self.dropped += 1
            return
        self.size += len(raw) + 5
        self.texts.append(text)

    @staticmethod
    def new_call() -> None:
        """Warnings show once per code location by default; a warm worker
        starts each call afresh, as a new process would."""
        import warnings

        mutated = getattr(warnings, "_filters_mutated", None)
        if mutated is not None:
            mutated()

    def take(self):
        texts, dropped = self.texts, self.dropped
        self.texts, self.size, self.dropped = [], 0, 0
        if dropped:
            texts = texts + ["%d more warning%s not shown" % (dropped, "" if dropped == 1 else "s")]
        return texts

    def install(self) -> None:
        """Routes warnings.showwarning here (warnings filters still decide
        what is shown, so warnings.simplefilter and friends work as usual)."""
        import warnings

        def show(message, category, filename, lineno, file=None, line=None):
            self.add(message, category, filename, lineno)

        warnings.showwarning = show


def frame_warning(text: str) -> bytes:
    """One warning as sent on the ready socket: b"w", u32 length, UTF-8."""
    raw = text.encode("utf-8", "backslashreplace")
    return b"w" + struct.pack("<I", len(raw)) + raw


def send_warnings(sink: WarningSink) -> None:
    """Sends the warnings kept in ``sink`` on the ready socket (no-op
    outside a run or when the caller is gone)."""
    texts = sink.take()
    text = os.environ.get(ENV_READY_FD, "")
    if not texts or not text:
        return
    data = b"".join(frame_warning(t) for t in texts)
    try:
        fd = int(text)
        while data:
            n = os.write(fd, data)
            data = data[n:]
    except (OSError, ValueError):
        pass


def _before_fork() -> None:
    global _fork_parent
    _fork_parent = os.getpid()


def _die_with_parent() -> None:
    """In a child forked by the script: SIGKILL when this process's parent
    dies (and at once if it is already gone)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
    except Exception:  # no ctypes: the process group kill still applies
        return
    if os.getppid() != _fork_parent:
        os._exit(1)


def _start_watching(fd: int) -> None:
    import _thread

    _thread.start_new_thread(_watch_channel, (fd,))


def _watch_channel(fd: int) -> None:
    """Blocks until the ready channel ends (the runner is gone), then kills
    this process's group (its own, as the runner made it) or itself."""
    import signal

    while True:
        try:
            data = os.read(fd, 64)
        except InterruptedError:
            continue
        except OSError:
            return  # not readable: nothing to watch
        if not data:
            break
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _receive(fd: int):
    """One byte from ``fd``, and the descriptor passed with it (or -1). A
    socket is read with recvmsg; anything else (a pipe) with read."""
    import _socket  # the C module: `socket` costs milliseconds of enum set-up

    try:
        sock = _socket.socket(fileno=os.dup(fd))
    except OSError:
        return os.read(fd, 1), -1
    try:
        data, ancillary, _, _ = sock.recvmsg(1, _socket.CMSG_SPACE(4))
    finally:
        sock.close()
    passed = -1
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            for i in range(0, len(payload) - len(payload) % 4, 4):
                (got,) = struct.unpack_from("i", payload, i)
                if passed < 0:
                    passed = got
                else:
                    os.close(got)  # only one is expected
    return data, passed


def take_input_fd() -> int:
    """The descriptor of the input's segment the runner sent with the ready
    byte, or -1; the caller owns it afterwards (it is handed out once)."""
    global _input_fd
    fd, _input_fd = _input_fd, -1
    return fd


# ------------------------------------------------------------------ meta segment

class Meta:
    """An open meta segment. Reads decode and validate the whole header;
    writes touch only the named fields."""

    def __init__(self, name: str):
        self.name = name
        self.fd = open_segment(name, os.O_RDWR, ENV_META)

    @classmethod
    def from_env(cls):
        """The meta segment named by PYRMAP_META, or None when not set."""
        name = os.environ.get(ENV_META)
        return cls(name) if name else None

    def read(self) -> H.Header:
        size = os.fstat(self.fd).st_size
        return H.decode(pread_all(self.fd, min(size, _MAX_META_READ), 0), self.name)

    def state(self) -> int:
        return struct.unpack("<I", pread_all(self.fd, 4, H.OFF_STATE).ljust(4, b"\0"))[0]

    def write(self, offset: int, data: bytes) -> None:
        pwrite_all(self.fd, data, offset)

    def set_state(self, state: int) -> None:
        self.write(H.OFF_STATE, struct.pack("<I", state))

    def set_worker_pid(self) -> None:
        self.write(H.OFF_WORKER_PID, struct.pack("<q", os.getpid()))

    def write_result_desc(self, desc: H.ArrayDesc, location: int = 0,
                          kind: int = H.KIND_ARRAY) -> None:
        self.write(H.OFF_RESULT, H.encode_desc(desc))
        self.write(H.OFF_RESULT_LOCATION, struct.pack("<I", location))
        if kind != H.KIND_ARRAY:
            self.write(H.OFF_RESULT_KIND, struct.pack("<I", kind))

    def write_error(self, error_type: str, error_text: str) -> None:
        """Records an error: the type, the text (its start cut to fit), the
        worker pid, then state 2. Reserved bytes are left alone."""
        text, length, flags = H.encode_error_text(error_text)
        self.write(H.OFF_ERROR_TYPE, H.encode_error_type(error_type))
        self.write(H.OFF_ERROR_LENGTH, struct.pack("<II", length, flags))
        self.write(H.OFF_ERROR_TEXT, text)
        self.set_worker_pid()
        self.set_state(H.STATE_ERROR)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------ tracebacks

def exception_type_name(exc: BaseException) -> str:
    """'ValueError' for builtins, 'module.Qualname' otherwise."""
    cls = type(exc)
    module = getattr(cls, "__module__", None)
    if module in (None, "builtins", "__builtin__"):
        return cls.__qualname__
    return "%s.%s" % (module, cls.__qualname__)


def _internal_dirs():
    """(directory prefixes, files) whose frames are not the user's."""
    prefixes = [os.path.dirname(os.path.abspath(__file__)) + os.sep]
    files = set()
    importlib = sys.modules.get("importlib")
    if getattr(importlib, "__file__", None):
        prefixes.append(os.path.dirname(os.path.abspath(importlib.__file__)) + os.sep)
    runpy = sys.modules.get("runpy")
    if getattr(runpy, "__file__", None):
        files.add(os.path.abspath(runpy.__file__))
    return tuple(prefixes), files


def _is_internal(filename: str, dirs) -> bool:
    if filename.startswith("<frozen "):
        return True  # importlib's and runpy's frozen frames
    if filename.startswith("<"):
        return False
    prefixes, files = dirs
    path = os.path.abspath(filename)
    return path.startswith(prefixes) or path in files


def _trim(te, dirs, seen):
    import traceback

    if id(te) in seen:
        return
    seen.add(id(te))
    stack = list(te.stack)
    # The interpreter's "-c" command line that calls the bootstrap.
    if len(stack) >= 2 and stack[0].filename == "<string>" and \
            _is_internal(stack[1].filename, dirs):
        stack.pop(0)
    frames = [f for f in stack if not _is_internal(f.filename, dirs)]
    te.stack = traceback.StackSummary.from_list(frames)
    for chained in (te.__cause__, te.__context__):
        if chained is not None:
            _trim(chained, dirs, seen)
    for sub in getattr(te, "exceptions", None) or ():
        _trim(sub, dirs, seen)


def format_exception(exc: BaseException) -> str:
    """The traceback as Python prints it, without the frames of pyrmap, the
    bootstrap, runpy and importlib, so it starts at the user's script."""
    import traceback

    te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    _trim(te, _internal_dirs(), set())
    return "".join(te.format())
