"""End to end through the bootstrap, in a subprocess, with the test acting as
the runner: it creates the segments, writes the header (state 0), starts
`python -c "from pyrmap._bootstrap import main; main()" SCRIPT`, and reads
the header and the result segment after the process exits."""

import os
import subprocess
import textwrap
import time

import numpy as np
import pytest

from conftest import BOOTSTRAP, PYTHON, PYTHON_DIR, no_numpy_python
from pyrmap import _header as H

DOUBLE = """\
import sys
import numpy as np
from pyrmap import process_via_mmap

@process_via_mmap
def process(data):
    print("shape", data.shape, "writeable", data.flags.writeable, "argv", sys.argv[1:])
    return data * 2

if __name__ == "__main__":
    process()
"""


def frames_are_the_users(text, script):
    assert "_bootstrap" not in text and "runpy" not in text and "<string>" not in text
    assert "pyrmap/" not in text and "importlib" not in text
    if "Traceback" in text:
        first = text.split("\n")[1]
        assert first.startswith('  File "%s"' % script), text


def test_normal_script(call, script):
    x = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(3, 2))
    call.setup(x, flags=1)
    path = script(DOUBLE)
    p = call.popen(path, "a", "b c")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "shape (3, 2) writeable False argv ['a', 'b c']" in out
    h = call.read_header()
    assert h.state == 1 and h.worker_pid == p.pid and h.error_type == ""
    assert h.result.describe() == "float64[3, 2] (column-major)"
    np.testing.assert_array_equal(call.result_array(), x * 2)
    assert call.result_bytes() == (x * 2).tobytes(order="F")


def test_script_directory_is_first_on_sys_path(call, script, tmp_path):
    call.setup(np.arange(4, dtype=np.int32))
    script("def triple(a):\n    return a * 3\n", name="helpers.py")
    path = script("import sys\nfrom helpers import triple\nfrom pyrmap import process_via_mmap\n"
                  "print('argv0', sys.argv[0])\n"
                  "print('path0', sys.path[0])\n"
                  "process_via_mmap(triple)()\n")
    p = call.run(path, cwd="/")
    assert p.returncode == 0, p.stderr
    assert "argv0 %s" % path in p.stdout
    assert "path0 %s" % os.path.realpath(str(tmp_path)) in p.stdout
    np.testing.assert_array_equal(call.result_array(), [0, 3, 6, 9])


def test_function_mode(call, script, tmp_path):
    call.setup(np.arange(5, dtype=np.float32))
    path = script(textwrap.dedent("""\
        import numpy as np
        from pyrmap import process_via_mmap

        def helper(x):
            return x + 1

        @process_via_mmap
        def decorated(data):
            return helper(data) * 10

        def plain(data):
            return data.sum(keepdims=True)

        if __name__ == "__main__":
            open(%r, "w").write("main ran")
            raise SystemExit("the main block must not run")
        """ % str(tmp_path / "marker")))
    p = call.run(path, PYRMAP_FUNCTION="decorated")
    assert p.returncode == 0, p.stderr
    np.testing.assert_array_equal(call.result_array(), (np.arange(5) + 1) * 10)
    assert not (tmp_path / "marker").exists()


def test_function_mode_plain_function(make_call, script):
    call = make_call()
    call.setup(np.arange(5, dtype=np.float32))
    path = script("def plain(data):\n    return data.sum(keepdims=True)\n",
                  name="json.py")  # a module name that is taken
    p = call.run(path, PYRMAP_FUNCTION="plain")
    assert p.returncode == 0, p.stderr
    np.testing.assert_array_equal(call.result_array(), [10.0])


def test_function_mode_missing_name_lists_functions(call, script):
    call.setup(np.zeros(1))
    path = script("import os\nfrom pyrmap import process_via_mmap\n\n"
                  "def alpha(d):\n    return d\n\n@process_via_mmap\ndef beta(d):\n    return d\n"
                  "value = 3\n")
    p = call.run(path, PYRMAP_FUNCTION="gamma")
    assert p.returncode == 1
    h = call.read_header()
    # Its own type, which the runner reports as a usage error, said once.
    assert (h.state, h.error_type) == (2, "pyrmap.FunctionNotFound")
    assert "has no function 'gamma'" in h.error_text
    assert "PYRMAP_FUNCTION" not in h.error_text
    assert "the functions it defines: alpha, beta" in h.error_text
    assert "gamma" not in p.stderr  # recorded in the header, reported by the runner only
    call.write_header(call.header_in)  # a fresh header for the second run
    p2 = call.run(path, PYRMAP_FUNCTION="value")
    assert p2.returncode == 1
    assert "'value' in the script" in call.read_header().error_text


