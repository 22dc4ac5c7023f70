"""pyrmap.run(), run_shared() and run_pipeline(): the runner, from Python.

The ``pyrmap`` command does the work, exactly as from the shell or R: it
puts the input into shared memory, starts the scripts (each in its own
Python process, which receives the input as a read-only numpy view) and
hands back their results. This module streams the array to the command's
stdin as ``.npy`` (without a copy for contiguous arrays), lets it write each
result as a ``.npy`` file into a private temporary directory (in the
segment directory when that is RAM, so nothing touches a disk), maps the
result copy-on-write and removes the file at once: the result costs one
write, and its memory goes when the array does.

The command is found by find_command(): the ``command`` argument, else the
environment variable PYRMAP_COMMAND, else beside this package (the source
tree's ``build/pyrmap``, the R package's ``bin/pyrmap``), else ``pyrmap`` on
PATH. Failures raise pyrmap.RunError subclasses by exit code (UsageError 2,
ScriptError 3, ScriptTimeoutError 4, InterpreterError 7, RunError for the
rest); a script's Python warnings are reissued here as
pyrmap.ScriptWarning; a script's own output passes through to sys.stdout
and sys.stderr. KeyboardInterrupt stops the command (and its scripts) and
is raised again once it has cleaned up.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import warnings
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Union

from . import _segment_dir
from ._errors import (CommandNotFoundError, InterpreterError, RunError, ScriptError,
                      ScriptTimeoutError, ScriptWarning, UsageError)

if TYPE_CHECKING:
    import numpy as np

__all__ = ["find_command", "run", "run_pipeline", "run_shared"]

ENV_COMMAND = "PYRMAP_COMMAND"
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ERRORS = {2: UsageError, 3: ScriptError, 4: ScriptTimeoutError, 7: InterpreterError}
_PROGRESS = re.compile(r"^pyrmap: (input|output|(\[\d+(-\d+)?/\d+\] )?(script|pipeline) '.+'): ")
_WARNING = "pyrmap: warning: "

Funs = Union[None, str, Sequence[Optional[str]]]


def _is_program(path: str) -> bool:
    """An executable ELF file (the command, not a script named after it)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF" and os.access(path, os.X_OK)
    except OSError:
        return False


def find_command(command: Optional[str] = None) -> str:
    """The path of the ``pyrmap`` command: `command` if given, else
    $PYRMAP_COMMAND, else the one beside this package (source tree or R
    package), else ``pyrmap`` on PATH. Raises pyrmap.CommandNotFoundError
    naming every place looked in."""
    if command:
        found = shutil.which(command) if os.sep not in command else command
        if found and _is_program(found):
            return os.path.abspath(found)
        raise CommandNotFoundError("the pyrmap command %r is not an executable program" % command)
    looked = []
    env = os.environ.get(ENV_COMMAND, "")
    if env:
        if _is_program(env):
            return os.path.abspath(env)
        raise CommandNotFoundError("%s=%r is not an executable program" % (ENV_COMMAND, env))
    for rel in ("../build/pyrmap", "../bin/pyrmap"):
        cand = os.path.normpath(os.path.join(_PACKAGE_PARENT, rel))
        looked.append(cand)
        if _is_program(cand):
            return cand
    on_path = shutil.which("pyrmap")
    looked.append("pyrmap on PATH")
    if on_path and _is_program(on_path):
        return os.path.abspath(on_path)
    raise CommandNotFoundError(
        "the pyrmap command was not found (looked at %s): build it (make, in the pyrmap sources) "
        "and set %s to its path, or put it on PATH; the R package installs it too "
        "(pyrmap::pyrmap_command() in R gives its path)" % (", ".join(looked), ENV_COMMAND))


