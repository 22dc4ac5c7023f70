"""-o FILE and --output-dir never replace what is there: devices and FIFOs
are written in place, symlinks are followed (their target gets the data, the
link stays a link), an existing file keeps its mode, and only new and regular
files are written beside the target and renamed over it.

The devices are made with mknod in the test's own directory (root only), so
the real /dev/null is never at risk: no test here writes it as root."""

import os
import pathlib
import pwd
import shutil
import stat
import tempfile
import threading

import numpy as np
import pytest

from conftest import Scripts, expect_failure

WANT = np.array([2.0, 3.0, 4.0])


def plus_one(scripts, name="plus.py"):
    return scripts.func(name, "data + 1")


def npy_of(data):
    import io
    return np.load(io.BytesIO(data), allow_pickle=False)


def leftovers(directory):
    """Temporary files of pyrmap's atomic writes left in `directory`."""
    return sorted(n for n in os.listdir(str(directory)) if "pyrmap-tmp" in n)


def need_root(what):
    if os.geteuid() != 0:
        pytest.skip("%s needs root (mknod); not running as root" % what)


def mknod_char(path, major, minor):
    os.mknod(str(path), 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    os.chmod(str(path), 0o666)  # whatever the umask: anyone may write it, as /dev/null


def assert_char_device(path, major, minor):
    st = os.lstat(str(path))
    assert stat.S_ISCHR(st.st_mode), "%s is no longer a character device: mode %o" % (path, st.st_mode)
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (major, minor)


class FifoReader:
    """Reads everything written into a FIFO, in a thread. The FIFO keeps a
    second name (a hard link), so that a reader still waiting for a writer
    can be released even after the FIFO's own name was replaced."""

    def __init__(self, path, spare=None):
        self.path = str(path)
        os.mkfifo(self.path)
        os.chmod(self.path, 0o666)
        self.spare = str(spare or self.path + ".spare-name")
        os.link(self.path, self.spare)
        self.data = b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        with open(self.spare, "rb") as f:  # blocks until a writer opens it
            self.data = f.read()

    def finish(self):
        """The bytes read; releases a reader that no writer ever reached."""
        self.thread.join(timeout=30)
        if self.thread.is_alive():
            fd = os.open(self.spare, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
            self.thread.join(timeout=30)
        os.unlink(self.spare)
        return self.data


def other_user():
    """(uid, gid) of nobody when we are root (root may write anywhere), else
    None: run as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("running as root, and there is no user nobody")
    return (nobody.pw_uid, nobody.pw_gid)


@pytest.fixture
def shared_dir():
    """A directory other users may read (pytest's own is private)."""
    d = tempfile.mkdtemp(prefix="pyrmap-e2e-")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    for root, dirs, _ in os.walk(d):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
    shutil.rmtree(d, ignore_errors=True)


def shared_script(directory):
    s = directory / "plus.py"
    s.write_text(Scripts.HEAD + "\n@process_via_mmap\ndef process(data):\n    return data + 1\n\n"
                 "if __name__ == '__main__':\n    process()\n")
    os.chmod(str(s), 0o644)
    return s


# ------------------------------------------------------------------ devices

def test_a_character_device_is_written_in_place_not_replaced(cli, scripts, work):
    need_root("a character device")
    dev = work / "null"
    mknod_char(dev, 1, 3)  # the null device, under a name of our own
    s = plus_one(scripts)
    for fmt in ("raw", "npy", "text"):
        o = cli("run", s, "-o", dev, "--output-format", fmt, input="1 2 3")
        assert o.rc == 0, o
        assert o.out == "", o
        assert_char_device(dev, 1, 3)
    assert leftovers(work) == []


def test_a_write_error_on_a_device_is_a_system_error_naming_it(cli, scripts, work):
    need_root("a character device")
    full = work / "full"
    mknod_char(full, 1, 7)  # /dev/full: every write fails with ENOSPC
    o = cli("run", plus_one(scripts), "-o", full, input="1 2 3")
    expect_failure(o, 6, str(full), "No space left on device")
    assert_char_device(full, 1, 7)
    assert leftovers(work) == []


def test_devices_in_the_output_dir_are_written_in_place(cli, scripts, work):
    need_root("a character device")
    out = work / "out"
    out.mkdir()
    mknod_char(out / "1-plus.npy", 1, 3)
    o = cli("shared", plus_one(scripts), plus_one(scripts, "times.py"), "--output-dir", out,
            input="1 2 3")
    assert o.rc == 0, o
    assert_char_device(out / "1-plus.npy", 1, 3)
    np.testing.assert_array_equal(np.load(str(out / "2-times.npy")), WANT)
    assert leftovers(out) == []


def test_writable_device_in_a_directory_we_cannot_write(cli, shared_dir):
    # The device itself is written, so only it must be writable, not its
    # directory (as for /dev/null in /dev). As root: a null device of our
    # own in a directory of mode 0555, written by nobody. Otherwise the real
    # /dev/null, which a user other than root cannot replace.
    if os.geteuid() == 0:
        locked = shared_dir / "locked"
        locked.mkdir()
        dev = locked / "null"
        mknod_char(dev, 1, 3)
        locked.chmod(0o555)
    else:
        dev = pathlib.Path("/dev/null")
    before = os.lstat(str(dev))
    o = cli("run", shared_script(shared_dir), "-o", dev, input="1 2 3", as_user=other_user())
    assert o.rc == 0, o
    after = os.lstat(str(dev))
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


# ------------------------------------------------------------------ FIFOs

@pytest.mark.parametrize("fmt", ["npy", "text"])
def test_a_fifo_with_a_reader_gets_the_result(cli, scripts, work, fmt):
    fifo = work / "pipe"
    reader = FifoReader(fifo)
    o = cli("run", plus_one(scripts), "-o", fifo, "--output-format", fmt, input="1 2 3")
    data = reader.finish()
    assert o.rc == 0, o
    assert stat.S_ISFIFO(os.lstat(str(fifo)).st_mode), "the FIFO was replaced"
    if fmt == "npy":
        np.testing.assert_array_equal(npy_of(data), WANT)
    else:
        assert data == b"2.0\n3.0\n4.0\n"
    assert leftovers(work) == []


def test_a_fifo_in_a_directory_we_cannot_write(cli, shared_dir):
    # Writing into a FIFO needs no new name in its directory.
    locked = shared_dir / "locked"
    locked.mkdir()
    reader = FifoReader(locked / "pipe", spare=shared_dir / "spare")
    locked.chmod(0o555)
    o = cli("run", shared_script(shared_dir), "-o", locked / "pipe", "--output-format", "npy",
            input="1 2 3", as_user=other_user())
    data = reader.finish()
    assert o.rc == 0, o
    np.testing.assert_array_equal(npy_of(data), WANT)


# ------------------------------------------------------------------ symlinks

def test_a_symlink_to_a_file_is_followed_and_stays_a_link(cli, scripts, work):
    sub = work / "sub"
    sub.mkdir()
    target = sub / "target.npy"
    np.save(str(target), np.zeros(5))
    link = work / "link.npy"
    os.symlink("sub/target.npy", str(link))  # relative to the link's directory
    o = cli("run", plus_one(scripts), "-o", link, input="1 2 3")
    assert o.rc == 0, o
    assert os.path.islink(str(link)) and os.readlink(str(link)) == "sub/target.npy"
    np.testing.assert_array_equal(np.load(str(target)), WANT)
    assert leftovers(work) == [] and leftovers(sub) == []


def test_a_chain_of_symlinks_is_followed_to_the_end(cli, scripts, work):
    target = work / "target.bin"
    target.write_bytes(b"old")
    os.symlink(str(target), str(work / "a"))
    os.symlink("a", str(work / "b"))
    o = cli("run", plus_one(scripts), "-o", work / "b", input="1 2 3")
    assert o.rc == 0, o
    assert os.readlink(str(work / "b")) == "a" and os.readlink(str(work / "a")) == str(target)
    assert target.read_bytes() == WANT.tobytes()


def test_a_dangling_symlink_gets_its_target_created(cli, scripts, work):
    sub = work / "sub"
    sub.mkdir()
    link = work / "link.npy"
    os.symlink("sub/new.npy", str(link))
    o = cli("run", plus_one(scripts), "-o", link, input="1 2 3")
    assert o.rc == 0, o
    assert os.path.islink(str(link))
    np.testing.assert_array_equal(np.load(str(sub / "new.npy")), WANT)
    assert leftovers(work) == [] and leftovers(sub) == []


def test_a_symlink_in_the_output_dir_is_followed(cli, scripts, work):
    out, elsewhere = work / "out", work / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "kept.npy").write_bytes(b"old")
    os.symlink("../elsewhere/kept.npy", str(out / "1-plus.npy"))
    o = cli("pipeline", "-k", plus_one(scripts), plus_one(scripts, "again.py"), "--output-dir", out,
            input="1 2 3")
    assert o.rc == 0, o
    assert os.path.islink(str(out / "1-plus.npy"))
    np.testing.assert_array_equal(np.load(str(elsewhere / "kept.npy")), WANT)
    np.testing.assert_array_equal(np.load(str(out / "2-again.npy")), WANT + 1)
    assert leftovers(out) == [] and leftovers(elsewhere) == []


# ------------------------------------------------------------------ modes

@pytest.mark.parametrize("mode", [0o640, 0o600, 0o604])
def test_an_existing_file_keeps_its_mode(cli, scripts, work, mode):
    f = work / "out.npy"
    f.write_bytes(b"old")
    os.chmod(str(f), mode)
    o = cli("run", plus_one(scripts), "-o", f, input="1 2 3")
    assert o.rc == 0, o
    assert stat.S_IMODE(os.stat(str(f)).st_mode) == mode
    np.testing.assert_array_equal(np.load(str(f)), WANT)
    assert leftovers(work) == []


def test_an_existing_file_in_the_output_dir_keeps_its_mode(cli, scripts, work):
    out = work / "out"
    out.mkdir()
    (out / "2-again.npy").write_bytes(b"old")
    os.chmod(str(out / "2-again.npy"), 0o640)
    o = cli("shared", plus_one(scripts), plus_one(scripts, "again.py"), "--output-dir", out,
            input="1 2 3")
    assert o.rc == 0, o
    assert stat.S_IMODE(os.stat(str(out / "2-again.npy")).st_mode) == 0o640
    np.testing.assert_array_equal(np.load(str(out / "2-again.npy")), WANT)


def test_a_new_file_follows_the_umask(cli, scripts, work):
    for umask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        f = work / ("new-%o.npy" % umask)
        old = os.umask(umask)
        try:
            o = cli("run", plus_one(scripts), "-o", f, input="1 2 3")
        finally:
            os.umask(old)
        assert o.rc == 0, o
        assert stat.S_IMODE(os.stat(str(f)).st_mode) == mode, (oct(umask), f)
    assert leftovers(work) == []


def test_a_failed_run_leaves_the_existing_file_alone(cli, scripts, work):
    f = work / "out.npy"
    f.write_bytes(b"old")
    s = scripts.func("boom.py", "raise ValueError('boom')")
    o = cli("run", s, "-o", f, input="1 2 3")
    assert o.rc == 3, o
    assert f.read_bytes() == b"old"
    assert leftovers(work) == []