def test_missing_script(call, tmp_path):
    call.setup(np.zeros(1))
    missing = tmp_path / "nope.py"
    p = call.run(missing)
    assert p.returncode == 1
    h = call.read_header()
    assert (h.state, h.error_type) == (2, "FileNotFoundError")
    assert "No such file or directory: '%s'" % missing in h.error_text
    assert "Traceback" not in h.error_text
    assert "FileNotFoundError" not in p.stderr  # the runner reports it


def test_missing_script_function_mode(call, tmp_path):
    call.setup(np.zeros(1))
    p = call.run(tmp_path / "nope.py", PYRMAP_FUNCTION="process")
    assert p.returncode == 1
    assert call.read_header().error_type == "FileNotFoundError"


def test_syntax_error(call, script):
    call.setup(np.zeros(1))
    path = script("import numpy\n\ndef process(data:\n    return data\n")
    p = call.run(path)
    assert p.returncode == 1
    h = call.read_header()
    assert (h.state, h.error_type) == (2, "SyntaxError")
    assert 'File "%s", line 3' % path in h.error_text
    assert "SyntaxError:" in h.error_text
    frames_are_the_users(h.error_text, path)
    assert "SyntaxError" not in p.stderr  # the runner reports it


def test_raising_script(call, script):
    call.setup(np.arange(3.0))
    path = script(textwrap.dedent("""\
        from pyrmap import process_via_mmap

        def check(data):
            if data.sum() > 0:
                raise ValueError("positive sum %g" % data.sum())

        @process_via_mmap
        def process(data):
            check(data)
            return data

        if __name__ == "__main__":
            process()
        """))
    p = call.run(path)
    assert p.returncode == 1
    h = call.read_header()
    assert (h.state, h.error_type, h.worker_pid) == (2, "ValueError", p.pid)
    assert h.error_text.startswith("Traceback (most recent call last):\n")
    frames_are_the_users(h.error_text, path)
    # The full stack from the script's top level down, as Python prints it.
    assert "line 13, in <module>\n    process()" in h.error_text
    assert "in process\n    check(data)" in h.error_text
    assert h.error_text.endswith("ValueError: positive sum 3\n")
    assert p.stderr == ""  # the traceback is in the header, not printed twice


def test_custom_exception_type(call, script):
    call.setup(np.zeros(1))
    path = script("class BadInput(Exception):\n    pass\n\nraise BadInput('no')\n")
    p = call.run(path)
    assert p.returncode == 1
    h = call.read_header()
    assert h.error_type == "__main__.BadInput"
    assert h.error_text.endswith("BadInput: no\n")


def test_long_traceback_keeps_its_end(call, script):
    call.setup(np.zeros(1))
    path = script("raise RuntimeError('x' * 5000 + ' bottom')\n")
    p = call.run(path)
    assert p.returncode == 1
    h = call.read_header()
    assert h.error_truncated and len(h.error_text.encode()) <= 3072
    assert h.error_text.endswith("x bottom\n")
    assert "Traceback" not in h.error_text  # the start was cut
    assert "Traceback" not in p.stderr  # the header holds it


def test_unstorable_result_from_a_script(call, script):
    call.setup(np.zeros(2))
    path = script("from pyrmap import process_via_mmap\n\n@process_via_mmap\n"
                  "def process(data):\n    return [1j, 2j]\n\nprocess()\n")
    p = call.run(path)
    assert p.returncode == 1
    h = call.read_header()
    assert h.error_type == "pyrmap.ResultTypeError"
    assert "a list with numpy dtype complex128" in h.error_text
    assert 'line 7, in <module>\n    process()' in h.error_text
    frames_are_the_users(h.error_text, path)


def test_script_that_never_calls_the_wrapper(call, script):
    call.setup(np.zeros(2))
    path = script("from pyrmap import process_via_mmap\n\n@process_via_mmap\n"
                  "def process(data):\n    return data\n")
    p = call.run(path)
    assert p.returncode == 1
    h = call.read_header()
    assert (h.state, h.error_type) == (2, "pyrmap.NoResult")
    assert 'if __name__ == "__main__":' in h.error_text
    assert "pyrmap.NoResult" not in p.stderr  # the header holds it


def test_exit_0_without_result_is_no_result(call, script):
    call.setup(np.zeros(2))
    p = call.run(script("import sys\nsys.exit(0)\n"))
    assert p.returncode == 1
    assert call.read_header().error_type == "pyrmap.NoResult"


