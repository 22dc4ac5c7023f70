"""Bad input and faults: each gives a clear message on stderr (naming the
script or the input, and the cause), the documented exit code, and leaves
no segment in /dev/shm (checked by expect_failure and the autouse fixture)."""

import os
import pathlib
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import numpy as np
import pytest

from conftest import Scripts, base_env, expect_failure, segment_owner, segments, wait_for_file, wait_gone


# ------------------------------------------------------------------ bad input

def test_unknown_dtype(cli, scripts):
    s = scripts.func("a.py", "data")
    o = cli("run", s, "-d", "float16", input="1 2")
    expect_failure(o, 2, "unknown dtype 'float16'", "int32", "float64", "bool")


def test_shape_that_does_not_match_text(cli, scripts):
    s = scripts.func("a.py", "data")
    o = cli("run", s, "-s", "2,2", input="1 2 3")
    expect_failure(o, 2, "stdin", "shape 2,2", "4 elements", "has 3")


def test_shape_that_does_not_match_raw_file(cli, scripts, work):
    (work / "in.bin").write_bytes(np.arange(10, dtype=np.int32).tobytes())
    s = scripts.func("a.py", "data")
    o = cli("run", s, "-i", work / "in.bin", "-d", "int32", "-s", "3,3")
    expect_failure(o, 2, "in.bin", "9 elements", "has 10")


def test_raw_file_not_a_whole_number_of_elements(cli, scripts, work):
    (work / "in.bin").write_bytes(b"\0" * 10)
    s = scripts.func("a.py", "data")
    o = cli("run", s, "-i", work / "in.bin", "-d", "float64")
    expect_failure(o, 2, "in.bin", "10 bytes", "float64")


def test_raw_file_without_dtype(cli, scripts, work):
    (work / "in.bin").write_bytes(b"\0" * 8)
    s = scripts.func("a.py", "data")
    expect_failure(cli("run", s, "-i", work / "in.bin"), 2, "in.bin", "not a .npy file",
                   "raw binary input needs a dtype")


def test_shape_with_npy_input(cli, scripts, work):
    np.save(work / "in.npy", np.arange(4))
    s = scripts.func("a.py", "data")
    expect_failure(cli("run", s, "-i", work / "in.npy", "-s", "2,2"), 2, "in.npy",
                   "a shape applies to raw and text input; a .npy file has its own")


def test_text_that_is_not_a_number(cli, scripts):
    s = scripts.func("a.py", "data")
    expect_failure(cli("run", s, input="1 2\n3 four\n"), 2, "stdin", "line 2", "'four'")


def test_truncated_npy(cli, scripts, work):
    np.save(work / "in.npy", np.arange(100, dtype=np.float64))
    data = (work / "in.npy").read_bytes()
    (work / "cut.npy").write_bytes(data[:-8])
    s = scripts.func("a.py", "data")
    expect_failure(cli("run", s, "-i", work / "cut.npy"), 2, "cut.npy")


def test_missing_input_file(cli, scripts, work):
    s = scripts.func("a.py", "data")
    expect_failure(cli("run", s, "-i", work / "nope.npy"), 2, "nope.npy", "No such file")


def test_missing_script(cli, work):
    o = cli("run", work / "no_such_script.py", input="1 2")
    expect_failure(o, 2, "no_such_script.py", "not found")


def test_missing_script_in_shared_starts_nothing(cli, scripts, work):
    s = scripts.func("a.py", "data")
    o = cli("shared", s, work / "gone.py", input="1")
    expect_failure(o, 2, "gone.py", "not found")


# ------------------------------------------------------------------ script faults

def test_syntax_error(cli, scripts):
    s = scripts.write("syntax.py", """
        from pyrmap import process_via_mmap

        @process_via_mmap
        def process(data:
            return data
    """)
    o = cli("run", s, input="1")
    expect_failure(o, 3, "syntax.py", "SyntaxError", "line 4")


def test_script_raises_with_python_traceback(cli, scripts):
    s = scripts.func("raises.py", """
        def inner(x):
            raise ValueError("negative values are not allowed: %d" % x)
        return inner(int(data.min()))
    """)
    o = cli("run", s, "-d", "int32", input="3 -7 5")
    expect_failure(o, 3, "script '%s' raised ValueError" % s, "negative values are not allowed: -7")
    assert "Traceback (most recent call last)" in o.stderr
    assert 'raises.py", line' in o.stderr and "in inner" in o.stderr


