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
an object: ``.input``, ``.write_result(x)``, ``.fail(exc)``), ``Frame`` and
``Categorical`` (data frames and factors when pandas is not used), the errors
``ProtocolError``, ``ResultTypeError``, ``NotConnectedError`` (all
``PyrmapError``), and ``__version__``. The segments belong to the runner,
which removes them; a run records exactly one outcome (result or error) in
its header. Importing this package does not import numpy.
"""

__version__ = "0.1.0"

from ._errors import NotConnectedError, ProtocolError, PyrmapError, ResultTypeError
from ._runtime import Connection, connect, process_via_mmap



def __getattr__(name):
    # The numpy-only frame and category types; imported when first asked
    # for, so that importing pyrmap does not import numpy.
    if name in ("Frame", "Categorical"):
        from . import _frames

        return getattr(_frames, name)
    raise AttributeError("module 'pyrmap' has no attribute %r" % name)


__all__ = [
    "Categorical",
    "Connection",
    "Frame",
    "NotConnectedError",
    "ProtocolError",
    "PyrmapError",
    "ResultTypeError",
    "__version__",
    "connect",
    "process_via_mmap",
]
