"""A script's processes live and die with their caller: the interpreter dies
when `pyrmap` is killed (its parent-death signal, and the ready channel's
end as a second line), so do the processes the script forked, and whatever
the script leaves running in its process group ends with the call."""

import os
import signal
import subprocess

import pytest

from conftest import base_env, expect_failure, pid_alive, segment_owner, segments, wait_for_file, wait_gone

# The script forks a child that sleeps, writes "<script pid> <child pid>",
# then sleeps itself.
FORKER = """
    kid = os.fork()
    if kid == 0:
        time.sleep(600)
        os._exit(0)
    open(os.environ["PIDFILE"], "w").write("%d %d" % (os.getpid(), kid))
    time.sleep(600)
    return data
"""


def start(spawn, scripts, work, body, mode="run"):
    pidfile = work / "pids"
    s = scripts.func("forker.py", body)
    args = ["run", s] if mode == "run" else ["pipeline", scripts.func("first.py", "data + 1"), s]
    proc = spawn(*args, input="1 2 3", env=base_env(PIDFILE=str(pidfile)))
    pids = [int(p) for p in wait_for_file(pidfile, proc=proc).split()]
    return proc, pids


def collect(cli, proc):
    """Removes the dead runner's segment names (what `pyrmap gc` is for)."""
    gc = cli("gc")
    assert gc.rc == 0, gc
    assert not [n for n in segments() if segment_owner(n) == proc.pid]


@pytest.mark.parametrize("mode", ["run", "pipeline"])
def test_the_script_and_its_forks_die_when_pyrmap_is_killed(cli, spawn, scripts, work, mode):
    proc, (script, kid) = start(spawn, scripts, work, FORKER, mode)
    try:
        proc.kill()  # SIGKILL: pyrmap itself cannot clean up
        proc.wait(timeout=30)
        # Generous bounds: the signal is delivered at once, but a loaded
        # machine may schedule the dying processes late.
        assert wait_gone(script, 30), "the script (pid %d) outlived pyrmap" % script
        assert wait_gone(kid, 30), "the script's child (pid %d) outlived pyrmap" % kid
    finally:
        for pid in (script, kid):
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    collect(cli, proc)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_the_script_and_its_forks_die_when_pyrmap_is_stopped(spawn, scripts, work, sig):
    proc, (script, kid) = start(spawn, scripts, work, FORKER)
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 128 + sig
    assert wait_gone(script, 30), "the script (pid %d) outlived pyrmap" % script
    assert wait_gone(kid, 30), "the script's child (pid %d) outlived pyrmap" % kid
    assert not [n for n in segments() if segment_owner(n) == proc.pid]


def test_what_the_script_leaves_running_ends_with_the_call(cli, scripts, work):
    pidfile = work / "pid"
    s = scripts.func("leaver.py", """
        import subprocess
        p = subprocess.Popen(["sleep", "600"])  # left running on purpose
        open(os.environ["PIDFILE"], "w").write(str(p.pid))
        return data * 2
    """)
    o = cli("run", s, input="1 2 3", env=base_env(PIDFILE=str(pidfile)))
    assert o.rc == 0, o
    assert o.out.split() == ["2.0", "4.0", "6.0"]
    left = int(pidfile.read_text())
    assert wait_gone(left, 30), "the script's child (pid %d) outlived the call" % left


def test_an_interpreter_that_is_not_python_is_an_interpreter_error(cli, scripts):
    s = scripts.func("double.py", "data * 2")
    o = cli("run", s, "--python", "/bin/false", input="1 2 3")
    expect_failure(o, 7, "the Python interpreter '/bin/false' exited with status 1",
                   "before pyrmap's bootstrap started", "double.py")


def test_a_scalar_result_feeds_the_next_stage(cli, scripts):
    total = scripts.func("sum.py", "np.sum(data)")
    plus_one = scripts.func("plus_one.py", "data[0] + 1")  # the seed's example 7 indexes it
    o = cli("pipeline", total, plus_one, input="1 2 3")
    assert o.rc == 0, o
    assert o.out.split() == ["7.0"]
    o = cli("pipeline", total, plus_one, "-k", input="1 2 3")
    assert o.rc == 0, o
    assert "6.0" in o.out and "7.0" in o.out, o


def test_an_input_the_script_keeps_is_not_overwritten_by_its_result(cli, scripts):
    # A result the size of the input may be written over the input's pages,
    # but not while the script still holds a view of its input.
    s = scripts.func("keeper.py", """
        KEPT["view"] = data[1:]
        KEPT["copy"] = np.array(data[1:])
        return data * 10
    """, prelude="""
        import atexit
        KEPT = {}

        def check():
            if not np.array_equal(KEPT["view"], KEPT["copy"]):
                sys.stderr.write("the kept input changed: %s\\n" % KEPT["view"][:3])
                os._exit(9)

        atexit.register(check)
    """)
    o = cli("run", s, input=" ".join(str(i) for i in range(1000)))
    assert o.rc == 0, o
    assert [float(v) for v in o.out.split()] == [10.0 * i for i in range(1000)]


def test_invalid_utf8_from_a_script_is_reported_as_valid_text(pyrmap_bin, scripts):
    s = scripts.func("bytes.py", """
        sys.stderr.buffer.write(b"raw \\xff\\xfe bytes\\n")
        sys.stderr.flush()
        os._exit(3)
    """)
    p = subprocess.run([pyrmap_bin, "run", s], input=b"1", capture_output=True, env=base_env(),
                       timeout=60)
    assert p.returncode == 3, p
    # The script's own stderr is relayed as it is; pyrmap's message, which
    # quotes its end, is valid UTF-8.
    message = p.stderr[p.stderr.index(b"pyrmap: "):]
    text = message.decode("utf-8")  # raises if not valid
    assert "exited with status 3" in text and "raw \ufffd\ufffd bytes" in text, text
