"""pyrmap.registry: reading the variables R registered, from Python.

The pages here are written by hand following src/registry.h, in a segment
directory of the test's own; r-pkg/tests/testthat/test-python-api.R reads
pages that R itself registered. Every refusal is checked: another user's
file, a link, a loose mode, an unsafe directory, a damaged or unfinished
page, a hash collision."""

import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from conftest import PYTHON, PYTHON_DIR

import pyrmap
from pyrmap import _header as H
from pyrmap import registry

TAG = {"double": 1, "integer": 2, "logical": 3, "raw": 4, "integer64": 5}
DTYPE = {"double": H.DTYPE_FLOAT64, "integer": H.DTYPE_INT32, "logical": H.DTYPE_INT32,
         "raw": H.DTYPE_UINT8, "integer64": H.DTYPE_INT64}
NP = {"double": np.float64, "integer": np.int32, "logical": np.int32, "raw": np.uint8,
      "integer64": np.int64}


def align(n):
    return (n + 63) // 64 * 64


def page_bytes(ns, var, arrays, is_list=False, names=None, ready=1, owner=None, magic=b"\x89PYRPAGE",
               major=1, total_delta=0):
    """A page as R writes it: arrays = [(r_type, values as a numpy array
    in R's column-major order, has_dim)]."""
    count = len(arrays)
    table = 4096
    names_block = b"".join(n.encode() + b"\0" for n in names) if names else b""
    names_off = table + count * 192
    end = align(names_off + len(names_block))
    descs, payloads = [], []
    for r_type, values, has_dim in arrays:
        shape = values.shape if has_dim else (values.size,)
        desc = H.ArrayDesc.make(DTYPE[r_type], shape, H.ORDER_F, end)
        raw = bytearray(H.encode_desc(desc))
        struct.pack_into("<I", raw, 12, TAG[r_type] | (0x100 if has_dim else 0))
        descs.append(bytes(raw))
        payloads.append((end, np.asarray(values, dtype=NP[r_type]).tobytes(order="F")))
        end = align(end + desc.nbytes)
    total = end + total_delta
    head = bytearray(4096)
    head[0:8] = magic
    struct.pack_into("<HHI", head, 8, major, 0, 4096)
    struct.pack_into("<qQII", head, 16, owner if owner is not None else os.getpid(), 0x1234, int(is_list),
                     count)
    struct.pack_into("<QQQQI", head, 40, table, names_off if names_block else 0, len(names_block),
                     total, ready)
    head[128:128 + len(ns.encode())] = ns.encode()
    head[384:384 + len(var.encode())] = var.encode()
    out = bytearray(max(total, end))
    out[:4096] = head
    for k, d in enumerate(descs):
        out[table + k * 192:table + (k + 1) * 192] = d
    out[names_off:names_off + len(names_block)] = names_block
    for off, data in payloads:
        out[off:off + len(data)] = data
    return bytes(out[:total]) if total_delta < 0 else bytes(out)


@pytest.fixture
def segdir(tmp_path, monkeypatch):
    d = tmp_path / "segments"
    d.mkdir(mode=0o700)
    monkeypatch.setenv("PYRMAP_SEGMENT_DIR", str(d))
    return d


