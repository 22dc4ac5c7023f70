"""--segment-dir (RAM, DISK, a directory) and PYRMAP_SEGMENT_DIR on the
command; ls/gc in every directory used; leftovers of killed runs removed when
the next run starts; a /dev/shm too small for the input (in a private mount
namespace with a 1 MiB tmpfs)."""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile

import numpy as np
import pytest

from conftest import PYRMAP, base_env, pid_alive, wait_for_file, wait_gone

SLEEPER = """
    open(os.environ["PIDFILE"], "w").write(str(os.getpid()))
    time.sleep(60)
    return data
"""


@pytest.fixture
def state(tmp_path):
    """A private record of used segment directories (XDG_STATE_HOME)."""
    d = tmp_path / "state"
    d.mkdir()
    return str(d)


@pytest.fixture
def seg_dir(tmp_path):
    d = tmp_path / "segments"
    d.mkdir(mode=0o700)
    return str(d)


def files(d):
    return sorted(n for n in os.listdir(d) if n.startswith("pyrmap-"))


def npy(work, name, array):
    path = str(work / name)
    np.save(path, array)
    return path


def test_run_in_disk_and_in_a_directory_of_ones_own(cli, scripts, work, seg_dir, state):
    env = base_env(XDG_STATE_HOME=state, PYRMAP_SEGMENT_DIR=None)
    s = scripts.func("where.py", """
        open(sys.argv[1], "w").write(os.environ["PYRMAP_SEGMENT_DIR"] + "\\n" + "\\n".join(os.listdir(os.environ["PYRMAP_SEGMENT_DIR"])))
        return data * 2
    """)
    x = np.arange(1000, dtype=np.float64)
    inp, out, seen = npy(work, "x.npy", x), str(work / "out.npy"), str(work / "seen")

    o = cli("run", s, "-i", inp, "-o", out, "--segment-dir", seg_dir, "-a", seen, env=env)
    assert o.rc == 0, o
    np.testing.assert_array_equal(np.load(out), x * 2)
    lines = open(seen).read().splitlines()
    assert lines[0] == seg_dir
    assert any(n.startswith("pyrmap-%d-%d-" % (os.getuid(), o.pid)) and n.endswith("-meta-0")
               for n in lines[1:]), lines
    assert files(seg_dir) == []
    # The directory was recorded for ls and gc.
    assert open(os.path.join(state, "pyrmap", "segment-dirs")).read() == seg_dir + "\n"

    o = cli("run", s, "-i", inp, "-o", out, "--segment-dir", "DISK", "-a", seen, env=env)
    assert o.rc == 0, o
    disk = open(seen).read().splitlines()[0]
    assert os.path.basename(disk) == "pyrmap-%d" % os.getuid()
    assert os.stat(disk).st_mode & 0o777 == 0o700
    assert files(disk) == []
    np.testing.assert_array_equal(np.load(out), x * 2)

    # The environment variable, and --segment-dir winning over it.
    o = cli("shared", s, s, "-i", inp, "--output-dir", str(work), "-a", seen,
            env=base_env(XDG_STATE_HOME=state, PYRMAP_SEGMENT_DIR=seg_dir))
    assert o.rc == 0, o
    assert open(seen).read().splitlines()[0] == seg_dir
    o = cli("pipeline", s, s, "-i", inp, "-o", out, "--segment-dir", "RAM", "-a", seen,
            env=base_env(XDG_STATE_HOME=state, PYRMAP_SEGMENT_DIR=seg_dir))
    assert o.rc == 0, o
    assert open(seen).read().splitlines()[0] == "/dev/shm"
    np.testing.assert_array_equal(np.load(out), x * 4)
    assert files(seg_dir) == []


def test_unsafe_or_missing_directories_are_refused(cli, scripts, work, seg_dir, state):
    s = scripts.func("id.py", "data")
    env = base_env(XDG_STATE_HOME=state)
    os.chmod(seg_dir, 0o777)
    o = cli("run", s, "--segment-dir", seg_dir, input="1 2 3", env=env)
    assert o.rc == 6, o
    assert "segment directory '%s' is not safe to use" % seg_dir in o.stderr
    assert "mode 0777" in o.stderr
    o = cli("run", s, "--segment-dir", seg_dir + "/none", input="1 2 3", env=env)
    assert o.rc == 2, o
    assert "does not exist" in o.stderr
    o = cli("ls", "--segment-dir", seg_dir, env=env)
    assert o.rc == 6, o


def test_ls_and_gc_find_a_killed_runs_segments_in_its_directory(cli, spawn, scripts, work, seg_dir, state):
    env = base_env(XDG_STATE_HOME=state, PIDFILE=str(work / "pid"))
    s = scripts.func("sleeper.py", SLEEPER)
    proc = spawn("run", s, "--segment-dir", seg_dir, input="1 2 3", env=env)
    child = int(wait_for_file(work / "pid", proc=proc))
    try:
        mine = files(seg_dir)
        assert sorted(n.split("-", 4)[4] for n in mine) == ["meta-0", "res-0"], mine
        proc.kill()  # SIGKILL: nothing cleans up
        proc.wait(timeout=10)
        assert files(seg_dir) == mine

        # Found through the record of used directories...
        o = cli("ls", env=env)
        assert o.rc == 0, o
        rows = {l.split()[0]: l for l in o.lines()[1:]}
        for name in mine:
            assert "%d (dead)" % proc.pid in rows[name], o
            assert rows[name].split()[-1] == seg_dir, o
        # ...and through --segment-dir without it.
        other_state = str(work / "other-state")
        o = cli("ls", "--segment-dir", seg_dir, env=base_env(XDG_STATE_HOME=other_state))
        assert all(name in o.out for name in mine), o
        o = cli("ls", env=base_env(XDG_STATE_HOME=other_state))
        assert not any(name in o.out for name in mine), o

        dry = cli("gc", "-n", env=env)
        for name in mine:
            assert "would remove %s (owner %d is dead" % (name, proc.pid) in dry.out, dry
            assert dry.out.count(seg_dir) >= 1, dry
        assert files(seg_dir) == mine
        gc = cli("gc", env=env)
        assert gc.rc == 0, gc
        for name in mine:
            assert "removed %s (owner %d is dead" % (name, proc.pid) in gc.out, gc
        assert files(seg_dir) == []
    finally:
        os.kill(child, signal.SIGKILL)
        assert wait_gone(child, 10)