def _specs(scripts: Sequence[str], fun: Funs) -> List[str]:
    """'script.py' plus a function name -> 'script.py::name' (as R's fun =)."""
    for s in scripts:
        if not isinstance(s, (str, os.PathLike)) or not os.fspath(s):
            raise TypeError("scripts must be paths (strings), not %r" % (s,))
    paths = [os.fspath(s) for s in scripts]
    if fun is None:
        return paths
    funs = [fun] * len(paths) if isinstance(fun, str) else list(fun)
    if len(funs) != len(paths):
        raise ValueError("fun must be one function name, or one per script (%d), not %d"
                         % (len(paths), len(funs)))
    out = []
    for path, f in zip(paths, funs):
        if f and "::" in path:
            raise ValueError("give the function either in fun or as 'script.py::name', not both: %r"
                             % path)
        out.append(path + "::" + f if f else path)
    return out


def _result_names(scripts: Sequence[str]) -> List[str]:
    """The scripts' base names, made unique as R's make.unique() does
    ('a.py', 'a.py.1', ...): the keys of run_shared()'s result."""
    names, seen = [], {}
    for s in scripts:
        base = os.path.basename(os.fspath(s))
        name = base
        while name in seen:
            seen[base] = seen.get(base, 0) + 1
            name = "%s.%d" % (base, seen[base])
        seen.setdefault(name, 0)
        names.append(name)
    return names


def _stem(script: str) -> str:
    """The stem the command gives a result file of `script` (output.cc)."""
    base = os.path.basename(script)
    return base[:-3] if base.endswith(".py") else base


def _as_input(data) -> "np.ndarray":
    import numpy as np

    arr = np.asarray(data)
    if arr.dtype.kind not in "biuf" or arr.dtype.byteorder == ">":
        raise UsageError("pyrmap.run: the data is an array of dtype %s; give numbers or booleans "
                         "(int32, int64, float32, float64, uint8, bool, or a type that converts to "
                         "one of them exactly)" % arr.dtype, 2)
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        arr = np.ascontiguousarray(arr)
    return arr


def _load(path: str) -> "np.ndarray":
    """The result file as a private, writable, copy-on-write mapping (a
    plain array when it is empty); the file can be removed afterwards."""
    import numpy as np

    try:
        arr = np.load(path, mmap_mode="c", allow_pickle=False)
    except ValueError:  # an empty array cannot be mapped
        return np.load(path, allow_pickle=False)
    return arr.view(np.ndarray)


class _Outcome:
    def __init__(self):
        self.stdout = b""
        self.error_lines: List[str] = []
        self.warnings: List[str] = []
        self.stderr: List[str] = []


def _pump_stderr(pipe, progress: bool, out: _Outcome) -> None:
    """Sorts the command's stderr: the scripts' own output and (with
    progress) the progress lines go on to sys.stderr as they come; warning
    lines are kept for warnings.warn; the error (the first other
    "pyrmap: " line and all after it) is kept for the exception."""
    for raw in iter(pipe.readline, b""):
        line = raw.decode("utf-8", "replace")
        out.stderr.append(line)
        text = line.rstrip("\n")
        if out.error_lines:
            out.error_lines.append(text)
        elif text.startswith(_WARNING):
            out.warnings.append(text[len(_WARNING):])
        elif _PROGRESS.match(text):
            if progress:
                sys.stderr.write(line)
        elif text.startswith("pyrmap: "):
            out.error_lines.append(text[len("pyrmap: "):])
        else:
            sys.stderr.write(line)
    pipe.close()


def _pump_stdout(pipe, out: _Outcome) -> None:
    for chunk in iter(lambda: pipe.read1(65536), b""):
        try:
            sys.stdout.write(chunk.decode("utf-8", "replace"))
        except (OSError, ValueError):
            pass
    pipe.close()


