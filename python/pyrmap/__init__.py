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

Public API: ``process_via_mmap`` (the decorator), ``connect()`` (the run as
an object: ``.input``, ``.write_result(x)``, ``.fail(exc)``), the errors
``ProtocolError``, ``ResultTypeError``, ``NotConnectedError`` (all
``PyrmapError``), and ``__version__``. The segments belong to the runner,
which removes them; a run records exactly one outcome (result or error) in
its header. Importing this package does not import numpy.
"""

__version__ = "0.1.0"

from ._errors import NotConnectedError, ProtocolError, PyrmapError, ResultTypeError
from ._runtime import Connection, connect, process_via_mmap

__all__ = [
    "Connection",
    "NotConnectedError",
    "ProtocolError",
    "PyrmapError",
    "ResultTypeError",
    "__version__",
    "connect",
    "process_via_mmap",
]