def test_a_run_removes_what_killed_runs_left(cli, spawn, scripts, work, seg_dir, state):
    env = base_env(XDG_STATE_HOME=state, PIDFILE=str(work / "pid"))
    s = scripts.func("sleeper.py", SLEEPER)
    proc = spawn("run", s, "--segment-dir", seg_dir, input="1 2 3", env=env)
    child = int(wait_for_file(work / "pid", proc=proc))
    try:
        left = files(seg_dir)
        assert len(left) == 2, left
        proc.kill()
        proc.wait(timeout=10)
        assert files(seg_dir) == left
        # ls shows them and leaves them: only runs clean up at start.
        assert all(n in cli("ls", env=env).out for n in left)
        assert files(seg_dir) == left
        o = cli("run", scripts.func("id.py", "data"), input="4 5", env=env)
        assert o.rc == 0, o
        assert files(seg_dir) == []
    finally:
        os.kill(child, signal.SIGKILL)
        assert wait_gone(child, 10)


# ------------------------------------------------------------------ another user

@pytest.fixture
def other_user():
    if os.geteuid() != 0:
        pytest.skip("not root: cannot add a second user")
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    if not os.access(useradd, os.X_OK):
        pytest.skip("useradd is not installed")
    name = "pyrmape%d" % os.getpid()
    for _ in range(50):
        if subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                           name], capture_output=True).returncode == 0:
            break
    else:
        pytest.skip("useradd %s failed" % name)
    try:
        yield pwd.getpwnam(name)
    finally:
        for _ in range(50):
            if subprocess.run(["userdel", name], capture_output=True).returncode == 0:
                break


@pytest.fixture
def shared_dir():
    """A sticky directory everyone can write into, like /dev/shm (under /tmp,
    so that the other user can reach it)."""
    d = tempfile.mkdtemp(prefix="pyrmap-e2e-", dir="/tmp")
    os.chmod(d, 0o1777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_ls_shows_and_root_gc_removes_a_squatted_name(cli, shared_dir, state, other_user):
    seg_dir = shared_dir
    name = "pyrmap-%d-ns-0123456789abcdef" % os.getuid()
    path = os.path.join(seg_dir, name)

    def drop():
        os.setgroups([])
        os.setgid(other_user.pw_gid)
        os.setuid(other_user.pw_uid)
    subprocess.run(["touch", path], preexec_fn=drop, check=True)
    env = base_env(XDG_STATE_HOME=state)
    o = cli("ls", "--segment-dir", seg_dir, env=env)
    assert o.rc == 0, o
    assert "squatted by %s (uid %d)" % (other_user.pw_name, other_user.pw_uid) in o.out, o
    o = cli("gc", "--segment-dir", seg_dir, env=env)
    assert o.rc == 0, o
    assert "removed %s (squatted by %s" % (name, other_user.pw_name) in o.out, o
    assert not os.path.exists(path)


# ------------------------------------------------------------------ a tiny /dev/shm

def in_tiny_shm(command):
    """Runs `command` (a shell command) in a private mount namespace whose
    /dev/shm is a 1 MiB tmpfs; skips when that cannot be made."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a private /dev/shm")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("cannot mount a private /dev/shm here: %s" % probe.stderr.strip())
    return subprocess.run(["unshare", "-m", "sh", "-c",
                           "mount -t tmpfs -o size=1m tmpfs /dev/shm && " + command],
                          capture_output=True, text=True, timeout=120, env=base_env())


def test_a_dev_shm_too_small_names_the_sizes_and_the_option_then_disk_works(scripts, work, state):
    s = scripts.func("twice.py", "data * 2")
    x = np.arange(512 * 1024, dtype=np.float64)  # 4 MiB
    inp, out = npy(work, "big.npy", x), str(work / "out.npy")
    run = "XDG_STATE_HOME=%s %s run %s -i %s -o %s" % (state, PYRMAP, s, inp, out)
    small = in_tiny_shm(run)
    assert small.returncode == 6, small
    err = small.stderr
    assert "No space left on device" in err, err
    assert "the segment needs 4.0 MiB (4194304 bytes)" in err, err
    assert "/dev/shm has " in err and " free" in err, err
    assert "--segment-dir DISK" in err and "PYRMAP_SEGMENT_DIR" in err, err
    assert not os.path.exists(out)
    disk = in_tiny_shm(run + " --segment-dir DISK && ls /dev/shm")
    assert disk.returncode == 0, disk
    np.testing.assert_array_equal(np.load(out), x * 2)
    assert "pyrmap-" not in disk.stdout  # nothing left in the tiny /dev/shm either
