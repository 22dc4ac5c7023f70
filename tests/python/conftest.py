"""Shared fixtures: a fake runner that creates /dev/shm segments the way the
pyrmap runner does, and the guarantee that none is left behind.

Every segment a test makes is named pyrmap-<uid>-<this pytest pid>-<hex>-<role>
and removed by the fixture that made it, pass or fail. At the end of the
session any segment still carrying this process's pid fails the run.
"""

import os
import secrets
import shutil
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON_DIR = os.path.join(REPO, "python")
GOLDEN_DIR = os.path.join(REPO, "tests", "golden")
SHM = "/dev/shm"
PYTHON = "/usr/bin/python3"
BOOTSTRAP = "from pyrmap._bootstrap import main; main()"

if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)

from pyrmap import _header as H  # noqa: E402
from pyrmap import _meta, _runtime  # noqa: E402

SESSION_PREFIX = "pyrmap-%d-%d-" % (os.getuid(), os.getpid())


def _ours():
    return sorted(n for n in os.listdir(SHM) if n.startswith(SESSION_PREFIX))


@pytest.fixture(scope="session", autouse=True)
def no_leftover_segments():
    yield
    left = _ours()
    for name in left:
        os.unlink(os.path.join(SHM, name))
    if left:
        pytest.fail("segments left behind in /dev/shm (now removed): %s" % ", ".join(left))


@pytest.fixture(autouse=True)
def fresh_process_state(monkeypatch):
    """In-process runs share module globals; each test starts clean and
    without any PYRMAP_* variable from the environment."""
    for var in (_meta.ENV_META, _meta.ENV_DATA, _meta.ENV_RESULT, _meta.ENV_READY_FD,
                _meta.ENV_FUNCTION, _meta.ENV_SEGMENT_DIR):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(_meta, "_ready", None)
    monkeypatch.setattr(_runtime, "_recorded", None)


class Call:
    """One call's segments, as the runner makes them: exclusive, mode 0600."""

    def __init__(self):
        self.prefix = SESSION_PREFIX + secrets.token_hex(8) + "-"
        self.made = []
        self.meta = self.prefix + "meta-0"
        self.data = self.prefix + "data"
        self.result = self.prefix + "res-0"

    def path(self, name):
        return os.path.join(SHM, name)

    def create(self, name, content=b""):
        fd = os.open(self.path(name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        self.made.append(name)
        try:
            if content:
                os.write(fd, content)
        finally:
            os.close(fd)
        return name

    def setup(self, array=None, flags=0, offset=0, header=None, data=None,
              create_header=True):
        """Data segment with `array` (F bytes when F-contiguous and ndim >= 2),
        the header (state 0) and an empty result segment."""
        if array is not None:
            array = np.asarray(array)
            fortran = array.ndim >= 2 and array.flags.f_contiguous and not array.flags.c_contiguous
            code = H.DTYPE_CODES[array.dtype.name]
            desc = H.ArrayDesc.make(code, array.shape, H.ORDER_F if fortran else H.ORDER_C,
                                    offset)
            if data is None:
                data = b"\x5a" * offset + array.tobytes(order="F" if fortran else "C")
        else:
            desc = H.ArrayDesc()
        if header is None:
            header = H.Header(flags=flags, owner_pid=os.getpid(), input=desc)
        self.header_in = header
        if create_header:
            self.create(self.meta, H.encode(header))
        self.create(self.data, data or b"")
        self.create(self.result)
        return self

    def write_header(self, header):
        with open(self.path(self.meta), "r+b") as f:
            f.write(H.encode(header))

    def read_header(self):
        with open(self.path(self.meta), "rb") as f:
            return H.decode(f.read(), self.meta)

    def result_bytes(self):
        with open(self.path(self.result), "rb") as f:
            return f.read()

    def result_array(self):
        h = self.read_header()
        assert h.state == H.STATE_RESULT_READY, (h.error_type, h.error_text)
        d = h.result
        raw = self.result_bytes()
        assert len(raw) == d.nbytes
        return np.ndarray(d.shape, np.dtype(H.NUMPY_TYPESTRS[d.dtype]), buffer=raw,
                          order="F" if d.order == H.ORDER_F else "C")

    def env(self, **extra):
        env = dict(os.environ)
        for var in list(env):
            if var.startswith("PYRMAP_"):
                del env[var]
        env.update(PYTHONPATH=PYTHON_DIR, PYRMAP_META=self.meta, PYRMAP_DATA=self.data,
                   PYRMAP_RESULT=self.result)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def set_env(self, monkeypatch):
        for var, value in ((_meta.ENV_META, self.meta), (_meta.ENV_DATA, self.data),
                           (_meta.ENV_RESULT, self.result)):
            monkeypatch.setenv(var, value)

    def popen(self, script, *args, python=PYTHON, cwd=None, pass_fds=(), **env):
        return subprocess.Popen([python, "-c", BOOTSTRAP, str(script)] + [str(a) for a in args],
                                env=self.env(**env), cwd=cwd, pass_fds=pass_fds,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, script, *args, timeout=60, **kw):
        p = self.popen(script, *args, **kw)
        out, err = p.communicate(timeout=timeout)
        done = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        done.pid = p.pid
        return done

    def cleanup(self):
        for name in self.made:
            try:
                os.unlink(self.path(name))
            except FileNotFoundError:
                pass


@pytest.fixture
def call():
    c = Call()
    try:
        yield c
    finally:
        c.cleanup()


@pytest.fixture
def make_call():
    calls = []

    def make():
        calls.append(Call())
        return calls[-1]

    try:
        yield make
    finally:
        for c in calls:
            c.cleanup()


@pytest.fixture
def script(tmp_path):
    """script(text, name="script.py") -> path of a new script file."""

    def write(text, name="script.py"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def no_numpy_python():
    """An interpreter on PATH that cannot import numpy, or None."""
    for candidate in ("python3", "python"):
        exe = shutil.which(candidate)
        if not exe or os.path.realpath(exe) == os.path.realpath(PYTHON):
            continue
        try:
            p = subprocess.run([exe, "-c", "import sys; print(sys.executable)\n"
                                "try:\n import numpy\nexcept ImportError:\n print('NO')"],
                               capture_output=True, text=True, timeout=30,
                               env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        except (OSError, subprocess.TimeoutExpired):
            continue
        lines = p.stdout.split()
        if p.returncode == 0 and lines[-1:] == ["NO"] and sys.version_info >= (3, 8):
            return exe, lines[0]
    return None
