"""``python -m pyrmap`` (installed as the console script ``pyrmap-py``): the
Python side of pyrmap from the shell.

    python -m pyrmap info                  this Python, numpy, the command, the segment directory
    python -m pyrmap vars                  the variables R registered (namespace, name, type, shape)
    python -m pyrmap get NS NAME [-o F]    print a registered variable, or save it as .npy
    python -m pyrmap run|shared|pipeline|ls|gc ...
                                           the pyrmap command, with this interpreter for the scripts

The console script is called ``pyrmap-py`` because ``pyrmap`` is the C++
command this package drives (``python -m pyrmap run ...`` hands its
arguments to that command unchanged).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from typing import List, Optional, Sequence

from . import __version__

COMMAND_SUBCOMMANDS = ("run", "shared", "pipeline", "ls", "gc")

EPILOG = """\
the pyrmap command's subcommands (their own --help says more):
  run, shared, pipeline, ls, gc   e.g. python -m pyrmap run script.py -i data.npy
                                  (scripts run with this interpreter unless
                                  --python or $PYRMAP_PYTHON says otherwise)

examples:
  python -m pyrmap info
  python -m pyrmap vars
  python -m pyrmap get demo X
  python -m pyrmap get demo X -o x.npy
  printf '1,2,3\\n' | python -m pyrmap run sum.py
"""


def _human(n: int) -> str:
    v, units = float(n), ["B", "KiB", "MiB", "GiB", "TiB"]
    u = 0
    while v >= 1024 and u < len(units) - 1:
        v /= 1024
        u += 1
    return "%d B" % n if u == 0 else "%.1f %s" % (v, units[u])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pyrmap",
        description="pyrmap from Python: look at R's shared variables, and run the pyrmap "
                    "command with this interpreter.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version="pyrmap %s (Python package)" % __version__)
    sub = p.add_subparsers(dest="what", metavar="{info,vars,get,run,shared,pipeline,ls,gc}")
    sub.add_parser("info", help="this Python, numpy, the pyrmap command and the segment directory")
    v = sub.add_parser("vars", help="the variables registered (by R) in the segment directory")
    v.add_argument("--segment-dir", metavar="RAM|DISK|DIR",
                   help="where to look (default: $PYRMAP_SEGMENT_DIR, else RAM = /dev/shm)")
    g = sub.add_parser("get", help="print a registered variable, or save it as .npy")
    g.add_argument("namespace")
    g.add_argument("name")
    g.add_argument("-o", "--output", metavar="FILE.npy", help="save it to this .npy file")
    g.add_argument("--segment-dir", metavar="RAM|DISK|DIR",
                   help="where it was registered (default: $PYRMAP_SEGMENT_DIR, else RAM)")
    return p


def _info() -> int:
    from . import _command, _segment_dir
    print("pyrmap (Python package) %s: %s" % (__version__, os.path.dirname(os.path.abspath(__file__))))
    print("python: %s (%s)" % (sys.executable, sys.version.split()[0]))
    try:
        import numpy
        print("numpy: %s" % numpy.__version__)
    except ImportError as e:
        print("numpy: cannot be imported (%s)" % e)
    try:
        cmd = _command.find_command()
        out = subprocess.run([cmd, "--version"], capture_output=True, text=True, timeout=30)
        print("command: %s (%s)" % (cmd, out.stdout.strip() or "exit %d" % out.returncode))
    except Exception as e:  # reported, not raised: info says what is missing
        print("command: not found (%s)" % e)
    path = _segment_dir.resolve(None)
    try:
        du = shutil.disk_usage(path)
        print("segment directory: %s (%s free of %s)" % (path, _human(du.free), _human(du.total)))
    except OSError as e:
        print("segment directory: %s (%s)" % (path, e.strerror))
    return 0


def _vars(segment_dir: Optional[str]) -> int:
    from . import _segment_dir, registry
    found = registry.variables(segment_dir)
    if not found:
        print("no variables registered in %s" % _segment_dir.resolve(segment_dir))
        return 0
    rows = [("NAMESPACE", "NAME", "TYPE", "SHAPE", "SIZE", "OWNER")]
    for ns, name in found:
        try:
            i = registry.info(ns, name, segment_dir=segment_dir)
        except Exception:  # released meanwhile
            continue
        kind = "list of %d" % len(i.r_types) if i.is_list else i.r_types[0]
        shape = "" if i.is_list else "x".join(str(n) for n in i.shapes[0])
        rows.append((ns, name, kind, shape, _human(i.nbytes), str(i.owner_pid)))
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def _get(ns: str, name: str, output: Optional[str], segment_dir: Optional[str]) -> int:
    import numpy as np

    from . import registry
    value = registry.get(ns, name, segment_dir=segment_dir)
    if output:
        # Written to the path as given (numpy would add .npy/.npz to a name
        # without it: "-o out" or "-o /dev/stdout" would go elsewhere).
        with open(output, "wb") as f:
            if isinstance(value, (list, dict)):
                items = value.items() if isinstance(value, dict) else (
                    ("el%d" % (k + 1), v) for k, v in enumerate(value))
                np.savez(f, **dict(items))
            else:
                np.save(f, value)
        return 0
    print(value)
    return 0


def _forward(argv: Sequence[str]) -> int:
    """Runs the pyrmap command with `argv`; scripts get this interpreter
    unless $PYRMAP_PYTHON (or --python) says otherwise."""
    from . import _command
    cmd = _command.find_command()
    env = dict(os.environ)
    env.setdefault("PYRMAP_PYTHON", sys.executable)
    sys.stdout.flush()
    os.execve(cmd, [cmd] + list(argv), env)
    return 1  # not reached


def main(argv: Optional[List[str]] = None) -> int:
    """The entry point of ``python -m pyrmap`` and ``pyrmap-py``."""
    args = list(sys.argv[1:] if argv is None else argv)
    from ._errors import PyrmapError
    try:
        if args and args[0] in COMMAND_SUBCOMMANDS:
            return _forward(args)
        ns = _parser().parse_args(args)
        if ns.what == "info":
            return _info()
        if ns.what == "vars":
            return _vars(ns.segment_dir)
        if ns.what == "get":
            return _get(ns.namespace, ns.name, ns.output, ns.segment_dir)
        _parser().print_help()
        return 2
    except (PyrmapError, OSError, ValueError) as e:
        print("pyrmap: %s" % e, file=sys.stderr)
        return 2 if isinstance(e, (ValueError, LookupError)) else 1


if __name__ == "__main__":
    sys.exit(main())