def test_traceback_is_printed_once(cli, scripts):
    # The Python side records the error in the header and prints nothing;
    # the runner prints it, once.
    s = scripts.func("raises.py", "raise ValueError('bad value %d' % data.size)")
    o = cli("run", s, input="1 2 3")
    expect_failure(o, 3, "script '%s' raised ValueError: bad value 3" % s)
    lines = o.stderr.splitlines()
    assert lines.count("ValueError: bad value 3") == 1, o
    assert lines.count("Traceback (most recent call last):") == 1, o
    assert o.stderr.count("bad value 3") == 2, o  # the summary line and the traceback's last


def test_traceback_is_printed_once_per_failing_script_in_shared_and_pipeline(cli, scripts):
    bad = scripts.func("bad.py", "raise ValueError('bad value %d' % data.size)")
    good = scripts.func("good.py", "data")
    for args in (["shared", "-j", "2", good, bad], ["pipeline", good, bad, good]):
        o = cli(*args, input="1 2 3")
        expect_failure(o, 3, "script '%s' raised ValueError: bad value 3" % bad)
        lines = o.stderr.splitlines()
        assert lines.count("ValueError: bad value 3") == 1, o
        assert lines.count("Traceback (most recent call last):") == 1, o


def test_os_exit_3(cli, scripts):
    s = scripts.func("exit3.py", "os._exit(3)")
    o = cli("run", s, input="1")
    expect_failure(o, 3, "exit3.py", "exited with status 3", "without writing a result")


def test_sys_exit_nonzero(cli, scripts):
    s = scripts.func("sysexit.py", "sys.exit(5)")
    o = cli("run", s, input="1")
    expect_failure(o, 3, "sysexit.py", "SystemExit")


def test_script_killed_by_sigkill(cli, scripts):
    s = scripts.func("suicide.py", "os.kill(os.getpid(), 9)")
    o = cli("run", s, input="1")
    expect_failure(o, 3, "suicide.py", "signal 9", "SIGKILL")


def test_script_never_calls_process(cli, scripts):
    s = scripts.write("forgot.py", """
        from pyrmap import process_via_mmap

        @process_via_mmap
        def process(data):
            return data
    """)
    o = cli("run", s, input="1")
    expect_failure(o, 3, "forgot.py", "without writing a result", "@process_via_mmap")


def test_script_exits_0_without_a_result(cli, scripts):
    # Exit status 0 but the header never reached state 1.
    s = scripts.write("quiet.py", "import os\nos._exit(0)\n")
    o = cli("run", s, input="1")
    expect_failure(o, 3, "quiet.py", "without writing a result")


def test_result_of_unsupported_type(cli, scripts):
    s = scripts.func("cplx.py", "np.array([1j, 2])")
    o = cli("run", s, input="1")
    expect_failure(o, 3, "cplx.py", "ResultTypeError", "not supported", "complex128")


def test_result_the_command_cannot_write(cli, scripts):
    # Strings are a result Python can give (R reads them as character), but
    # no file format of the command holds them: refused by name, not written
    # as bytes.
    s = scripts.func("strings.py", "['a', 'bb']")
    expect_failure(cli("run", s, input="1"), 2, "strings.py", "it is strings", "cannot hold")


def test_result_of_unsupported_type_object(cli, scripts):
    s = scripts.func("obj.py", "{'a': {1, 2}}")
    expect_failure(cli("run", s, input="1"), 3, "obj.py", "ResultTypeError", "element 'a'")


def test_timeout(cli, scripts, work):
    pidfile = work / "pid"
    s = scripts.func("slow.py", """
        open(sys.argv[1], "w").write(str(os.getpid()))
        time.sleep(60)
        return data
    """)
    # 5 s: room for the script to start python and numpy and write its pid
    # on a busy machine (ten times what that takes there); the call must end
    # long before the script's 60 s sleep would.
    o = cli("run", s, "--timeout", "5", "--", pidfile, input="1", timeout=90)
    expect_failure(o, 4, "script '%s' timed out after 5 s" % s)
    assert o.seconds < 45, o
    child = int(pidfile.read_text())
    assert wait_gone(child, 30), "the timed-out script (pid %d) is still running" % child


