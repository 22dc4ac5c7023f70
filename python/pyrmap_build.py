"""The in-tree PEP 517 / PEP 660 build backend of the pyrmap Python package.

It needs nothing but the standard library, so ``pip install ./python`` works
offline (pyproject.toml: ``requires = []``, ``backend-path = ["."]``). It
builds a pure-Python wheel (py3-none-any) holding the ``pyrmap`` package and
a ``.dist-info`` with METADATA, WHEEL, top_level.txt and RECORD (sha256 of
every file), an sdist (.tar.gz), and an editable wheel whose .pth file puts
this directory on sys.path.

The metadata comes from the ``[project]`` table of pyproject.toml, read with
tomllib where it exists (Python >= 3.11) and otherwise with a small reader of
the subset that file uses (strings and arrays of strings). Archives are
reproducible: fixed timestamps, sorted entries. A failure raises; nothing is
left in the output directory but complete archives.
"""

import base64
import gzip
import hashlib
import io
import os
import re
import tarfile
import zipfile

ROOT = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "pyrmap"
TAG = "py3-none-any"
# 1980-01-01, the earliest time a zip entry can hold.
EPOCH = (1980, 1, 1, 0, 0, 0)
EPOCH_SECONDS = 315532800


# ------------------------------------------------------------------ metadata

def _parse_toml_subset(text):
    """{table: {key: value}} for `[table]`, `key = "string"` and
    `key = ["a", "b"]` (possibly spanning lines), with # comments."""
    tables, current = {}, None
    lines = iter(text.splitlines())
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^\[([A-Za-z0-9_.\-]+)\]$", line)
        if m:
            current = tables.setdefault(m.group(1), {})
            continue
        key, sep, value = line.partition("=")
        if not sep or current is None:
            raise ValueError("pyproject.toml: cannot read line %r" % line)
        value = value.strip()
        if value.startswith("["):
            while value.count("[") > value.count("]"):
                value += " " + next(lines).strip()
            items = re.findall(r'"((?:[^"\\]|\\.)*)"', value)
            current[key.strip()] = [i.replace('\\"', '"') for i in items]
        elif value.startswith('"'):
            m = re.match(r'^"((?:[^"\\]|\\.)*)"\s*(#.*)?$', value)
            if not m:
                raise ValueError("pyproject.toml: cannot read value %r" % value)
            current[key.strip()] = m.group(1).replace('\\"', '"')
        elif value in ("true", "false"):
            current[key.strip()] = value == "true"
        else:
            raise ValueError("pyproject.toml: unsupported value %r" % value)
    return tables


def read_project(root=ROOT):
    """The [project] table of pyproject.toml as a dict."""
    path = os.path.join(root, "pyproject.toml")
    try:
        import tomllib
    except ImportError:
        with open(path, encoding="utf-8") as f:
            return _parse_toml_subset(f.read())["project"]
    with open(path, "rb") as f:
        return tomllib.load(f)["project"]


def _dist_info_name(project):
    return "%s-%s.dist-info" % (project["name"].replace("-", "_"), project["version"])


def _metadata(project, root=ROOT):
    lines = [
        "Metadata-Version: 2.1",
        "Name: %s" % project["name"],
        "Version: %s" % project["version"],
    ]
    if project.get("description"):
        lines.append("Summary: %s" % project["description"])
    if project.get("requires-python"):
        lines.append("Requires-Python: %s" % project["requires-python"])
    for dep in project.get("dependencies", []):
        lines.append("Requires-Dist: %s" % dep)
    for classifier in project.get("classifiers", []):
        lines.append("Classifier: %s" % classifier)
    body = ""
    readme = project.get("readme")
    if readme:
        lines.append("Description-Content-Type: text/markdown")
        with open(os.path.join(root, readme), encoding="utf-8") as f:
            body = "\n" + f.read()
    return ("\n".join(lines) + "\n" + body).encode("utf-8")


def _wheel_file():
    return ("Wheel-Version: 1.0\nGenerator: pyrmap_build\nRoot-Is-Purelib: true\n"
            "Tag: %s\n" % TAG).encode("ascii")


def _dist_info_files(project):
    return {
        "METADATA": _metadata(project),
        "WHEEL": _wheel_file(),
        "top_level.txt": (PACKAGE + "\n").encode("ascii"),
    }


def _package_files(root=ROOT):
    """[(archive name, path)] of the package's .py files, sorted."""
    found = []
    for directory, dirs, files in os.walk(os.path.join(root, PACKAGE)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                found.append((os.path.relpath(path, root).replace(os.sep, "/"), path))
    return found


# ------------------------------------------------------------------ wheel

def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "%s,sha256=%s,%d" % (name, digest.decode("ascii"), len(data))


def _write_wheel(wheel_directory, project, entries):
    """entries: [(archive name, bytes)]; adds the dist-info and RECORD."""
    dist_info = _dist_info_name(project)
    entries = list(entries) + [("%s/%s" % (dist_info, name), data)
                               for name, data in sorted(_dist_info_files(project).items())]
    record_name = "%s/RECORD" % dist_info
    record = "\n".join([_record_line(n, d) for n, d in entries] + [record_name + ",,"]) + "\n"
    entries.append((record_name, record.encode("utf-8")))
    basename = "%s-%s-%s.whl" % (project["name"].replace("-", "_"), project["version"], TAG)
    final = os.path.join(wheel_directory, basename)
    partial = final + ".part"
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    os.replace(partial, final)
    return basename


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    project = read_project()
    name = _dist_info_name(project)
    target = os.path.join(metadata_directory, name)
    os.makedirs(target, exist_ok=True)
    for filename, data in _dist_info_files(project).items():
        with open(os.path.join(target, filename), "wb") as f:
            f.write(data)
    return name


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project = read_project()
    entries = [(name, _read(path)) for name, path in _package_files()]
    return _write_wheel(wheel_directory, project, entries)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    project = read_project()
    pth = "__editable__.%s-%s.pth" % (project["name"].replace("-", "_"), project["version"])
    return _write_wheel(wheel_directory, project, [(pth, (ROOT + "\n").encode("utf-8"))])


# ------------------------------------------------------------------ sdist

def build_sdist(sdist_directory, config_settings=None):
    project = read_project()
    base = "%s-%s" % (project["name"].replace("-", "_"), project["version"])
    members = [("PKG-INFO", _metadata(project))]
    for name in ("pyproject.toml", "pyrmap_build.py", project.get("readme")):
        if name:
            members.append((name, _read(os.path.join(ROOT, name))))
    members += [(name, _read(path)) for name, path in _package_files()]
    basename = base + ".tar.gz"
    final = os.path.join(sdist_directory, basename)
    partial = final + ".part"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in sorted(members):
            info = tarfile.TarInfo("%s/%s" % (base, name))
            info.size = len(data)
            info.mtime = EPOCH_SECONDS
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    with open(partial, "wb") as f:
        with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=EPOCH_SECONDS) as gz:
            gz.write(raw.getvalue())
    os.replace(partial, final)
    return basename
