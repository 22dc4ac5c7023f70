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


for _cls in (PyrmapError, ProtocolError, ResultTypeError, NotConnectedError, FunctionNotFound):
    # So tracebacks and the recorded error_type read "pyrmap.ProtocolError".
    _cls.__module__ = "pyrmap"
del _cls
