"""The Python side opens segments in the runner's segment directory
(PYRMAP_SEGMENT_DIR) and refuses any file there that the runner did not make
for this user: another user's file, a wrong mode, a symbolic link."""

import os
import pwd
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import Call
from pyrmap import ProtocolError
from pyrmap import _header as H
from pyrmap import _meta

DOUBLE = """\
from pyrmap import process_via_mmap

@process_via_mmap
def process(data):
    return data * 2

if __name__ == "__main__":
    process()
"""


class DirCall(Call):
    """A call whose segments live in `directory` instead of /dev/shm."""

    def __init__(self, directory):
        super().__init__()
        self.directory = str(directory)

    def path(self, name):
        return os.path.join(self.directory, name)

    def env(self, **extra):
        return super().env(PYRMAP_SEGMENT_DIR=self.directory, **extra)


@pytest.fixture
def seg_dir(tmp_path):
    d = tmp_path / "segments"
    d.mkdir(mode=0o700)
    return d


@pytest.fixture
def dir_call(seg_dir):
    c = DirCall(seg_dir)
    try:
        yield c
    finally:
        c.cleanup()


def test_segment_path_follows_the_runner_directory(monkeypatch, seg_dir):
    monkeypatch.delenv(_meta.ENV_SEGMENT_DIR, raising=False)
    assert _meta.segment_path("pyrmap-1-2-ab-meta-0") == "/dev/shm/pyrmap-1-2-ab-meta-0"
    monkeypatch.setenv(_meta.ENV_SEGMENT_DIR, str(seg_dir))
    assert _meta.segment_path("/pyrmap-x") == os.path.join(str(seg_dir), "pyrmap-x")
    monkeypatch.setenv(_meta.ENV_SEGMENT_DIR, "RAM")
    assert _meta.segment_dir() == "/dev/shm"
    monkeypatch.setenv(_meta.ENV_SEGMENT_DIR, "relative/dir")
    with pytest.raises(ProtocolError, match="PYRMAP_SEGMENT_DIR='relative/dir' is not an absolute"):
        _meta.segment_path("pyrmap-x")


def test_a_run_in_a_directory_on_disk(dir_call, script):
    x = np.arange(10, dtype=np.float64)
    dir_call.setup(x)
    done = dir_call.run(script(DOUBLE))
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(dir_call.result_array(), x * 2)
    # Nothing went to /dev/shm.
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(dir_call.prefix)]


def test_a_file_of_the_wrong_mode_or_a_link_is_refused(dir_call, script, seg_dir):
    x = np.arange(4, dtype=np.int32)
    dir_call.setup(x)
    os.chmod(dir_call.path(dir_call.result), 0o644)
    done = dir_call.run(script(DOUBLE))
    assert done.returncode != 0
    h = dir_call.read_header()  # the error is recorded in the (valid) meta segment
    assert h.state == H.STATE_ERROR
    assert h.error_type == "PermissionError"
    assert "was not made by the pyrmap runner for this user" in h.error_text
    assert "mode 0644" in h.error_text
    assert dir_call.result_bytes() == b""

    # A symbolic link under the data segment's name is not followed.
    target = seg_dir / "elsewhere"
    target.write_bytes(b"\0" * 64)
    os.unlink(dir_call.path(dir_call.data))
    os.symlink(str(target), dir_call.path(dir_call.data))
    with pytest.raises(OSError):
        _open_in(seg_dir, dir_call.data)


def _open_in(directory, name):
    old = os.environ.get(_meta.ENV_SEGMENT_DIR)
    os.environ[_meta.ENV_SEGMENT_DIR] = str(directory)
    try:
        return _meta.open_segment(name, os.O_RDONLY, _meta.ENV_DATA)
    finally:
        if old is None:
            del os.environ[_meta.ENV_SEGMENT_DIR]
        else:
            os.environ[_meta.ENV_SEGMENT_DIR] = old


# ------------------------------------------------------------------ another user

@pytest.fixture
def other_user():
    """A throw-away local user (useradd; userdel afterwards, pass or fail)."""
    if os.geteuid() != 0:
        pytest.skip("not root: cannot add a second user")
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    if not os.access(useradd, os.X_OK):
        pytest.skip("useradd is not installed")
    name = "pyrmapp%d" % os.getpid()
    made = False
    for _ in range(50):
        if subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                           name], capture_output=True).returncode == 0:
            made = True
            break
    if not made:
        pytest.skip("useradd %s failed" % name)
    try:
        yield pwd.getpwnam(name)
    finally:
        for _ in range(50):
            if subprocess.run(["userdel", name], capture_output=True).returncode == 0:
                break


def _as(user, *argv):
    def drop():
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
    return subprocess.run(list(argv), preexec_fn=drop, capture_output=True, text=True, timeout=60)


def test_a_forged_call_segment_of_another_user_is_refused(call, script, other_user):
    x = np.arange(6, dtype=np.float64)
    call.setup(x, create_header=False)
    # The other user plants a meta segment under the call's name, with a
    # valid header that describes a forged input.
    meta_path = call.path(call.meta)
    forged = H.encode(H.Header(owner_pid=os.getpid(), input=H.ArrayDesc.make(
        H.DTYPE_CODES["float64"], (6,), H.ORDER_C, 0)))
    done = _as(other_user, sys.executable, "-c",
               "import os, sys; fd = os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666);"
               "os.write(fd, bytes.fromhex(sys.argv[2]))", meta_path, forged.hex())
    assert done.returncode == 0, done.stderr
    call.made.append(call.meta)
    before = open(meta_path, "rb").read()
    run = call.run(script(DOUBLE))
    assert run.returncode != 0
    assert "was not made by the pyrmap runner for this user" in run.stderr
    assert "owned by %s (uid %d)" % (other_user.pw_name, other_user.pw_uid) in run.stderr
    assert open(meta_path, "rb").read() == before  # never written to
    assert call.result_bytes() == b""
