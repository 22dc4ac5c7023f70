"""The entry point the pyrmap runner starts:

    <python> -c "from pyrmap._bootstrap import main; main()" SCRIPT [ARGS...]

Contract (docs/protocol.md, "The Python side's duties"): ``main`` never
returns; it exits 0 only when the run's header holds a result (state 1).
Every other ending records an error in the header (state 2) and exits
non-zero; the runner reports it (it is printed on stderr here only when the
header cannot be reached, e.g. outside a run):

- numpy cannot be imported: error type ``pyrmap.NumpyMissing``, exit 1;
- the script is missing, does not compile or raises: the exception's type and
  its traceback (starting at the script's frames), exit 1;
- ``sys.exit(n)`` with n != 0: error type ``SystemExit``, exit n;
- the script ends (or exits 0) without storing a result: error type
  ``pyrmap.NoResult``, exit 1.

The script runs as ``__main__`` with sys.argv = [SCRIPT, *ARGS] and its
directory first on sys.path, as ``python SCRIPT`` would run it; with
PYRMAP_FUNCTION set it is loaded under its own module name instead and that
function is called with the input. Start-up cost matters (the runner may
start many short scripts): nothing heavier than os and sys is imported
before numpy, and traceback only on an error.
"""

import os
import sys

from . import _meta
from ._errors import FunctionNotFound, ProtocolError

_USAGE = ('usage: python -c "from pyrmap._bootstrap import main; main()" '
          "SCRIPT [ARGS...]\n")

NO_RESULT = (
    "the script finished without storing a result: it must call its "
    "@process_via_mmap function with no arguments under "
    "`if __name__ == \"__main__\":` (for example `process()`), or the runner "
    "must name the function to call (PYRMAP_FUNCTION)")


def main():
    """Runs the script named by sys.argv[1] as a pyrmap run; never returns."""
    _meta.watch_caller()
    argv = sys.argv[1:]
    if not argv:
        sys.stderr.write(_USAGE)
        raise SystemExit(2)
    raise SystemExit(_run(argv[0], argv[1:]))


# ------------------------------------------------------------------ header access

def _note(text: str) -> None:
    sys.stderr.write("pyrmap: %s\n" % text)


def _open_meta():
    """The run's meta segment, after the ready byte (or EOF), or None when
    there is no run or its header cannot be used (said on stderr)."""
    try:
        meta = _meta.Meta.from_env()
        if meta is None:
            return None
    except (OSError, ProtocolError) as e:
        _note("cannot record the outcome in the header: %s" % e)
        return None
    try:
        _meta.wait_ready(required=False)
        meta.read()  # only a valid pyrmap header is written to
        return meta
    except (OSError, ProtocolError) as e:
        meta.close()
        _note("cannot record the outcome in the header: %s" % e)
        return None


def _record_text(error_type: str, text: str) -> bool:
    """Records an error; True if the header now holds it (the runner then
    reports it, so it is not printed here as well)."""
    meta = _open_meta()
    if meta is not None:
        with meta:
            try:
                meta.write_error(error_type, text)
                return True
            except OSError as e:
                _note("cannot record the error in the header: %s" % e)
    return False


def _record_exception(exc: BaseException) -> bool:
    """Records exc unless the header already holds an earlier, different
    error (the first error is the cause; later ones are its consequences).
    A result stored before the exception is replaced by the error: the run
    failed. True if the header holds an error afterwards."""
    from . import _runtime

    meta = _open_meta()
    if meta is None:
        return False
    with meta:
        try:
            if meta.state() == 2 and _runtime.recorded_exception() is not exc:
                return True
            _runtime.record_error(meta, exc)  # again if recorded: fuller traceback now
            return True
        except OSError as e:
            _note("cannot record the error in the header: %s" % e)
    return False


# ------------------------------------------------------------------ running

def _import_numpy():
    try:
        import numpy  # noqa: F401  (the check itself, and the runner's warm-up)
    except Exception as e:  # not only ImportError: a broken build raises others
        why = str(e) if isinstance(e, ImportError) else "%s: %s" % (type(e).__name__, e)
        return "the Python interpreter %s cannot import numpy (%s)" % (sys.executable, why)
    return None


def _set_path(script: str) -> None:
    if getattr(sys.flags, "safe_path", False):
        return  # python -P: `python SCRIPT` would not add the directory either
    directory = os.path.dirname(os.path.realpath(script))
    if sys.path and sys.path[0] == "":  # what -c put there: the working directory
        sys.path[0] = directory
    else:
        sys.path.insert(0, directory)