def test_exit_0_after_the_result(call, script):
    call.setup(np.zeros(2))
    p = call.run(script("import sys\nfrom pyrmap import process_via_mmap\n"
                        "process_via_mmap(lambda d: d + 1)()\nsys.exit()\n"))
    assert p.returncode == 0, p.stderr
    np.testing.assert_array_equal(call.result_array(), [1, 1])


def test_sys_exit_status_propagates(call, script):
    call.setup(np.zeros(2))
    path = script("import sys\nsys.exit(3)\n")
    p = call.run(path)
    assert p.returncode == 3
    h = call.read_header()
    assert (h.state, h.error_type) == (2, "SystemExit")
    assert h.error_text.endswith("SystemExit: 3\n")
    frames_are_the_users(h.error_text, path)


def test_sys_exit_message(call, script):
    call.setup(np.zeros(2))
    p = call.run(script("import sys\nsys.exit('giving up')\n"))
    assert p.returncode == 1 and "giving up" in p.stderr
    assert call.read_header().error_type == "SystemExit"


def test_error_after_the_result_fails_the_run(call, script):
    call.setup(np.zeros(2))
    p = call.run(script("from pyrmap import process_via_mmap\n"
                        "process_via_mmap(lambda d: d)()\nraise OSError('later')\n"))
    assert p.returncode == 1
    h = call.read_header()
    assert (h.state, h.error_type) == (2, "OSError")


def test_caught_wrapper_error_still_fails_the_run(call, script):
    call.setup(np.zeros(2))
    p = call.run(script("from pyrmap import process_via_mmap\n\n@process_via_mmap\n"
                        "def process(data):\n    raise LookupError('first')\n\n"
                        "try:\n    process()\nexcept LookupError:\n    print('swallowed')\n"))
    assert p.returncode == 1
    assert "swallowed" in p.stdout
    h = call.read_header()
    assert (h.state, h.error_type) == (2, "LookupError")
    assert "LookupError: first" not in p.stderr  # the header holds it


def test_first_error_is_kept(call, script):
    call.setup(np.zeros(2))
    p = call.run(script("from pyrmap import process_via_mmap\n\n@process_via_mmap\n"
                        "def process(data):\n    raise LookupError('first')\n\n"
                        "try:\n    process()\nexcept LookupError:\n"
                        "    raise RuntimeError('consequence')\n"))
    assert p.returncode == 1
    h = call.read_header()
    assert h.error_type == "LookupError"
    assert "RuntimeError: consequence" not in p.stderr  # neither error is printed


def test_second_process_call_is_an_error(call, script):
    call.setup(np.zeros(2))
    p = call.run(script("from pyrmap import process_via_mmap\n"
                        "f = process_via_mmap(lambda d: d)\nf()\nf()\n"))
    assert p.returncode == 1
    h = call.read_header()
    assert h.error_type == "pyrmap.ProtocolError"
    assert "only once per run" in h.error_text


def test_os_exit(call, script):
    call.setup(np.zeros(2))
    p = call.run(script("import os\nos._exit(3)\n"))
    assert p.returncode == 3
    h = call.read_header()
    assert h.state == 0 and h.error_type == "" and h.result == H.ArrayDesc()


def test_empty_input_and_result(call, script):
    call.setup(np.zeros((0, 3), np.float64, order="F"), flags=1)
    p = call.run(script("from pyrmap import process_via_mmap\n"
                        "process_via_mmap(lambda d: d[:, :0] + 1)()\n"))
    assert p.returncode == 0, p.stderr
    h = call.read_header()
    assert h.result.shape == (0, 0) and h.result.nbytes == 0
    assert call.result_bytes() == b""


def test_scalar_result_from_a_script(call, script):
    call.setup(np.arange(10, dtype=np.int32))
    p = call.run(script("from pyrmap import process_via_mmap\n"
                        "process_via_mmap(lambda d: d.sum())()\n"))
    assert p.returncode == 0, p.stderr
    h = call.read_header()
    assert h.result.shape == (1,) and h.result.dtype_name == "int64"
    assert call.result_array() == 45