def test_timeout_in_shared_and_pipeline(cli, scripts):
    # The limit is per script and counts its interpreter's start: it must leave
    # fast.py room to start python and numpy on a busy machine (two at once
    # with -j 2 took 0.6 s on a loaded 2-CPU box: 8 s is more than ten times
    # that), so that slow.py alone hits it, long before its 60 s sleep ends.
    slow = scripts.func("slow.py", "time.sleep(60)\nreturn data")
    fast = scripts.func("fast.py", "data")
    o = cli("shared", "-j", "2", fast, slow, "-t", "8", input="1", timeout=90)
    expect_failure(o, 4, "script '%s' timed out after 8 s" % slow)
    assert "fast.py" not in o.stderr, o
    assert o.seconds < 45, o
    o = cli("pipeline", fast, slow, fast, "-t", "8", input="1", timeout=90)
    expect_failure(o, 4, "script '%s' timed out after 8 s" % slow)
    assert o.seconds < 45, o


def _python_without_numpy():
    path = shutil.which("python3")
    if not path:
        return None
    r = subprocess.run([path, "-c", "import numpy"], capture_output=True)
    return None if r.returncode == 0 else path


def test_interpreter_without_numpy(cli, scripts):
    py = _python_without_numpy()
    if py is None:
        pytest.skip("the python3 on PATH has numpy")
    s = scripts.func("a.py", "data")
    o = cli("run", s, "--python", py, input="1 2")
    expect_failure(o, 7, "cannot import numpy", "No module named 'numpy'")
    # Reported once, by pyrmap; the Python side recorded it and printed nothing.
    assert o.stderr.count("cannot import numpy") == 1, o
    assert o.stderr.count("No module named 'numpy'") == 1, o
    assert "Traceback" not in o.stderr, o
    # Named as the interpreter reports itself (sys.executable): a pyenv shim
    # or a symlink is resolved to the real program.
    exe = subprocess.run([py, "-c", "import sys; print(sys.executable)"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert "interpreter %s cannot" % exe in o.stderr, o


def test_interpreter_without_numpy_from_env(cli, scripts):
    py = _python_without_numpy()
    if py is None:
        pytest.skip("the python3 on PATH has numpy")
    s = scripts.func("a.py", "data")
    o = cli("run", s, input="1", env=base_env(PYRMAP_PYTHON=py))
    expect_failure(o, 7, "cannot import numpy")
    assert o.stderr.count("cannot import numpy") == 1, o
    # Every script of a shared call fails the same way: still reported once.
    o = cli("shared", s, s, "-j", "2", input="1", env=base_env(PYRMAP_PYTHON=py))
    expect_failure(o, 7, "cannot import numpy")
    assert o.stderr.count("cannot import numpy") == 1, o


def test_interpreter_that_does_not_exist(cli, scripts):
    s = scripts.func("a.py", "data")
    o = cli("run", s, "--python", "/nonexistent/bin/python9", input="1")
    expect_failure(o, 7, "/nonexistent/bin/python9", "not found")
    o = cli("run", s, "--python", "python-does-not-exist-anywhere", input="1")
    expect_failure(o, 7, "python-does-not-exist-anywhere", "PATH")


# ------------------------------------------------------------------ output paths, checked first

MARKER_SCRIPT = """
    open(os.environ["MARKER"], "w").close()
    return data
"""


def _marker_env(work):
    return str(work / "script-ran"), base_env(MARKER=str(work / "script-ran"))


@pytest.mark.parametrize("mode", ["run", "pipeline"])
def test_output_file_in_a_missing_directory_is_refused_before_the_script_runs(cli, scripts, work, mode):
    marker, env = _marker_env(work)
    s = scripts.func("mark.py", MARKER_SCRIPT)
    missing = work / "no-such-dir"
    o = cli(mode, s, "-o", missing / "out.npy", input="1 2", env=env)
    expect_failure(o, 2, "the directory of --output '%s' is not an existing directory" % missing)
    assert not os.path.exists(marker), "the script ran"
    assert not missing.exists()


def test_output_file_whose_directory_is_a_file_is_refused(cli, scripts, work):
    marker, env = _marker_env(work)
    s = scripts.func("mark.py", MARKER_SCRIPT)
    (work / "plain").write_text("x")
    o = cli("run", s, "-o", work / "plain" / "out.npy", input="1", env=env)
    expect_failure(o, 2, "'%s' is not an existing directory" % (work / "plain"))
    assert not os.path.exists(marker)
    assert (work / "plain").read_text() == "x"


def test_output_that_is_a_directory_is_refused_before_the_script_runs(cli, scripts, work):
    marker, env = _marker_env(work)
    s = scripts.func("mark.py", MARKER_SCRIPT)
    (work / "adir").mkdir()
    o = cli("run", s, "-o", work / "adir", input="1", env=env)
    expect_failure(o, 2, "--output '%s' is a directory; give a file name" % (work / "adir"))
    assert not os.path.exists(marker)


def test_output_file_relative_to_the_working_directory(cli, scripts, work):
    # A bare name is in the working directory (which exists): accepted.
    marker, env = _marker_env(work)
    s = scripts.func("mark.py", MARKER_SCRIPT)
    o = cli("run", s, "-o", "out.npy", input="1 2", env=env, cwd=str(work))
    assert o.rc == 0, o
    np.testing.assert_array_equal(np.load(work / "out.npy"), [1.0, 2.0])
    assert os.path.exists(marker)  # the marker works: the script ran
    os.unlink(marker)
    o = cli("run", s, "-o", "sub/out.npy", input="1 2", env=env, cwd=str(work))
    expect_failure(o, 2, "the directory of --output 'sub' is not an existing directory")
    assert not os.path.exists(marker), "the script ran"


@pytest.mark.parametrize("mode", ["shared", "pipeline"])
@pytest.mark.parametrize("what", ["missing", "file"])
def test_output_dir_must_be_an_existing_directory(cli, scripts, work, mode, what):
    marker, env = _marker_env(work)
    s = scripts.func("mark.py", MARKER_SCRIPT)
    target = work / "results"
    if what == "file":
        target.write_text("x")
    o = cli(mode, s, s, "--output-dir", target, input="1", env=env)
    expect_failure(o, 2, "--output-dir '%s' is not an existing directory" % target)
    assert not os.path.exists(marker), "the script ran"
    assert target.exists() == (what == "file")


@pytest.fixture
def open_tmp():
    """A directory anyone may write in (mode 01777), outside pytest's private one."""
    d = tempfile.mkdtemp(prefix="pyrmap-e2e-")
    os.chmod(d, 0o1777)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("mode", ["run", "shared", "pipeline"])
def test_output_dir_not_writable(cli, open_tmp, mode):
    # A directory of mode 0555 is not writable, except for root: as root,
    # pyrmap runs as nobody.
    as_user = None
    if os.geteuid() == 0:
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("running as root, and there is no user nobody")
        as_user = (nobody.pw_uid, nobody.pw_gid)
    marker = open_tmp / "script-ran"
    s = open_tmp / "mark.py"
    s.write_text(Scripts.HEAD + "\n@process_via_mmap\ndef process(data):\n"
                 "    open(os.environ['MARKER'], 'w').close()\n    return data\n\n"
                 "if __name__ == '__main__':\n    process()\n")
    os.chmod(str(s), 0o644)
    locked = open_tmp / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    env = base_env(MARKER=str(marker))
    if mode == "run":
        o = cli("run", s, "-o", locked / "out.npy", input="1", env=env, as_user=as_user)
        expect_failure(o, 2, "the directory of --output '%s' is not writable" % locked,
                       "Permission denied")
    else:
        o = cli(mode, s, s, "--output-dir", locked, input="1", env=env, as_user=as_user)
        expect_failure(o, 2, "--output-dir '%s' is not writable" % locked, "Permission denied")
    assert not marker.exists(), "the script ran"
    assert os.listdir(str(locked)) == []


def test_output_path_is_checked_before_stdin_is_read(cli, scripts, work):
    # The check comes before the input: even bad input is not looked at.
    s = scripts.func("mark.py", MARKER_SCRIPT)
    o = cli("run", s, "-o", work / "nope" / "x.npy", input="1 two")
    expect_failure(o, 2, "--output", "nope")
    assert "two" not in o.stderr, o


# ------------------------------------------------------------------ signals to pyrmap

@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("mode", ["run", "pipeline"])
def test_signal_to_pyrmap_while_script_runs(spawn, scripts, work, sig, code, mode):
    pidfile = work / "pid"
    s = scripts.func("sleeper.py", """
        open(os.environ["PIDFILE"], "w").write(str(os.getpid()))
        time.sleep(30)
        return data
    """)
    first = scripts.func("first.py", "data + 1")
    args = ["run", s] if mode == "run" else ["pipeline", first, s, first]
    proc = spawn(*args, input="1 2 3", env=base_env(PIDFILE=str(pidfile)))
    child = int(wait_for_file(pidfile, proc=proc))
    assert any(segment_owner(n) == proc.pid for n in segments())
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("pyrmap did not stop within 10 s of %s" % sig.name)
    err = proc.stderr.read().decode()
    assert rc == code, err
    assert "interrupted by %s while running script" % sig.name in err, err
    assert "sleeper.py'" in err, err
    assert proc.stdout.read() == b""
    assert wait_gone(child, 5), "the script (pid %d) outlived pyrmap" % child
    assert not [n for n in segments() if segment_owner(n) == proc.pid]


# ------------------------------------------------------------------ a rogue script breaks the header

ROGUE = """
    import os, struct, sys
    from pyrmap import process_via_mmap

    @process_via_mmap
    def process(data):
        return data * 2

    if __name__ == "__main__":
        process()  # a valid result first, then the header is overwritten
        with open("/dev/shm/" + os.environ["PYRMAP_META"], "r+b") as f:
            kind = sys.argv[1]
            if kind == "magic":
                f.seek(0)
                f.write(b"NOTMAGIC")
            elif kind == "major":
                f.seek(8)
                f.write(struct.pack("<H", 3))  # one beyond the current major (2)
            elif kind == "nbytes":
                n = 1 << 24  # a result of 16 Mi float64 in a 24-byte segment
                f.seek(256 + 16)
                f.write(struct.pack("<Q", n))         # count
                f.seek(256 + 32)
                f.write(struct.pack("<Q", 8 * n))     # nbytes
                f.seek(256 + 48)
                f.write(struct.pack("<Q", n))         # shape[0]
        os._exit(0)
"""

CORRUPTIONS = [
    ("magic", "bad magic"),
    ("major", "is newer than this pyrmap"),
    ("nbytes", "does not fit"),
]


@pytest.mark.parametrize("kind,what", CORRUPTIONS)
def test_corrupt_header_is_a_protocol_error(cli, scripts, kind, what):
    s = scripts.write("rogue.py", ROGUE)
    o = cli("run", s, "--", kind, input="1 2 3")
    expect_failure(o, 5, what)


@pytest.mark.parametrize("kind", ["magic", "major", "nbytes"])
def test_corrupt_header_message_names_the_script(cli, scripts, kind):
    # nbytes: a script that stores [2,4,6], then writes count/shape 2**24 and
    # nbytes 8*2**24 into the result descriptor of /dev/shm/$PYRMAP_META and os._exit(0).
    s = scripts.write("rogue.py", ROGUE)
    o = cli("run", s, "--", kind, input="1 2 3")
    expect_failure(o, 5, "rogue.py")
    assert o.stderr.startswith("pyrmap: script '%s'" % s), o
    if kind == "nbytes":  # was a strict xfail: the message did not name the script
        assert o.stderr.startswith("pyrmap: script '%s': " % s), o
        assert "does not fit" in o.stderr, o


# ------------------------------------------------------------------ /dev/shm too small

def test_input_larger_than_dev_shm(cli, scripts, tmp_path):
    st = os.statvfs("/dev/shm")
    total = st.f_blocks * st.f_frsize
    if total == 0:
        pytest.skip("/dev/shm has no size limit")
    if os.stat(str(tmp_path)).st_dev == os.stat("/dev/shm").st_dev:
        pytest.skip("the temporary directory is on /dev/shm")
    big = tmp_path / "sparse.bin"
    with open(big, "wb"):
        pass
    os.truncate(big, total + (1 << 30))  # sparse: takes no disk space
    s = scripts.func("sum.py", "data.sum()")
    before = os.statvfs("/dev/shm")
    used = lambda st: (st.f_blocks - st.f_bfree) * st.f_frsize  # noqa: E731
    # The refusal must come before any data is written: /dev/shm's use is
    # sampled while the call runs (writing first would fill it by GiBs).
    peak, done = [used(before)], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], used(os.statvfs("/dev/shm")))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        o = cli("run", s, "-i", big, "-d", "uint8", timeout=120)
    finally:
        done.set()
        sampler.join()
    expect_failure(o, 6, "No space left on device", "/dev/shm")
    grew = peak[0] - used(before)
    assert grew < (64 << 20), "/dev/shm filled by %d MiB before the refusal: data written first?" % (grew >> 20)
    after = os.statvfs("/dev/shm")
    assert after.f_bfree >= before.f_bfree - (64 << 20) // after.f_frsize
