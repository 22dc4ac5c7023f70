"""Functions over tables for the data-frame tests (called with fun = )."""
import sys

import numpy as np

try:
    import pandas as pd
except ImportError:
    pd = None

import pyrmap


def identity(x):
    return x


def ev(*args, **kw):
    """eval(sys.argv[1]) with np, pd, pyrmap, the positional arguments as
    `args` (the first also as `x`) and the keyword arguments by name."""
    scope = {"np": np, "pd": pd, "pyrmap": pyrmap, "args": args, "kw": kw,
             "x": args[0] if args else None}
    scope.update(kw)
    return eval(sys.argv[1], scope)


def kinds(*args, **kw):
    """What each argument, or each column of a frame, is in Python."""
    def describe(v):
        dtype = getattr(v, "dtype", None)
        return "%s:%s" % (type(v).__name__, dtype)

    if args and len(args) == 1 and not kw:
        x = args[0]
        if pd is not None and isinstance(x, pd.DataFrame):
            return {str(c): describe(x[c].array if hasattr(x[c], "array") else x[c])
                    for c in x.columns}
        if isinstance(x, dict):
            return {k: describe(v) for k, v in x.items()}
        return describe(x)
    out = {"args": tuple(describe(a) for a in args)}
    out.update({k: describe(v) for k, v in kw.items()})
    return out


def fit(X, y):
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    return {"coef": coef, "fitted": X @ coef}