def put(segdir, ns, var, data, mode=0o400, name=None):
    path = segdir / (name or registry.page_name(ns, var))
    fd = os.open(str(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(str(path), mode)
    return path


def test_page_name_is_the_cores():
    """pyrmap-<uid>-ns-<FNV-1a 64 of namespace, NUL, variable> (R's own
    pages are read in r-pkg/tests/testthat/test-python-api.R)."""
    # FNV-1a-64 of the bytes "a\0b", computed step by step, from the core's
    # starting value (src/registry.cc: 1469598103934665603, which is not the
    # textbook FNV offset basis; what matters is that both sides agree).
    h = 1469598103934665603
    for c in b"a\0b":
        h = ((h ^ c) * 0x100000001b3) % (1 << 64)
    assert registry._fnv1a(b"a", b"b") == h
    assert registry.page_name("a", "b") == "pyrmap-%d-ns-%016x" % (os.geteuid(), h)
    # Namespace and name are told apart: ("a", "bc") is not ("ab", "c").
    assert registry.page_name("a", "bc") != registry.page_name("ab", "c")


def test_a_matrix_is_a_read_only_column_major_view_of_the_page(segdir):
    m = np.arange(12, dtype=np.float64).reshape(3, 4, order="F") * 1.5
    path = put(segdir, "demo", "X", page_bytes("demo", "X", [("double", m, True)]))
    x = registry.get("demo", "X")
    assert x.shape == (3, 4) and x.dtype == np.float64 and x.flags.f_contiguous
    np.testing.assert_array_equal(x, m)
    assert not x.flags.writeable
    with pytest.raises(ValueError):
        x[0, 0] = 1
    # Zero copy: the array's memory is a mapping of the page file.
    with open("/proc/self/maps") as f:
        maps = [l for l in f if l.rstrip().endswith(str(path))]
    addr = x.__array_interface__["data"][0]
    assert any(int(l.split("-")[0], 16) <= addr < int(l.split()[0].split("-")[1], 16) for l in maps), maps
    # It stays valid after the page's name is gone (R released it).
    os.unlink(str(path))
    np.testing.assert_array_equal(x, m)


@pytest.mark.parametrize("r_type,values", [
    ("integer", np.array([1, -2, -2**31, 7], dtype=np.int32)),
    ("logical", np.array([1, 0, -2**31], dtype=np.int32)),
    ("raw", np.array([0, 255, 7], dtype=np.uint8)),
    ("integer64", np.array([2**62, -2**63, 5], dtype=np.int64)),
    ("double", np.array([np.nan, -0.0, 1e300])),
])
def test_every_r_type_arrives_as_its_storage(segdir, r_type, values):
    put(segdir, "t", r_type, page_bytes("t", r_type, [(r_type, values, False)]))
    v = registry.get("t", r_type)
    assert v.dtype == NP[r_type] and v.shape == values.shape
    np.testing.assert_array_equal(v, values)
    i = registry.info("t", r_type)
    assert i.r_types == (r_type,) and i.dtypes == (np.dtype(NP[r_type]).name,) and not i.is_list


def test_a_three_dimensional_array_keeps_its_dims(segdir):
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4, order="F")
    put(segdir, "t", "a", page_bytes("t", "a", [("integer", a, True)]))
    v = registry.get("t", "a")
    assert v.shape == (2, 3, 4)
    np.testing.assert_array_equal(v, a)


def test_lists_are_lists_or_dicts_of_views(segdir):
    a, b = np.arange(3.0), np.array([1, 2], dtype=np.int32)
    put(segdir, "t", "named", page_bytes("t", "named", [("double", a, False), ("integer", b, False)],
                                          is_list=True, names=["a", "b"]))
    put(segdir, "t", "plain", page_bytes("t", "plain", [("double", a, False), ("integer", b, False)],
                                          is_list=True))
    put(segdir, "t", "empty", page_bytes("t", "empty", [], is_list=True))
    named = registry.get("t", "named")
    assert isinstance(named, dict) and list(named) == ["a", "b"]
    np.testing.assert_array_equal(named["a"], a)
    np.testing.assert_array_equal(named["b"], b)
    plain = registry.get("t", "plain")
    assert isinstance(plain, list) and len(plain) == 2
    np.testing.assert_array_equal(plain[1], b)
    assert registry.get("t", "empty") == []
    i = registry.info("t", "named")
    assert i.is_list and i.element_names == ("a", "b") and i.r_types == ("double", "integer")


def test_an_empty_vector(segdir):
    put(segdir, "t", "e", page_bytes("t", "e", [("double", np.zeros(0), False)]))
    v = registry.get("t", "e")
    assert v.shape == (0,) and v.dtype == np.float64 and not v.flags.writeable


def test_segment_dir_argument_and_the_environment(segdir, tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    put(other, "t", "x", page_bytes("t", "x", [("double", np.ones(2), False)]))
    with pytest.raises(pyrmap.NotRegisteredError):
        registry.get("t", "x")  # $PYRMAP_SEGMENT_DIR is segdir
    np.testing.assert_array_equal(registry.get("t", "x", segment_dir=str(other)), np.ones(2))
    monkeypatch.setenv("PYRMAP_SEGMENT_DIR", str(other))
    np.testing.assert_array_equal(registry.get("t", "x"), np.ones(2))


def test_not_registered_names_the_variable_and_the_directory(segdir):
    with pytest.raises(pyrmap.NotRegisteredError) as e:
        registry.get("demo", "nope")
    assert str(e.value) == "variable 'nope' of namespace 'demo' is not registered in segment " \
                           "directory '%s'" % segdir
    assert isinstance(e.value, LookupError)


def test_a_missing_segment_directory_says_so(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        registry.get("t", "x", segment_dir=str(tmp_path / "nowhere"))
    assert "nowhere" in str(e.value) and "does not exist" in str(e.value)


@pytest.mark.parametrize("mode", [0o644, 0o666, 0o604])
def test_a_page_others_can_write_or_read_is_refused(segdir, mode):
    put(segdir, "t", "x", page_bytes("t", "x", [("double", np.ones(2), False)]), mode=mode)
    with pytest.raises(PermissionError) as e:
        registry.get("t", "x")
    assert "mode %04o" % mode in str(e.value) and "refusing" in str(e.value)


def test_a_symbolic_link_under_a_page_name_is_not_followed(segdir, tmp_path):
    target = put(segdir, "t", "real", page_bytes("t", "x", [("double", np.ones(2), False)]))
    os.symlink(str(target), str(segdir / registry.page_name("t", "x")))
    with pytest.raises(PermissionError) as e:
        registry.get("t", "x")
    assert "symbolic link" in str(e.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make another user's file")
def test_another_users_file_is_refused_naming_its_owner(segdir):
    path = put(segdir, "t", "x", page_bytes("t", "x", [("double", np.ones(2), False)]))
    os.chown(str(path), 65534, 65534)
    with pytest.raises(PermissionError) as e:
        registry.get("t", "x")
    assert "uid 65534" in str(e.value)


def test_a_directory_others_can_write_is_refused(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    os.chmod(str(d), 0o777)
    with pytest.raises(PermissionError) as e:
        registry.get("t", "x", segment_dir=str(d))
    assert "not safe" in str(e.value) and str(d) in str(e.value)


@pytest.mark.parametrize("kwargs,message", [
    (dict(magic=b"\x89PYRMAP\n"), "bad magic"),
    (dict(major=2), "page version 2.0"),
    (dict(ready=0), "still being written"),
    (dict(total_delta=64), "total_size"),
])
def test_damaged_pages_are_refused(segdir, kwargs, message):
    data = page_bytes("t", "x", [("double", np.ones(4), False)], **kwargs)
    if "total_delta" in kwargs:
        data = data[:-64]  # the header says 64 bytes more than the file has
    put(segdir, "t", "x", data)
    with pytest.raises(pyrmap.ProtocolError) as e:
        registry.get("t", "x")
    assert message in str(e.value)


def test_a_payload_beyond_the_file_is_refused(segdir):
    data = bytearray(page_bytes("t", "x", [("double", np.ones(4), False)]))
    struct.pack_into("<Q", data, 4096 + 24, len(data))  # the payload's offset: past the end
    put(segdir, "t", "x", bytes(data))
    with pytest.raises(pyrmap.ProtocolError) as e:
        registry.get("t", "x")
    assert "does not fit" in str(e.value)


def test_a_hash_collision_is_detected(segdir):
    """A page under (t, x)'s name that holds another variable is never
    served as (t, x)."""
    put(segdir, "t", "x", page_bytes("t", "other", [("double", np.ones(2), False)]),
        name=registry.page_name("t", "x"))
    with pytest.raises(pyrmap.ProtocolError) as e:
        registry.get("t", "x")
    assert "hash collision" in str(e.value) and "'other'" in str(e.value)


def test_variables_lists_this_users_pages(segdir):
    put(segdir, "b", "y", page_bytes("b", "y", [("double", np.ones(2), False)]))
    put(segdir, "a", "x", page_bytes("a", "x", [("integer", np.ones(2, np.int32), False)]))
    put(segdir, "a", "w", page_bytes("a", "w", [("double", np.ones(2), False)], ready=0))
    (segdir / "unrelated").write_text("x")
    assert registry.variables() == [("a", "x"), ("b", "y")]


@pytest.mark.parametrize("ns,var,error", [("", "x", ValueError), ("a", "", ValueError),
                                          ("a\0b", "x", ValueError), ("a" * 256, "x", ValueError),
                                          (1, "x", TypeError)])
def test_bad_names_are_refused(segdir, ns, var, error):
    with pytest.raises(error):
        registry.get(ns, var)


def test_python_m_pyrmap_vars_and_get(segdir, tmp_path):
    m = np.arange(6, dtype=np.float64).reshape(2, 3, order="F")
    put(segdir, "demo", "X", page_bytes("demo", "X", [("double", m, True)]))
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
    p = subprocess.run([PYTHON, "-m", "pyrmap", "vars"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "TYPE", "SHAPE", "SIZE", "OWNER"]
    assert lines[1].split()[:4] == ["demo", "X", "double", "2x3"], p.stdout
    out = tmp_path / "x.npy"
    p = subprocess.run([PYTHON, "-m", "pyrmap", "get", "demo", "X", "-o", str(out)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    np.testing.assert_array_equal(np.load(str(out)), m)
    # A path without the suffix is written as given (numpy alone would add .npy).
    bare = tmp_path / "x"
    p = subprocess.run([PYTHON, "-m", "pyrmap", "get", "demo", "X", "-o", str(bare)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in tmp_path.glob("x*")) == ["x", "x.npy"]
    np.testing.assert_array_equal(np.load(str(bare)), m)
    p = subprocess.run([PYTHON, "-m", "pyrmap", "get", "demo", "nope"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == "", p
    assert p.stderr == "pyrmap: variable 'nope' of namespace 'demo' is not registered in segment " \
                       "directory '%s'\n" % segdir
