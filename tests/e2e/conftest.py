"""Fixtures for the end-to-end tests of the `pyrmap` command.

The tests run the built binary (env PYRMAP, default build/pyrmap) as a user
would, without a shell, and check real values against numpy, exit codes and
messages. Scripts run under the numpy interpreter (env PYRMAP_PYTHON,
default /usr/bin/python3).

/dev/shm hygiene: after every test, no pyrmap segment of this user may exist
that was not there before the test, and the same holds for the whole session.
Other people may be using pyrmap on this machine at the same time, so a new
segment counts as ours when its owner pid (the <pid> in
pyrmap-<uid>-<pid>-...) is a process this session started, or is still alive
and a descendant of this pytest process. A leaked segment is removed (so one
failure does not cascade) and the test errors.
"""

import dataclasses
import os
import re
import stat
import subprocess
import textwrap
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SHM = "/dev/shm"
UID = os.getuid()
SEGMENT_RE = re.compile(r"^pyrmap-(\d+)-(\d+)-")

PYRMAP = os.path.abspath(os.environ.get("PYRMAP") or os.path.join(REPO, "build", "pyrmap"))
NUMPY_PYTHON = os.environ.get("PYRMAP_PYTHON") or "/usr/bin/python3"

# Seconds any single CLI call may take before the test gives up on it.
DEFAULT_TIMEOUT = 60

# Pids of every pyrmap process this session started (segment owners).
_started_pids = set()
# Background processes still to be reaped/killed at the end of their test.
_background = []


def pytest_configure(config):
    if not os.access(PYRMAP, os.X_OK):
        raise pytest.UsageError("pyrmap binary not found at %s: run `make cli` or set PYRMAP" % PYRMAP)


# ------------------------------------------------------------------ segments

def segments():
    """Names of this user's pyrmap segments in /dev/shm."""
    out = set()
    for name in os.listdir(SHM):
        m = SEGMENT_RE.match(name)
        if m and int(m.group(1)) == UID:
            out.add(name)
    return out


def segment_owner(name):
    m = SEGMENT_RE.match(name)
    return int(m.group(2)) if m else None


def pid_alive(pid):
    """True if pid is a running process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _is_descendant(pid):
    me = os.getpid()
    for _ in range(64):
        try:
            with open("/proc/%d/stat" % pid) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if ppid == me:
            return True
        if ppid <= 1:
            return False
        pid = ppid
    return False


def _ours(names):
    mine = []
    for name in names:
        owner = segment_owner(name)
        if owner in _started_pids or (owner is not None and pid_alive(owner) and _is_descendant(owner)):
            mine.append(name)
    return sorted(mine)


def _remove(names):
    for name in names:
        try:
            os.unlink(os.path.join(SHM, name))
        except FileNotFoundError:
            pass


def _reap_background():
    """Kills and reaps background processes a test left running."""
    while _background:
        proc = _background.pop()
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture(scope="session", autouse=True)
def no_segments_left_by_the_session():
    before = segments()
    yield
    _reap_background()
    left = _ours(segments() - before)
    _remove(left)
    if left:
        pytest.fail("the e2e session left segments in /dev/shm (now removed): %s" % ", ".join(left))


@pytest.fixture(autouse=True)
def no_segments_left(request):
    before = segments()
    yield
    _reap_background()
    left = _ours(segments() - before)
    _remove(left)
    if left:
        pytest.fail("%s left segments in /dev/shm (now removed): %s"
                    % (request.node.nodeid, ", ".join(left)))


# ------------------------------------------------------------------ the machine's devices

# As root, a command that replaced its output file instead of writing into it
# would replace a device node for the whole machine (it once turned the real
# /dev/null into a regular file, and every later `>/dev/null` wrote into that
# file). So no test hands a path in /dev (other than /dev/shm) to the command
# as root: tests make stand-ins with mknod in their own directory (see
# test_output.py). And after every test, /dev/null must still be the null
# device.

def refuse_machine_devices(args, cwd=None):
    """Fails the test if, running as root, `args` name a path in /dev
    outside /dev/shm (after symlinks: /dev/stdout and the like count)."""
    if os.geteuid() != 0:
        return
    for a in args:
        path = os.path.realpath(os.path.join(cwd or os.getcwd(), a))
        if path.startswith("/dev/") and not (path == "/dev/shm" or path.startswith("/dev/shm/")):
            pytest.fail("this test hands the machine's %s to pyrmap (as %r) while running as root; "
                        "use a stand-in made with mknod in the test's own directory "
                        "(see test_output.py)" % (path, a))


def _is_null_device(path="/dev/null"):
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)


@pytest.fixture(autouse=True)
def machine_null_device_intact(request):
    intact = _is_null_device()
    yield
    if intact and not _is_null_device():
        pytest.fail("%s: /dev/null is no longer the null device (character device 1,3) after this "
                    "test; as root, restore it with `rm -f /dev/null && mknod -m 666 /dev/null c 1 3`"
                    % request.node.nodeid)


# ------------------------------------------------------------------ running the CLI

@dataclasses.dataclass
class Outcome:
    """What one pyrmap call did."""
    args: list
    pid: int
    rc: int
    stdout: bytes
    stderr: str
    seconds: float

    @property
    def out(self):
        return self.stdout.decode()

    def lines(self):
        return self.out.splitlines()

    def __str__(self):  # shown in assertion messages
        return "pyrmap %s -> exit %d after %.2fs\n--- stdout:\n%s\n--- stderr:\n%s" % (
            " ".join(map(str, self.args)), self.rc, self.seconds,
            self.stdout[:2000].decode(errors="replace"), self.stderr[-4000:])


def base_env(**extra):
    env = dict(os.environ)
    env["PYRMAP_PYTHON"] = NUMPY_PYTHON
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ next to scripts or examples
    env.pop("PYRMAP_PACKAGE_DIR", None)
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def _as_user(uid_gid):
    """A preexec_fn that drops to (uid, gid), or None."""
    if uid_gid is None:
        return None
    uid, gid = uid_gid

    def drop():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    return drop


def run_cli(*args, input=None, timeout=DEFAULT_TIMEOUT, env=None, cwd=None, as_user=None):
    """Runs `pyrmap ARGS...` (no shell). `input`: bytes or str for stdin,
    else stdin is /dev/null. `as_user`: (uid, gid) to run as (needs root).
    Returns an Outcome."""
    args = [str(a) for a in args]
    refuse_machine_devices(args, cwd)
    if isinstance(input, str):
        input = input.encode()
    start = time.monotonic()
    proc = subprocess.Popen([PYRMAP] + args, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env or base_env(), cwd=cwd, preexec_fn=_as_user(as_user))
    _started_pids.add(proc.pid)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail("pyrmap %s did not finish within %s s\nstderr:\n%s"
                    % (" ".join(args), timeout, err.decode(errors="replace")))
    return Outcome(args, proc.pid, proc.returncode, out, err.decode(errors="replace"), time.monotonic() - start)


def spawn_cli(*args, input=None, env=None, cwd=None):
    """Starts `pyrmap ARGS...` in the background; killed at the test's end
    if still running. stdin gets `input` and is closed."""
    args = [str(a) for a in args]
    refuse_machine_devices(args, cwd)
    proc = subprocess.Popen([PYRMAP] + args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env or base_env(), cwd=cwd)
    _started_pids.add(proc.pid)
    _background.append(proc)
    if isinstance(input, str):
        input = input.encode()
    if input:
        proc.stdin.write(input)
    proc.stdin.close()
    return proc


def wait_for_file(path, timeout=20, proc=None):
    """Waits until `path` exists and is non-empty; returns its text."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                text = f.read()
            if text:
                return text
        except FileNotFoundError:
            pass
        if proc is not None and proc.poll() is not None:
            pytest.fail("pyrmap exited (%s) before %s appeared: %s"
                        % (proc.returncode, path, proc.stderr.read().decode(errors="replace")))
        time.sleep(0.02)
    pytest.fail("%s did not appear within %s s" % (path, timeout))


