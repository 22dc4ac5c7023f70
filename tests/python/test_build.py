"""Packaging by the standard tools: setuptools builds the wheel and the sdist
(python/build_backend.py only finds it offline), the metadata is complete
(PEP 621: license, authors, urls), the package is typed (py.typed), has a
console entry point, and `pip install ./python` works without a network."""

import base64
import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import numpy as np
import pytest

from conftest import BOOTSTRAP, PYTHON, PYTHON_DIR

sys.path.insert(0, PYTHON_DIR)
import pyrmap  # noqa: E402
import build_backend  # noqa: E402

PACKAGE_FILES = sorted("pyrmap/" + n for n in os.listdir(os.path.join(PYTHON_DIR, "pyrmap"))
                       if n.endswith(".py") or n == "py.typed")
BUILD_LEFTOVERS = {"build", "dist", "pyrmap.egg-info"}


def source_tree_is_clean():
    left = BUILD_LEFTOVERS & set(os.listdir(PYTHON_DIR))
    return not left, left


def metadata_fields(text):
    """The header fields of a METADATA / PKG-INFO file: {name: [values]}."""
    fields = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        if ": " in line and not line.startswith(" "):
            k, v = line.split(": ", 1)
            fields.setdefault(k, []).append(v)
    return fields


def check_metadata(fields, requirements=True):
    """(An sdist's PKG-INFO from setuptools < 68 leaves the requirements to
    the egg-info: `requirements=False`.)"""
    assert fields["Name"] == ["pyrmap"]
    assert fields["Version"] == [pyrmap.__version__]
    if requirements:
        assert fields["Requires-Dist"] == ["numpy"]
    assert fields["Requires-Python"] == [">=3.8"]
    assert fields["License"] == ["Apache-2.0"]
    assert "License :: OSI Approved :: Apache Software License" in fields["Classifier"]
    assert "Typing :: Typed" in fields["Classifier"]
    assert fields["Author-email"] == ["pyrmap maintainers <maintainers@pyrmap.invalid>"]
    urls = dict(u.split(", ", 1) for u in fields["Project-URL"])
    assert set(urls) == {"Homepage", "Documentation", "Source", "Issues"}, urls
    assert all(u.startswith("https://") for u in urls.values()), urls
    assert fields["Summary"][0].startswith("Share numpy arrays with R")


def test_the_backend_is_setuptools():
    """Every hook is setuptools.build_meta's; nothing is built by hand."""
    from setuptools import build_meta
    for hook in ("build_wheel", "build_sdist", "prepare_metadata_for_build_wheel",
                 "build_editable"):
        assert callable(getattr(build_backend, hook))
    assert build_backend._setuptools() is build_meta
    src = open(os.path.join(PYTHON_DIR, "build_backend.py")).read()
    assert "zipfile" not in src and "tarfile" not in src and "RECORD" not in src


def test_hooks_need_nothing_when_setuptools_is_installed():
    assert build_backend.get_requires_for_build_wheel() == []
    assert build_backend.get_requires_for_build_sdist() == []
    assert build_backend.get_requires_for_build_editable() == []


def test_wheel(tmp_path):
    name = build_backend.build_wheel(str(tmp_path))
    assert name == "pyrmap-%s-py3-none-any.whl" % pyrmap.__version__
    with zipfile.ZipFile(str(tmp_path / name)) as zf:
        names = zf.namelist()
        dist = "pyrmap-%s.dist-info/" % pyrmap.__version__
        assert sorted(n for n in names if n.startswith("pyrmap/")) == PACKAGE_FILES
        assert "pyrmap/py.typed" in names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert not [n for n in names if n.startswith("build_backend")]
        assert "Generator: bdist_wheel" in zf.read(dist + "WHEEL").decode()
        with open(os.path.join(PYTHON_DIR, "LICENSE"), "rb") as f:
            assert zf.read(dist + "LICENSE") == f.read()
        check_metadata(metadata_fields(zf.read(dist + "METADATA").decode()))
        entry_points = zf.read(dist + "entry_points.txt").decode()
        assert "[console_scripts]\npyrmap-py = pyrmap.__main__:main" in entry_points
        rows = list(csv.reader(io.StringIO(zf.read(dist + "RECORD").decode())))
        assert sorted(r[0] for r in rows) == sorted(names)
        for path, digest, size in rows:
            if path == dist + "RECORD":
                continue
            data = zf.read(path)
            want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == "sha256=" + want.decode() and int(size) == len(data)
        for path in PACKAGE_FILES:
            with open(os.path.join(PYTHON_DIR, path), "rb") as f:
                assert zf.read(path) == f.read()
    assert source_tree_is_clean()