def _feed(pipe, arr) -> None:
    """Writes `arr` as .npy into `pipe`: the header, then the array's own
    memory (C order, or F order for a Fortran-ordered array), no copy."""
    import numpy as np

    try:
        fmt = np.lib.format
        fmt.write_array_header_1_0(pipe, fmt.header_data_from_array_1_0(arr))
        flat = arr.T if (arr.flags.f_contiguous and not arr.flags.c_contiguous) else arr
        if flat.size:
            view = memoryview(flat.reshape(-1)).cast("B")
            for start in range(0, len(view), 1 << 24):
                pipe.write(view[start:start + (1 << 24)])
    except (BrokenPipeError, OSError):
        pass  # the command stopped reading: its exit code says why
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def _invoke(argv: List[str], arr, progress: bool, env: Dict[str, str]) -> None:
    out = _Outcome()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, close_fds=True)
    threads = [threading.Thread(target=_feed, args=(proc.stdin, arr), daemon=True),
               threading.Thread(target=_pump_stdout, args=(proc.stdout, out), daemon=True),
               threading.Thread(target=_pump_stderr, args=(proc.stderr, progress, out), daemon=True)]
    for t in threads:
        t.start()
    try:
        rc = proc.wait()
    except KeyboardInterrupt:
        # The command kills its scripts and removes its segments on SIGINT.
        proc.send_signal(signal.SIGINT)
        proc.wait()
        for t in threads:
            t.join()
        raise
    for t in threads:
        t.join()
    for text in out.warnings:
        warnings.warn(text, ScriptWarning, stacklevel=4)
    if rc != 0:
        message = "\n".join(out.error_lines) or ("the pyrmap command exited with %s" % (
            "signal %d" % -rc if rc < 0 else "code %d" % rc))
        raise _ERRORS.get(rc, RunError)(message, rc, "".join(out.stderr))


def _call(mode: str, data, scripts: Sequence[str], fun: Funs, extra: List[str], *,
          dtype: Optional[str], args: Sequence[str], timeout: Optional[float], python: Optional[str],
          segment_dir: Optional[str], progress: bool, command: Optional[str],
          outputs: Optional[List[str]]) -> List["np.ndarray"]:
    if isinstance(scripts, (str, os.PathLike)):
        scripts = [scripts]
    if not scripts:
        raise ValueError("no script given")
    specs = _specs(scripts, fun)
    arr = _as_input(data)
    exe = find_command(command)
    interpreter = python or os.environ.get("PYRMAP_PYTHON") or sys.executable
    base = _segment_dir.resolve(segment_dir)
    if not (base == _segment_dir.SHM_DIR or _segment_dir._is_ram_fs(base)) or not os.path.isdir(base):
        base = None  # a disk directory: the system's temporary directory serves as well
    with tempfile.TemporaryDirectory(prefix="pyrmap-py-", dir=base) as tmp:
        argv = [exe, mode] + specs + ["-i", "-", "--input-format", "npy", "--python", interpreter]
        if dtype is not None:
            argv += ["-d", str(dtype)]
        if timeout is not None:
            argv += ["-t", repr(float(timeout))]
        if segment_dir is not None:
            argv += ["--segment-dir", segment_dir]
        for a in args:
            argv += ["-a", str(a)]
        if progress:
            argv.append("-v")
        if outputs is None:  # one result file
            argv += ["-o", os.path.join(tmp, "result.npy")]
            files = [os.path.join(tmp, "result.npy")]
        else:
            argv += ["--output-dir", tmp]
            files = [os.path.join(tmp, "%d-%s.npy" % (k + 1, _stem(s.split("::")[0])))
                     for k, s in enumerate(outputs)]
        _invoke(argv + extra, arr, progress, dict(os.environ))
        return [_load(f) for f in files]


