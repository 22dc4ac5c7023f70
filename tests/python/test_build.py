"""The in-tree build backend and an offline `pip install ./python`."""

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
import pyrmap_build  # noqa: E402

PACKAGE_FILES = sorted("pyrmap/" + n for n in os.listdir(os.path.join(PYTHON_DIR, "pyrmap"))
                       if n.endswith(".py"))


def test_pyproject_is_read_the_same_by_both_readers():
    project = pyrmap_build.read_project()
    with open(os.path.join(PYTHON_DIR, "pyproject.toml")) as f:
        subset = pyrmap_build._parse_toml_subset(f.read())["project"]
    assert subset == project
    assert project["version"] == pyrmap.__version__
    assert project["dependencies"] == ["numpy"]


def test_hooks_need_nothing():
    assert pyrmap_build.get_requires_for_build_wheel() == []
    assert pyrmap_build.get_requires_for_build_sdist() == []
    assert pyrmap_build.get_requires_for_build_editable() == []


def test_wheel(tmp_path):
    name = pyrmap_build.build_wheel(str(tmp_path))
    assert name == "pyrmap-%s-py3-none-any.whl" % pyrmap.__version__
    assert os.listdir(str(tmp_path)) == [name]
    with zipfile.ZipFile(str(tmp_path / name)) as zf:
        names = zf.namelist()
        dist = "pyrmap-%s.dist-info/" % pyrmap.__version__
        assert sorted(n for n in names if n.startswith("pyrmap/")) == PACKAGE_FILES
        assert {dist + n for n in ("METADATA", "WHEEL", "RECORD", "top_level.txt")} <= set(names)
        metadata = zf.read(dist + "METADATA").decode()
        assert "Name: pyrmap\n" in metadata and "Requires-Dist: numpy\n" in metadata
        assert "Version: %s\n" % pyrmap.__version__ in metadata
        assert "Requires-Python: >=3.8\n" in metadata
        assert "Tag: py3-none-any" in zf.read(dist + "WHEEL").decode()
        rows = list(csv.reader(io.StringIO(zf.read(dist + "RECORD").decode())))
        assert sorted(r[0] for r in rows) == sorted(names)
        for path, digest, size in rows:
            if path == dist + "RECORD":
                assert digest == size == ""
                continue
            data = zf.read(path)
            want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == "sha256=" + want.decode() and int(size) == len(data)
        for path in PACKAGE_FILES:
            with open(os.path.join(PYTHON_DIR, path), "rb") as f:
                assert zf.read(path) == f.read()
    # Reproducible.
    again = tmp_path / "again"
    again.mkdir()
    pyrmap_build.build_wheel(str(again))
    assert (again / name).read_bytes() == (tmp_path / name).read_bytes()


def test_metadata_hook(tmp_path):
    name = pyrmap_build.prepare_metadata_for_build_wheel(str(tmp_path))
    assert name == "pyrmap-%s.dist-info" % pyrmap.__version__
    assert "Requires-Dist: numpy" in (tmp_path / name / "METADATA").read_text()


def test_editable_wheel(tmp_path):
    name = pyrmap_build.build_editable(str(tmp_path))
    with zipfile.ZipFile(str(tmp_path / name)) as zf:
        pth = [n for n in zf.namelist() if n.endswith(".pth")]
        assert len(pth) == 1
        assert zf.read(pth[0]).decode().strip() == PYTHON_DIR


def test_sdist(tmp_path):
    name = pyrmap_build.build_sdist(str(tmp_path))
    base = "pyrmap-%s" % pyrmap.__version__
    assert name == base + ".tar.gz"
    with tarfile.open(str(tmp_path / name)) as tf:
        names = set(tf.getnames())
        assert {base + "/" + n for n in ["PKG-INFO", "pyproject.toml", "pyrmap_build.py",
                                         "README.md"] + PACKAGE_FILES} == names
        assert b"Requires-Dist: numpy" in tf.extractfile(base + "/PKG-INFO").read()


def test_pip_install_offline(call, tmp_path):
    """`pip install ./python` in a venv that sees the system numpy; the
    installed copy then runs a script through the bootstrap on its own."""
    venv = tempfile.mkdtemp(prefix="pyrmap-venv-")
    try:
        p = subprocess.run([PYTHON, "-m", "venv", "--system-site-packages", venv],
                           capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            pytest.skip("python3 -m venv is unavailable: %s" % p.stderr.strip()[-200:])
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH",) and not k.startswith("PYRMAP_")}
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
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
    leftovers = {"build", "dist", "pyrmap.egg-info"} & set(os.listdir(PYTHON_DIR))
    assert not leftovers