def test_sdist_holds_what_a_build_needs_and_builds_again(tmp_path):
    name = build_backend.build_sdist(str(tmp_path))
    base = "pyrmap-%s" % pyrmap.__version__
    assert name == base + ".tar.gz"
    with tarfile.open(str(tmp_path / name)) as tf:
        names = set(tf.getnames())
        for n in ["PKG-INFO", "pyproject.toml", "build_backend.py", "README.md", "LICENSE"] + PACKAGE_FILES:
            assert base + "/" + n in names, n
        check_metadata(metadata_fields(tf.extractfile(base + "/PKG-INFO").read().decode()),
                       requirements=False)
        assert tf.extractfile(base + "/pyrmap.egg-info/requires.txt").read() == b"numpy\n"
        tf.extractall(str(tmp_path / "unpacked"))
    # The sdist builds a wheel with its own backend, in a fresh process.
    unpacked = tmp_path / "unpacked" / base
    out = tmp_path / "wheel"
    out.mkdir()
    p = subprocess.run([PYTHON, "-c", "import build_backend, sys; print(build_backend.build_wheel(sys.argv[1]))",
                        str(out)], cwd=str(unpacked), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == base + "-py3-none-any.whl"
    assert source_tree_is_clean()


def test_metadata_hook(tmp_path):
    name = build_backend.prepare_metadata_for_build_wheel(str(tmp_path))
    assert name == "pyrmap-%s.dist-info" % pyrmap.__version__
    check_metadata(metadata_fields((tmp_path / name / "METADATA").read_text()))
    assert source_tree_is_clean()


def test_pip_install_offline(call, tmp_path):
    """`pip install ./python` with no index at all, in a venv that sees the
    system numpy (and setuptools); the installed copy then runs a script
    through the bootstrap on its own, and its entry points work."""
    venv = tempfile.mkdtemp(prefix="pyrmap-venv-")
    try:
        p = subprocess.run([PYTHON, "-m", "venv", "--system-site-packages", venv],
                           capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            pytest.skip("python3 -m venv is unavailable: %s" % p.stderr.strip()[-200:])
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH",) and not k.startswith("PYRMAP_")}
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env["PIP_NO_INDEX"] = "1"  # offline: any download attempt fails the install
        vpy = os.path.join(venv, "bin", "python")
        p = subprocess.run([os.path.join(venv, "bin", "pip"), "install", "./python"],
                           cwd=os.path.dirname(PYTHON_DIR), env=env, capture_output=True,
                           text=True, timeout=600)
        assert p.returncode == 0, p.stdout + p.stderr
        p = subprocess.run([vpy, "-c", "import pyrmap, numpy; print(pyrmap.__file__); "
                            "print(pyrmap.__version__)"],
                           cwd="/", env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        location, version = p.stdout.split()
        assert location.startswith(os.path.realpath(venv) + "/") or location.startswith(venv + "/")
        assert "site-packages" in location and version == pyrmap.__version__
        assert os.path.exists(os.path.join(os.path.dirname(location), "py.typed"))
        # The console script and `python -m pyrmap`.
        p = subprocess.run([os.path.join(venv, "bin", "pyrmap-py"), "--version"], env=env,
                           cwd="/", capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and p.stdout.strip() == "pyrmap %s (Python package)" % version, p
        p = subprocess.run([vpy, "-m", "pyrmap", "--help"], env=env, cwd="/", capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0 and p.stdout.startswith("usage: python -m pyrmap"), p
        # The installed copy serves a run without PYTHONPATH.
        call.setup(np.arange(4, dtype=np.float64))
        script = tmp_path / "s.py"
        script.write_text("from pyrmap import process_via_mmap\n"
                          "process_via_mmap(lambda d: d + 0.5)()\n")
        run_env = call.env()
        del run_env["PYTHONPATH"]
        p = subprocess.run([vpy, "-c", BOOTSTRAP, str(script)], env=run_env, cwd="/",
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        np.testing.assert_array_equal(call.result_array(), np.arange(4) + 0.5)
    finally:
        shutil.rmtree(venv, ignore_errors=True)
    # The source tree is left as it was: no build directories.
    assert source_tree_is_clean()