def run(data, script: str, *, fun: Optional[str] = None, dtype: Optional[str] = None,
        args: Sequence[str] = (), timeout: Optional[float] = None, python: Optional[str] = None,
        segment_dir: Optional[str] = None, progress: bool = False,
        command: Optional[str] = None) -> "np.ndarray":
    """Runs the Python script `script` over `data` with the pyrmap command
    and returns its result, as ``pyrmap run`` does.

    The script is a pyrmap script (``@process_via_mmap``, called under
    ``if __name__ == "__main__":``), or name one of its functions with `fun`
    (or ``"script.py::name"``): it is called with the input array. It runs
    in its own process, which sees `data` as a read-only numpy view of
    shared memory.

    Args:
        data: an array (or anything numpy.asarray() accepts) of numbers or
            booleans.
        script: the script's path.
        fun: the name of a function of the script to call with the input.
        dtype: the element type the script receives ("int32", "int64",
            "float32", "float64", "uint8", "bool"); values that do not fit
            exactly are an error. Default: the data's own.
        args: the script's sys.argv[1:].
        timeout: seconds the script may run before it is killed.
        python: the interpreter for the script: default $PYRMAP_PYTHON,
            else this one (sys.executable).
        segment_dir: where the shared memory is made: "RAM" (/dev/shm),
            "DISK", or a directory; default $PYRMAP_SEGMENT_DIR, else RAM.
        progress: print the command's progress lines on stderr.
        command: the pyrmap command (see find_command()).

    Returns:
        The result: a writable array (a private copy-on-write mapping of
        the result the script wrote).

    Raises:
        pyrmap.UsageError, pyrmap.ScriptError, pyrmap.ScriptTimeoutError,
        pyrmap.InterpreterError, pyrmap.RunError (the command's message
        and exit code), pyrmap.CommandNotFoundError.
    """
    return _call("run", data, [script], fun, [], dtype=dtype, args=args, timeout=timeout,
                 python=python, segment_dir=segment_dir, progress=progress, command=command,
                 outputs=None)[0]


def run_shared(data, scripts: Sequence[str], *, jobs: int = 1, pool: bool = False, fun: Funs = None,
               dtype: Optional[str] = None, args: Sequence[str] = (),
               timeout: Optional[float] = None, python: Optional[str] = None,
               segment_dir: Optional[str] = None, progress: bool = False,
               command: Optional[str] = None) -> Dict[str, "np.ndarray"]:
    """Runs several scripts over one shared copy of `data` (``pyrmap
    shared``) and returns {script name: result}, in the scripts' order
    (names as R's run_python_shared_data() gives them: the base names, made
    unique with ".1", ".2", ...).

    `jobs` scripts run at once; `pool` runs them on warm workers (numpy
    imported once per worker). `fun` is one function name, or one per script
    (None for none). The other arguments and the errors are run()'s.
    """
    if isinstance(scripts, (str, os.PathLike)):
        scripts = [scripts]
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError("jobs must be a whole number >= 1, not %r" % (jobs,))
    extra = ["-j", str(jobs)] + (["--pool"] if pool else [])
    results = _call("shared", data, scripts, fun, extra, dtype=dtype, args=args, timeout=timeout,
                    python=python, segment_dir=segment_dir, progress=progress, command=command,
                    outputs=[os.fspath(s) for s in scripts])
    return dict(zip(_result_names(scripts), results))


def run_pipeline(data, scripts: Sequence[str], *, keep_intermediate: bool = False,
                 pool: bool = False, fun: Funs = None, dtype: Optional[str] = None,
                 args: Sequence[str] = (), timeout: Optional[float] = None,
                 python: Optional[str] = None, segment_dir: Optional[str] = None,
                 progress: bool = False,
                 command: Optional[str] = None) -> Union["np.ndarray", Dict[str, "np.ndarray"]]:
    """Runs the scripts as a pipeline (``pyrmap pipeline``): each gets the
    previous one's result as its input, without a copy. Returns the last
    result, or with `keep_intermediate` {script name: result} of every stage
    (names as in run_shared()). `pool` runs every stage in one warm worker.
    The other arguments and the errors are run()'s.
    """
    if isinstance(scripts, (str, os.PathLike)):
        scripts = [scripts]
    extra = (["-k"] if keep_intermediate else []) + (["--pool"] if pool else [])
    if keep_intermediate:
        results = _call("pipeline", data, scripts, fun, extra, dtype=dtype, args=args,
                        timeout=timeout, python=python, segment_dir=segment_dir,
                        progress=progress, command=command,
                        outputs=[os.fspath(s) for s in scripts])
        return dict(zip(_result_names(scripts), results))
    return _call("pipeline", data, scripts, fun, extra, dtype=dtype, args=args, timeout=timeout,
                 python=python, segment_dir=segment_dir, progress=progress, command=command,
                 outputs=None)[0]
