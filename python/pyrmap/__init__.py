"""pyrmap for Python: share arrays with R and the pyrmap runner, zero-copy.

A pyrmap runner (the ``pyrmap`` command or R's run_python) puts an array into
POSIX shared memory and starts a Python script; the script's decorated
function receives that array as a read-only numpy view of the shared memory
and its return value is written straight into a result segment::

    import numpy as np
    from pyrmap import process_via_mmap

    @process_via_mmap
    def process(data):
        return data * 2

    if __name__ == "__main__":
        process()

Python users can also drive the runner themselves and read R's shared
variables::

    import pyrmap
    y = pyrmap.run(x, "script.py")              # the pyrmap command does the work
    both = pyrmap.run_shared(x, ["a.py", "b.py"], jobs=2)
    last = pyrmap.run_pipeline(x, ["a.py", "b.py"])
    v = pyrmap.registry.get("ns", "X")          # a read-only view of R's variable

Public API: ``process_via_mmap`` (the decorator), ``connect()`` (the run as
an object: ``.input``, ``.write_result(x)``, ``.fail(exc)``); ``Frame`` and
``Categorical`` (data frames and factors when pandas is not used); ``run()``,
``run_shared()``, ``run_pipeline()`` and ``find_command()`` (the ``pyrmap``
command from Python); the module ``pyrmap.registry`` (``get``, ``info``,
``variables``); the errors ``ProtocolError``, ``ResultTypeError``,
``NotConnectedError``, ``FunctionNotFound``, ``NotRegisteredError``,
``CommandNotFoundError``, ``RunError`` (``UsageError``, ``ScriptError``,
``ScriptTimeoutError``, ``InterpreterError``), all ``PyrmapError``; the
warning ``ScriptWarning``; and ``__version__``. The segments belong to the
runner, which removes them; a run records exactly one outcome (result or
error) in its header. Importing this package does not import numpy, and
the runner API and ``registry`` are loaded on first use (a script started
by a runner does not pay for them).
"""

__version__ = "0.1.0"

from ._errors import (CommandNotFoundError, FunctionNotFound, InterpreterError,
                      NotConnectedError, NotRegisteredError, ProtocolError, PyrmapError,
                      ResultTypeError, RunError, ScriptError, ScriptTimeoutError, ScriptWarning,
                      UsageError)
from ._runtime import Connection, connect, process_via_mmap

_LAZY = {"run": "_command", "run_shared": "_command", "run_pipeline": "_command",
         "find_command": "_command", "registry": None,
         # The numpy-only frame and category types (importing pyrmap does
         # not import numpy).
         "Frame": "_frames", "Categorical": "_frames"}


def __getattr__(name: str):
    """Loads the runner API, ``registry``, ``Frame`` and ``Categorical`` when first used."""
    if name not in _LAZY:
        raise AttributeError("module 'pyrmap' has no attribute %r" % name)
    import importlib
    if _LAZY[name] is None:
        value = importlib.import_module("." + name, __name__)
    else:
        value = getattr(importlib.import_module("." + _LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = [
    "Categorical",
    "CommandNotFoundError",
    "Connection",
    "Frame",
    "FunctionNotFound",
    "InterpreterError",
    "NotConnectedError",
    "NotRegisteredError",
    "ProtocolError",
    "PyrmapError",
    "ResultTypeError",
    "RunError",
    "ScriptError",
    "ScriptTimeoutError",
    "ScriptWarning",
    "UsageError",
    "__version__",
    "connect",
    "find_command",
    "process_via_mmap",
    "registry",
    "run",
    "run_pipeline",
    "run_shared",
]