def wait_gone(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="session")
def pyrmap_bin():
    return PYRMAP


@pytest.fixture(scope="session")
def numpy_python():
    return NUMPY_PYTHON


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def spawn():
    return spawn_cli


class Scripts:
    """Writes Python scripts into a per-test directory."""

    HEAD = "import os, sys, time\nimport numpy as np\nfrom pyrmap import process_via_mmap\n"

    def __init__(self, root):
        self.root = root

    def write(self, name, source):
        path = os.path.join(str(self.root), name)
        with open(path, "w") as f:
            f.write(textwrap.dedent(source).lstrip("\n"))
        return path

    def func(self, name, body, prelude=""):
        """A decorated script: `body` is the function's body over `data`
        (one expression, or several lines ending in a return)."""
        body = textwrap.dedent(body).strip("\n")
        if "\n" not in body and not body.lstrip().startswith(("return", "raise")):
            body = "return " + body
        return self.write(name, self.HEAD + textwrap.dedent(prelude) + "\n\n@process_via_mmap\n"
                          "def process(data):\n" + textwrap.indent(body, "    ") +
                          "\n\n\nif __name__ == \"__main__\":\n    process()\n")

    def path(self, name):
        return os.path.join(str(self.root), name)


@pytest.fixture
def scripts(tmp_path):
    d = tmp_path / "scripts"
    d.mkdir()
    return Scripts(d)


@pytest.fixture
def work(tmp_path):
    """A directory for data and output files (on disk, not /dev/shm)."""
    d = tmp_path / "work"
    d.mkdir()
    return d


def assert_no_segments_of(pid):
    left = sorted(n for n in segments() if segment_owner(n) == pid)
    assert not left, "segments of pyrmap pid %d left in /dev/shm: %s" % (pid, left)


def expect_failure(outcome, rc, *needles):
    """The call failed with exit code `rc`, its stderr contains every needle
    (case-insensitive), printed no result, and left no segment behind."""
    assert outcome.rc == rc, str(outcome)
    low = outcome.stderr.lower()
    for needle in needles:
        assert needle.lower() in low, "%r not in stderr\n%s" % (needle, outcome)
    assert outcome.stderr.startswith("pyrmap: ") or "\npyrmap: " in outcome.stderr, str(outcome)
    assert outcome.stdout == b"", str(outcome)
    assert_no_segments_of(outcome.pid)
    return outcome
