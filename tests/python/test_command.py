"""pyrmap.run(), run_shared(), run_pipeline(): the runner from Python (the
built `pyrmap` command does the work; env PYRMAP names it), and
`python -m pyrmap` / the console script."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import PYTHON, PYTHON_DIR, REPO

import pyrmap

COMMAND = os.environ.get("PYRMAP") or os.path.join(REPO, "build", "pyrmap")


@pytest.fixture(autouse=True)
def the_built_command(monkeypatch):
    if not os.access(COMMAND, os.X_OK):
        pytest.skip("the pyrmap command is not built (%s)" % COMMAND)
    monkeypatch.setenv("PYRMAP_COMMAND", COMMAND)
    monkeypatch.delenv("PYRMAP_PYTHON", raising=False)


@pytest.fixture(autouse=True)
def nothing_left_in_dev_shm():
    before = set(os.listdir("/dev/shm"))
    yield
    left = [n for n in set(os.listdir("/dev/shm")) - before if n.startswith("pyrmap-")]
    assert not left, "left in /dev/shm: %s" % left


def script(tmp_path, name, body, prelude=""):
    path = tmp_path / name
    path.write_text("import sys, warnings\nimport numpy as np\nfrom pyrmap import process_via_mmap\n"
                    + textwrap.dedent(prelude) + "\n@process_via_mmap\ndef process(data):\n"
                    + textwrap.indent(textwrap.dedent(body).strip(), "    ")
                    + "\n\nif __name__ == '__main__':\n    process()\n")
    return str(path)


def test_run_returns_the_scripts_result(tmp_path):
    s = script(tmp_path, "plus.py", "return data * 2 + 1")
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    y = pyrmap.run(x, s)
    assert type(y) is np.ndarray and y.dtype == np.float64 and y.shape == (3, 4)
    np.testing.assert_array_equal(y, x * 2 + 1)
    y += 1  # a private, writable result
    np.testing.assert_array_equal(y, x * 2 + 2)


def test_the_script_sees_the_data_as_it_is(tmp_path):
    s = script(tmp_path, "seen.py", """
        assert not data.flags.writeable
        return np.array([data.shape[0], data.shape[1], data.flags.f_contiguous, data[0, 1]])""")
    f = np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3))
    np.testing.assert_array_equal(pyrmap.run(f, s), [2, 3, 1, 1])
    c = np.arange(6, dtype=np.int32).reshape(2, 3)
    np.testing.assert_array_equal(pyrmap.run(c, s), [2, 3, 0, 1])
    # A strided view is made contiguous first.
    np.testing.assert_array_equal(pyrmap.run(np.arange(24).reshape(4, 6)[::2, ::2], s), [2, 3, 0, 2])


@pytest.mark.parametrize("dtype", ["int32", "int64", "float32", "float64", "uint8", "bool"])
def test_every_dtype_round_trips(tmp_path, dtype):
    s = script(tmp_path, "same.py", "return data")
    x = (np.arange(5) % 2).astype(dtype)
    y = pyrmap.run(x, s)
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(y, x)


def test_dtype_fun_args_and_empty_input(tmp_path):
    s = tmp_path / "funcs.py"
    s.write_text("import sys\nimport numpy as np\n"
                 "def total(d):\n    return np.array([d.sum(), len(sys.argv) - 1], dtype=d.dtype)\n")
    np.testing.assert_array_equal(pyrmap.run([1, 2, 3], str(s), fun="total", dtype="int32",
                                             args=["a", "b"]), [6, 2])
    np.testing.assert_array_equal(pyrmap.run([1, 2, 3], str(s) + "::total"), [6, 0])
    assert pyrmap.run(np.zeros(0), str(s), fun="total").tolist() == [0, 0]


def test_run_shared_names_results_after_the_scripts(tmp_path):
    a = script(tmp_path, "a.py", "return data.sum()")
    d = tmp_path / "d"
    d.mkdir()
    b = script(d, "a.py", "return data.max()")
    c = script(tmp_path, "c.py", "return data.min()")
    out = pyrmap.run_shared(np.arange(5.0), [a, b, c], jobs=2)
    assert list(out) == ["a.py", "a.py.1", "c.py"]
    assert [v.tolist() for v in out.values()] == [[10.0], [4.0], [0.0]]
    pooled = pyrmap.run_shared(np.arange(5.0), [a, c], pool=True, jobs=2)
    assert [v.tolist() for v in pooled.values()] == [[10.0], [0.0]]


def test_run_pipeline_last_or_every_stage(tmp_path):
    a = script(tmp_path, "twice.py", "return np.repeat(data, 2)")
    b = script(tmp_path, "sum.py", "return data.sum()")
    assert pyrmap.run_pipeline([1.0, 2.0], [a, b]).tolist() == [6.0]
    every = pyrmap.run_pipeline([1.0, 2.0], [a, b], keep_intermediate=True)
    assert list(every) == ["twice.py", "sum.py"]
    assert every["twice.py"].tolist() == [1, 1, 2, 2] and every["sum.py"].tolist() == [6.0]
    assert pyrmap.run_pipeline([1.0, 2.0], [a, b], pool=True).tolist() == [6.0]


def test_a_script_error_is_a_script_error_with_its_traceback(tmp_path):
    s = script(tmp_path, "bad.py", "raise ValueError('wrong shape')")
    with pytest.raises(pyrmap.ScriptError) as e:
        pyrmap.run([1.0], s)
    assert e.value.exit_code == 3
    assert "ValueError: wrong shape" in e.value.message and "bad.py" in e.value.message
    assert "Traceback" in e.value.message
    assert isinstance(e.value, pyrmap.RunError) and isinstance(e.value, pyrmap.PyrmapError)


def test_usage_timeout_and_interpreter_errors(tmp_path):
    s = script(tmp_path, "ok.py", "return data")
    with pytest.raises(pyrmap.UsageError) as e:
        pyrmap.run([1.0], s, fun="nope")
    assert e.value.exit_code == 2 and "has no function 'nope'" in str(e.value)
    with pytest.raises(pyrmap.UsageError) as e:
        pyrmap.run([300], s, dtype="uint8")
    assert "300" in str(e.value) and "uint8" in str(e.value)
    with pytest.raises(pyrmap.UsageError):
        pyrmap.run(np.array(["a"]), s)
    with pytest.raises(pyrmap.UsageError) as e:
        pyrmap.run([1.0], str(tmp_path / "missing.py"))
    assert "missing.py" in str(e.value) and "not found" in str(e.value)
    slow = script(tmp_path, "slow.py", "import time; time.sleep(30); return data")
    with pytest.raises(pyrmap.ScriptTimeoutError) as e:
        pyrmap.run([1.0], slow, timeout=0.5)
    assert e.value.exit_code == 4 and isinstance(e.value, TimeoutError)
    with pytest.raises(pyrmap.InterpreterError) as e:
        pyrmap.run([1.0], s, python=str(tmp_path / "no-python"))
    assert e.value.exit_code == 7 and "no-python" in str(e.value)


def test_python_warnings_of_the_script_are_warnings_here(tmp_path):
    s = script(tmp_path, "warns.py", "warnings.warn('careful'); return data")
    with pytest.warns(pyrmap.ScriptWarning, match="careful"):
        pyrmap.run([1.0], s)


def test_the_scripts_output_passes_through(tmp_path, capsys):
    s = script(tmp_path, "talks.py", "print('to stdout'); print('to stderr', file=sys.stderr); return data")
    pyrmap.run([1.0], s)
    out, err = capsys.readouterr()
    assert out == "to stdout\n" and err == "to stderr\n"
    pyrmap.run([1.0], s, progress=True)
    out, err = capsys.readouterr()
    assert "pyrmap: input: stdin: float64[1], 8 B\n" in err
    assert "talks.py': done in " in err and "to stderr\n" in err


def test_the_command_is_found_or_the_error_says_where_it_was_looked_for(monkeypatch, tmp_path):
    assert pyrmap.find_command() == os.path.abspath(COMMAND)
    assert pyrmap.find_command(COMMAND) == os.path.abspath(COMMAND)
    fake = tmp_path / "pyrmap"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    with pytest.raises(pyrmap.CommandNotFoundError) as e:
        pyrmap.find_command(str(fake))  # a script, not the program
    assert str(fake) in str(e.value)
    monkeypatch.setenv("PYRMAP_COMMAND", str(tmp_path / "absent"))
    with pytest.raises(pyrmap.CommandNotFoundError) as e:
        pyrmap.run([1.0], "x.py")
    assert "PYRMAP_COMMAND" in str(e.value)


def test_no_temporary_file_is_left(tmp_path):
    s = script(tmp_path, "ok.py", "return data")
    before = set(os.listdir("/dev/shm"))
    pyrmap.run(np.ones(1000), s)
    with pytest.raises(pyrmap.ScriptError):
        pyrmap.run(np.ones(10), script(tmp_path, "bad.py", "raise KeyError(1)"))
    assert set(os.listdir("/dev/shm")) == before


def test_importing_pyrmap_loads_neither_numpy_nor_the_runner_api():
    p = subprocess.run([PYTHON, "-c", "import sys, pyrmap; "
                        "print('numpy' in sys.modules, 'pyrmap._command' in sys.modules, "
                        "'pyrmap.registry' in sys.modules); "
                        "pyrmap.run; print('pyrmap._command' in sys.modules)"],
                       env=dict(os.environ, PYTHONPATH=PYTHON_DIR), capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["False", "False", "False", "True"]


def test_python_m_pyrmap(tmp_path):
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
    p = subprocess.run([PYTHON, "-m", "pyrmap", "--help"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("usage: python -m pyrmap"), p
    for word in ("info", "vars", "get", "run, shared, pipeline, ls, gc", "examples:"):
        assert word in p.stdout, word
    p = subprocess.run([PYTHON, "-m", "pyrmap", "info"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    lines = dict(l.split(": ", 1) for l in p.stdout.splitlines())
    assert lines["python"].startswith(PYTHON) and lines["numpy"] == np.__version__
    assert lines["command"].startswith(os.path.abspath(COMMAND) + " (pyrmap ")
    assert lines["segment directory"].startswith("/dev/shm (") and "free of" in lines["segment directory"]
    # The command's subcommands, with this interpreter for the scripts.
    s = script(tmp_path, "sum.py", "return data.sum()")
    env.pop("PYRMAP_PYTHON", None)
    p = subprocess.run([PYTHON, "-m", "pyrmap", "run", s], input="1,2,3\n", env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == "6.0\n", p
    p = subprocess.run([PYTHON, "-m", "pyrmap"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout.startswith("usage:"), p