def _run_main(script: str) -> None:
    """Runs a script file in a fresh __main__ module as `python SCRIPT`
    does (__file__ and code file name absolute). Not runpy.run_path: its
    import of pkgutil and typing alone costs milliseconds per run. A
    directory or zip archive with a __main__.py still goes through runpy."""
    if not os.path.isfile(script):
        if not os.path.exists(script):
            import errno

            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), script)
        import runpy

        runpy.run_path(script, run_name="__main__")
        return
    import io
    import types

    path = os.path.abspath(script)
    with io.open_code(path) as f:
        source = f.read()
    code = compile(source, path, "exec", dont_inherit=True)
    module = types.ModuleType("__main__")
    module.__file__ = path
    module.__cached__ = None
    # Stays installed after the script returns: atexit handlers and pickling
    # during shutdown may still look the script's names up in __main__.
    sys.modules["__main__"] = module
    exec(code, module.__dict__)


def _load_module(script: str):
    """Executes the script as a module named after it (or __pyrmap_script__
    when that name is taken or not an identifier), registered in
    sys.modules; no bytecode is written next to the script."""
    import types

    path = os.path.abspath(script)
    with open(path, "rb") as f:
        source = f.read()
    stem = os.path.splitext(os.path.basename(path))[0]
    name = stem if stem.isidentifier() and stem not in sys.modules else "__pyrmap_script__"
    module = types.ModuleType(name)
    module.__file__ = path
    sys.modules[name] = module
    exec(compile(source, path, "exec", dont_inherit=True), module.__dict__)
    return module


def _call_function(script: str, name: str) -> None:
    import types

    from ._runtime import run_function

    module = _load_module(script)
    func = getattr(module, name, None)
    if func is None:
        defined = sorted(
            k for k, v in vars(module).items()
            if isinstance(v, types.FunctionType) and not k.startswith("__")
            and getattr(v, "__module__", None) == module.__name__)
        raise FunctionNotFound(
            "the script %s has no function %r; %s"
            % (script, name, "the functions it defines: " + ", ".join(defined) if defined
               else "it defines no functions"))
    if not callable(func):
        raise TypeError("%r in the script %s is a %s, not a function"
                        % (name, script, type(func).__name__))
    run_function(getattr(func, "__pyrmap_function__", func))


def _finish() -> int:
    """The script ended normally: 0 if a result is stored, else 1."""
    meta = _open_meta()
    if meta is None:
        # Outside a run the script's own ending is the outcome.
        return 0 if _meta.ENV_META not in os.environ else 1
    with meta:
        try:
            header = meta.read()
            if header.state == 1:
                return 0
            if header.state == 2:
                # Recorded by a process_via_mmap call whose exception the
                # script caught; the runner reports it.
                return 1
            meta.write_error("pyrmap.NoResult", "pyrmap.NoResult: " + NO_RESULT)
            return 1
        except (OSError, ProtocolError) as e:
            _note("cannot read or update the header at the end of the run: %s" % e)
            return 1


def _on_exit(exc: SystemExit) -> int:
    code = exc.code
    if code is None or code == 0 or code is False:
        return _finish()
    if isinstance(code, int):
        status = code
    else:  # sys.exit("message"): Python prints it and exits 1
        sys.stderr.write("%s\n" % (code,))
        status = 1
    _record_exception(exc)
    return status


def _on_exception(exc: BaseException) -> int:
    from ._meta import format_exception

    if not _record_exception(exc):
        sys.stderr.write(format_exception(exc))
    return 130 if isinstance(exc, KeyboardInterrupt) else 1


def _run(script: str, args) -> int:
    problem = _import_numpy()
    if problem is not None:
        if not _record_text("pyrmap.NumpyMissing", problem):
            _note(problem)
        return 1
    if _meta.ENV_READY_FD in os.environ:
        # Warnings go to the caller (R warnings, the command's stderr).
        sink = _meta.WarningSink()
        sink.install()
        import atexit

        atexit.register(_meta.send_warnings, sink)
    sys.argv = [script] + list(args)
    _set_path(script)
    function = os.environ.get(_meta.ENV_FUNCTION)
    try:
        if function:
            _call_function(script, function)
        else:
            _run_main(script)
    except SystemExit as e:
        return _on_exit(e)
    except BaseException as e:
        return _on_exception(e)
    return _finish()
