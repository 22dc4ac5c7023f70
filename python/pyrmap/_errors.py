"""The exception types pyrmap raises.

Every class is importable from the top-level package and reports itself as
``pyrmap.<Name>``, which is also the ``error_type`` recorded in the exchange
header when such an error ends a run. This module imports nothing, so it is
safe to load in an interpreter that has no numpy.
"""


class PyrmapError(Exception):
    """Base class of the errors raised by pyrmap itself."""


class ProtocolError(PyrmapError):
    """A header, a segment or an environment variable violates the exchange
    protocol (docs/protocol.md): bad magic, newer major version, inconsistent
    array descriptor, payload outside its segment, bad PYRMAP_* variable."""


class ResultTypeError(PyrmapError, TypeError):
    """The user's function returned something the exchange cannot store: a
    dtype with no protocol code (object, string, complex, ...), a value numpy
    cannot turn into an array, or uint64 values beyond the int64 range."""


class NotConnectedError(PyrmapError, RuntimeError):
    """There is no pyrmap run to talk to: the script was not started by a
    pyrmap runner, or the runner went away before the input was ready."""


class FunctionNotFound(PyrmapError, AttributeError):
    """The script has no function of the name the runner was asked to call
    (``SCRIPT::NAME`` on the command line, ``fun =`` in R)."""


class NotRegisteredError(PyrmapError, LookupError):
    """No variable of that name is registered in that namespace (in the
    segment directory looked in): pyrmap.registry.get() and info()."""


class CommandNotFoundError(PyrmapError, FileNotFoundError):
    """The ``pyrmap`` command, which pyrmap.run() and its kin drive, was not
    found (the message says where it was looked for)."""


class RunError(PyrmapError):
    """A run of the ``pyrmap`` command (pyrmap.run(), run_shared(),
    run_pipeline()) failed. ``message`` is what the command said (its
    ``pyrmap: ...`` lines), ``exit_code`` its exit code (the table in
    ``pyrmap --help``), ``stderr`` all it wrote on stderr."""

    def __init__(self, message: str, exit_code: int = 1, stderr: str = ""):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.stderr = stderr


class UsageError(RunError, ValueError):
    """Exit code 2: bad arguments, input the command cannot take (an
    unsupported dtype), a missing script or function."""


class ScriptError(RunError):
    """Exit code 3: the script raised (the message holds the exception and
    the end of its traceback), exited or was killed without a result."""


class ScriptTimeoutError(RunError, TimeoutError):
    """Exit code 4: the script ran longer than ``timeout`` and was killed."""


class InterpreterError(RunError):
    """Exit code 7: the Python interpreter cannot be started or cannot
    import numpy."""


class ScriptWarning(UserWarning):
    """A Python warning that a script gave during pyrmap.run() and its kin,
    reissued in this process (the text names the script)."""


for _cls in (PyrmapError, ProtocolError, ResultTypeError, NotConnectedError, FunctionNotFound,
             NotRegisteredError, CommandNotFoundError, RunError, UsageError, ScriptError,
             ScriptTimeoutError, InterpreterError, ScriptWarning):
    # So tracebacks and the recorded error_type read "pyrmap.ProtocolError".
    _cls.__module__ = "pyrmap"
del _cls
