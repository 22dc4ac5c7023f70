"""Bad input and faults: each gives a clear message on stderr (naming the
script or the input, and the cause), the documented exit code, and leaves
no segment in /dev/shm (checked by expect_failure and the autouse fixture)."""

import os
import shutil
import signal
import subprocess

import numpy as np
import pytest

from conftest import base_env, expect_failure, segment_owner, segments, wait_for_file, wait_gone


# ------------------------------------------------------------------ bad input

def test_unknown_dtype(cli, scripts):
    s = scripts.func("a.py", "data")
    o = cli("run", s, "-d", "float16", input="1 2")
    expect_failure(o, 2, "unknown dtype 'float16'", "int32", "float64", "bool")


def test_shape_that_does_not_match_text(cli, scripts):
    s = scripts.func("a.py", "data")
    o = cli("run", s, "-s", "2,2", input="1 2 3")
    expect_failure(o, 2, "stdin", "--shape 2,2", "4 elements", "has 3")


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
    expect_failure(cli("run", s, "-i", work / "in.bin"), 2, "in.bin", "--dtype")


def test_shape_with_npy_input(cli, scripts, work):
    np.save(work / "in.npy", np.arange(4))
    s = scripts.func("a.py", "data")
    expect_failure(cli("run", s, "-i", work / "in.npy", "-s", "2,2"), 2, "--shape", ".npy")


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
    s = scripts.func("strings.py", "['a', 'bb']")
    o = cli("run", s, input="1")
    expect_failure(o, 3, "strings.py", "ResultTypeError", "not supported", "<U")


def test_result_of_unsupported_type_object(cli, scripts):
    s = scripts.func("dict.py", "{'a': 1}")
    expect_failure(cli("run", s, input="1"), 3, "dict.py", "ResultTypeError")


def test_timeout(cli, scripts, work):
    pidfile = work / "pid"
    s = scripts.func("slow.py", """
        open(sys.argv[1], "w").write(str(os.getpid()))
        time.sleep(30)
        return data
    """)
    o = cli("run", s, "--timeout", "0.5", "--", pidfile, input="1", timeout=20)
    expect_failure(o, 4, "slow.py", "timed out after 0.5 s")
    assert o.seconds < 5, o
    child = int(pidfile.read_text())
    assert wait_gone(child, 5), "the timed-out script (pid %d) is still running" % child


def test_timeout_in_shared_and_pipeline(cli, scripts):
    slow = scripts.func("slow.py", "time.sleep(30)\nreturn data")
    fast = scripts.func("fast.py", "data")
    o = cli("shared", "-j", "2", fast, slow, "-t", "0.5", input="1", timeout=20)
    expect_failure(o, 4, "slow.py", "timed out")
    assert o.seconds < 5, o
    o = cli("pipeline", fast, slow, fast, "-t", "0.5", input="1", timeout=20)
    expect_failure(o, 4, "slow.py", "timed out")
    assert o.seconds < 5, o


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


def test_interpreter_that_does_not_exist(cli, scripts):
    s = scripts.func("a.py", "data")
    o = cli("run", s, "--python", "/nonexistent/bin/python9", input="1")
    expect_failure(o, 7, "/nonexistent/bin/python9", "not found")
    o = cli("run", s, "--python", "python-does-not-exist-anywhere", input="1")
    expect_failure(o, 7, "python-does-not-exist-anywhere", "PATH")


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
                f.write(struct.pack("<H", 2))
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
    ("major", "version 2.0 is newer"),
    ("nbytes", "does not fit"),
]


@pytest.mark.parametrize("kind,what", CORRUPTIONS)
def test_corrupt_header_is_a_protocol_error(cli, scripts, kind, what):
    s = scripts.write("rogue.py", ROGUE)
    o = cli("run", s, "--", kind, input="1 2 3")
    expect_failure(o, 5, what)


@pytest.mark.parametrize("kind", [
    "magic", "major",
    pytest.param("nbytes", marks=pytest.mark.xfail(
        strict=True,
        reason="src/run.cc Runner::Finish calls CheckPayloadFits(h.result, ..., job->res_name) "
               "without naming the script: the message is only 'payload of float64[16777216] "
               "... does not fit segment 'pyrmap-...-res-0' of 24 bytes'")),
])
def test_corrupt_header_message_names_the_script(cli, scripts, kind):
    # Repro (nbytes): a script that stores [2,4,6], then writes count/shape 2**24 and
    # nbytes 8*2**24 into the result descriptor of /dev/shm/$PYRMAP_META and os._exit(0).
    s = scripts.write("rogue.py", ROGUE)
    o = cli("run", s, "--", kind, input="1 2 3")
    expect_failure(o, 5, "rogue.py")


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
    o = cli("run", s, "-i", big, "-d", "uint8", timeout=30)
    expect_failure(o, 6, "No space left on device", "/dev/shm")
    assert o.seconds < 5, "the refusal took %.1f s: data was written first?" % o.seconds
    after = os.statvfs("/dev/shm")
    assert after.f_bfree >= before.f_bfree - (64 << 20) // after.f_frsize
