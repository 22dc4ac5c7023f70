"""The build backend of the pyrmap Python package: setuptools, found offline.

Every PEP 517 / PEP 660 hook is setuptools' own (``setuptools.build_meta``);
the package's metadata and contents are declared in pyproject.toml. What
this module adds is that ``pip install ./python`` works without a network:

- pip builds in an isolated environment and first installs the
  ``[build-system] requires`` there, from an index. pyproject.toml lists
  none, and this module makes the setuptools (and wheel) of the
  interpreter's own installation importable when the isolation hid them
  (Debian: python3-setuptools, python3-wheel), or, failing that, the
  setuptools wheel Debian ships for venvs (/usr/share/python-wheels).
  When neither exists, the get_requires hooks name setuptools and wheel, so
  that a front end with a network installs them.
- Wheels and sdists are built from a temporary copy of this directory, so
  the source tree gets no build/ or pyrmap.egg-info (the R package ships
  this directory as it is). Editable installs are built in place: they
  must point here.
"""

import contextlib
import glob
import os
import shutil
import site
import sys
import tempfile

ROOT = os.path.dirname(os.path.abspath(__file__))
# What a build needs from this directory (the sdist holds the same).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "build_backend.py", "pyrmap")
NEEDED = ("setuptools", "wheel")


def _importable(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _find_installed():
    """Puts the interpreter's installed setuptools and wheel on sys.path
    when the build's isolation hid them. True when both are importable."""
    if all(_importable(n) for n in NEEDED):
        return True
    dirs = []
    try:
        dirs += site.getsitepackages()
        dirs += site.getsitepackages([sys.base_prefix])
    except AttributeError:  # a virtualenv without getsitepackages
        pass
    for d in dirs:
        for name in NEEDED:
            if not _importable(name) and os.path.isdir(os.path.join(d, name)) and d not in sys.path:
                sys.path.append(d)
    for name in NEEDED:
        if not _importable(name):
            for whl in sorted(glob.glob("/usr/share/python-wheels/%s-*.whl" % name)):
                sys.path.append(whl)
                break
    return all(_importable(n) for n in NEEDED)


def _setuptools():
    _find_installed()
    import warnings

    # setuptools before 68 calls its [tool.setuptools] table "beta" on
    # every build; the table is the documented, stable way since then.
    warnings.filterwarnings("ignore", message=r".*\[tool\.setuptools\].*beta", category=UserWarning)
    from setuptools import build_meta

    return build_meta


@contextlib.contextmanager
def _in_copy():
    """Runs the body in a temporary copy of the package's sources."""
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="pyrmap-build-") as tmp:
        for name in SOURCES:
            src = os.path.join(ROOT, name)
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(tmp, name),
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif os.path.exists(src):
                shutil.copy2(src, os.path.join(tmp, name))
        os.chdir(tmp)
        try:
            yield
        finally:
            os.chdir(here)


def _requires():
    return [] if _find_installed() else ["setuptools>=61", "wheel"]


def get_requires_for_build_wheel(config_settings=None):
    return _requires()


def get_requires_for_build_sdist(config_settings=None):
    return _requires()


def get_requires_for_build_editable(config_settings=None):
    return _requires()


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    out = os.path.abspath(metadata_directory)
    with _in_copy():
        return _setuptools().prepare_metadata_for_build_wheel(out, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    out = os.path.abspath(wheel_directory)
    with _in_copy():
        return _setuptools().build_wheel(out, config_settings)


def build_sdist(sdist_directory, config_settings=None):
    out = os.path.abspath(sdist_directory)
    with _in_copy():
        return _setuptools().build_sdist(out, config_settings)


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    return _setuptools().prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _setuptools().build_editable(wheel_directory, config_settings, metadata_directory)