def test_outside_a_run(script):
    path = script(DOUBLE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYRMAP_")}
    env["PYTHONPATH"] = PYTHON_DIR
    p = subprocess.run([PYTHON, str(path)], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "pyrmap.NotConnectedError" in p.stderr and "pyrmap run" in p.stderr
    # The bootstrap without a runner: the script's own outcome.
    p = subprocess.run([PYTHON, "-c", BOOTSTRAP, str(script("print('hi')\n", "ok.py"))],
                       env=env, capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout) == (0, "hi\n")
    p = subprocess.run([PYTHON, "-c", BOOTSTRAP], env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and "usage" in p.stderr


# ------------------------------------------------------------------ ready pipe

def test_ready_byte_written_late(call, script):
    """The runner starts Python first, writes header and input, then the byte."""
    call.setup(None, create_header=False)
    x = np.arange(8, dtype=np.int64)
    path = script(DOUBLE)
    r, w = os.pipe()
    try:
        p = call.popen(path, pass_fds=(r,), PYRMAP_READY_FD=r)
        os.close(r)
        time.sleep(0.5)
        assert p.poll() is None  # waiting for the byte
        call.create(call.meta, H.encode(H.Header(input=H.ArrayDesc.make("int64", (8,)))))
        with open(call.path(call.data), "wb") as f:
            f.write(x.tobytes())
        os.write(w, b"\x01")
        out, err = p.communicate(timeout=60)
    finally:
        os.close(w)
    assert p.returncode == 0, err
    np.testing.assert_array_equal(call.result_array(), x * 2)


def test_ready_pipe_closed_without_the_byte(call, script):
    call.setup(np.zeros(2))
    r, w = os.pipe()
    p = call.popen(script(DOUBLE), pass_fds=(r,), PYRMAP_READY_FD=r)
    os.close(r)
    os.close(w)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1
    assert "the pyrmap runner went away" not in err  # recorded in the header
    h = call.read_header()
    assert h.error_type == "pyrmap.NotConnectedError"


# ------------------------------------------------------------------ no numpy

def test_interpreter_without_numpy(call, script):
    found = no_numpy_python()
    if found is None:
        pytest.skip("no interpreter without numpy on PATH")
    python, executable = found
    call.setup(np.zeros(2))
    r, w = os.pipe()
    os.write(w, b"\x01")
    try:
        p = call.popen(script(DOUBLE), python=python, pass_fds=(r,), PYRMAP_READY_FD=r)
        os.close(r)
        out, err = p.communicate(timeout=60)
    finally:
        os.close(w)
    assert p.returncode == 1
    h = call.read_header()
    assert (h.state, h.error_type) == (2, "pyrmap.NumpyMissing")
    assert h.error_text == ("the Python interpreter %s cannot import numpy "
                            "(No module named 'numpy')" % executable)
    assert h.error_text not in err  # recorded in the header, reported by the runner


def test_import_pyrmap_does_not_import_numpy_or_slow_modules():
    code = ("import sys; import pyrmap._bootstrap; "
            "print(sorted(m for m in ('numpy', 'runpy', 'traceback', 'dataclasses', "
            "'typing', 'pyrmap._array') if m in sys.modules))")
    p = subprocess.run([PYTHON, "-c", code], env=dict(os.environ, PYTHONPATH=PYTHON_DIR),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


# ------------------------------------------------------------------ no copies, at scale

MB = 1 << 20


def _max_rss_of(call, path, **env):
    """Runs the bootstrap and returns the child's peak RSS in bytes."""
    code = ("import resource, subprocess, sys\n"
            "p = subprocess.run(sys.argv[1:])\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
            "sys.exit(p.returncode)\n")
    p = subprocess.run([PYTHON, "-c", code, PYTHON, "-c", BOOTSTRAP, str(path)],
                       env=call.env(**env), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return int(p.stdout.split()[-1])


def test_large_arrays_are_not_copied(make_call, script):
    """A 160 MiB input returned as it is, and re-laid out from C to F order:
    the worker's peak RSS stays near one array (the shared mapping) plus
    numpy and a bounded staging buffer, far below two arrays."""
    size = 160 * MB
    shape = (size // 8 // 1000 // 4, 1000, 4)
    identity = script("from pyrmap import process_via_mmap\n"
                      "process_via_mmap(lambda d: d)()\n", name="identity.py")
    baseline = _max_rss_of(make_call().setup(np.zeros(1)), identity)
    for flags in (0, 1):
        call = make_call()
        x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
        call.setup(x, flags=flags)
        rss = _max_rss_of(call, identity)
        extra = rss - baseline
        print("flags", flags, "extra RSS MiB", extra // MB)
        assert extra < size + 40 * MB, (flags, extra / MB)
        got = call.result_array()
        assert got.shape == shape and got.flags.f_contiguous == bool(flags)
        assert np.array_equal(got, x)
        del got, x
        call.cleanup()
