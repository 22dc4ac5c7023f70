"""Several named arrays through the command: an .npz archive's arrays become
the function's keyword arguments, a dict (tuple, frame) result becomes an
.npz archive or text blocks; what a file cannot hold is refused by name."""

import io
import zipfile

import numpy as np

from conftest import expect_failure

FUNCS = """
import numpy as np

def fit(X, y):
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    return {"coef": coef, "fitted": X @ coef}

def names(**kw):
    return {k: np.asarray(v.shape, dtype=np.int64) for k, v in kw.items()}

def kinds(**kw):
    return {k: np.frombuffer(("%s/%s/%s" % (v.dtype, v.shape, v.flags.f_contiguous)).encode(), np.uint8)
            for k, v in kw.items()}

def pair(**kw):
    return (kw["a"] + 1, kw["a"] * 2)

def strings(**kw):
    return {"s": np.array(["a", "b"]), "n": kw["a"]}

def masked(**kw):
    return {"m": np.ma.MaskedArray(np.array([1, 2], np.int32), mask=[True, False])}

def nested(**kw):
    return {"inner": {"x": kw["a"]}}

def series(**kw):
    return np.ma.MaskedArray(kw["a"], mask=np.arange(kw["a"].size) == 0)
"""


def funcs(scripts):
    return scripts.write("funcs.py", FUNCS)


def savez(path, **arrays):
    np.savez(str(path), **arrays)
    return path


def test_npz_input_becomes_keyword_arguments_and_a_dict_result_an_npz(cli, scripts, work):
    X = np.c_[np.ones(5), np.arange(5.0)]
    y = 3 * np.arange(5.0) - 1
    savez(work / "in.npz", X=X, y=y)
    o = cli("run", funcs(scripts) + "::fit", "-i", work / "in.npz", "-o", work / "out.npz")
    assert o.rc == 0, o
    with np.load(str(work / "out.npz")) as z:
        assert list(z.keys()) == ["coef", "fitted"]
        np.testing.assert_allclose(z["coef"], [-1.0, 3.0])
        np.testing.assert_allclose(z["fitted"], y)
    # Python's zipfile finds the archive sound (CRCs included).
    with zipfile.ZipFile(str(work / "out.npz")) as zf:
        assert zf.testzip() is None
    # On stdout as text: one block per array.
    o = cli("run", funcs(scripts) + "::fit", "-i", work / "in.npz")
    assert o.rc == 0, o
    blocks = o.out.split("== fitted ==\n")
    assert len(blocks) == 2 and blocks[0].startswith("== coef ==\n"), o
    np.testing.assert_allclose(np.array(blocks[0].split("\n")[1:3], float), [-1.0, 3.0])
    np.testing.assert_allclose(np.array(blocks[1].split(), float), y)


def test_every_member_keeps_its_dtype_shape_and_order(cli, scripts, work):
    arrays = {"i": np.arange(6, dtype=np.int32).reshape(2, 3),
              "f": np.asfortranarray(np.arange(6.0).reshape(3, 2)),
              "b": np.array([True, False]), "u": np.arange(3, dtype=np.uint8),
              "é": np.zeros(0, np.float32), "s": np.float64(7.5)}
    savez(work / "in.npz", **arrays)
    o = cli("run", funcs(scripts) + "::kinds", "-i", work / "in.npz", "-o", work / "k.npz")
    assert o.rc == 0, o
    with np.load(str(work / "k.npz")) as z:
        got = {k: bytes(z[k]).decode() for k in z.keys()}
    assert got == {k: "%s/%s/%s" % (v.dtype, v.shape, v.flags.f_contiguous) for k, v in arrays.items()}
    # And the arrays themselves come back identical through an identity.
    s = scripts.write("ident.py", "def ident(**kw):\n    return kw\n")
    o = cli("run", s + "::ident", "-i", work / "in.npz", "-o", work / "same.npz")
    assert o.rc == 0, o
    with np.load(str(work / "same.npz")) as z:
        assert list(z.keys()) == list(arrays)
        for k, v in arrays.items():
            # A 0-d array in a table result is stored with one element (as
            # R sees any scalar); everything else keeps its shape.
            assert z[k].dtype == v.dtype and z[k].shape == (v.shape or (1,)), k
            np.testing.assert_array_equal(z[k], v.reshape(v.shape or (1,)))


def test_npz_on_stdin_and_an_unnamed_tuple_as_arr_0_arr_1(cli, scripts, work):
    buf = io.BytesIO()
    np.savez(buf, a=np.arange(4, dtype=np.int64))
    o = cli("run", funcs(scripts) + "::pair", "-o", "-", "--output-format", "npz", input=buf.getvalue())
    assert o.rc == 0, o
    with np.load(io.BytesIO(o.stdout)) as z:
        assert list(z.keys()) == ["arr_0", "arr_1"]
        np.testing.assert_array_equal(z["arr_0"], np.arange(4) + 1)
        np.testing.assert_array_equal(z["arr_1"], np.arange(4) * 2)
    # --input-format npz says what the extension does not.
    (work / "data.bin").write_bytes(buf.getvalue())
    o = cli("run", funcs(scripts) + "::names", "-i", work / "data.bin", "--input-format", "npz",
            "-o", work / "n.npz")
    assert o.rc == 0, o
    with np.load(str(work / "n.npz")) as z:
        np.testing.assert_array_equal(z["a"], [4])


def test_an_empty_archive_calls_the_function_without_arguments(cli, scripts, work):
    savez(work / "empty.npz")
    s = scripts.write("none.py", "import numpy as np\ndef f(**kw):\n    return np.array([len(kw)])\n")
    o = cli("run", s + "::f", "-i", work / "empty.npz")
    assert o.rc == 0, o
    assert o.out == "0\n"


def test_a_large_archive_written_by_numpy_and_read_back(cli, scripts, work):
    big = np.random.default_rng(1).random(3_000_000)
    savez(work / "big.npz", x=big, n=np.arange(10))
    s = scripts.write("ident.py", "def ident(**kw):\n    return kw\n")
    o = cli("run", s + "::ident", "-i", work / "big.npz", "-o", work / "big_out.npz")
    assert o.rc == 0, o
    with np.load(str(work / "big_out.npz")) as z:
        np.testing.assert_array_equal(z["x"], big)
        np.testing.assert_array_equal(z["n"], np.arange(10))
    with zipfile.ZipFile(str(work / "big_out.npz")) as zf:
        assert zf.testzip() is None


def test_results_a_file_cannot_hold_are_refused_by_name(cli, scripts, work):
    savez(work / "in.npz", a=np.arange(3, dtype=np.int32))
    f = funcs(scripts)
    o = cli("run", f + "::fit", "-i", work / "in.npz")
    expect_failure(o, 3, "fit", "unexpected keyword argument 'a'")
    X = np.c_[np.ones(3), np.arange(3.0)]
    savez(work / "xy.npz", X=X, y=np.arange(3.0))
    # Several arrays as .npy or raw: refused, pointing to .npz.
    for extra in (["-o", str(work / "out.npy")], ["-o", str(work / "out.bin")]):
        o = cli("run", f + "::fit", "-i", work / "xy.npz", *extra)
        expect_failure(o, 2, "funcs.py::fit", "several arrays", ".npz")
        assert not (work / "out.npy").exists() and not (work / "out.bin").exists()
    cases = [("strings", "element 's'", "strings"),
             ("masked", "element 'm'", "missing values"),
             ("nested", "element 'inner'", "a list")]
    for fun, where, what in cases:
        o = cli("run", f + "::" + fun, "-i", work / "in.npz", "-o", work / (fun + ".npz"))
        expect_failure(o, 2, "funcs.py::" + fun, where, what)
        assert not (work / (fun + ".npz")).exists()
    o = cli("run", f + "::series", "-i", work / "in.npz")
    expect_failure(o, 2, "funcs.py::series", "missing values")


def test_archives_that_are_not_plain_npz_are_refused(cli, scripts, work):
    s = funcs(scripts) + "::names"
    np.savez_compressed(str(work / "c.npz"), a=np.arange(3))
    expect_failure(cli("run", s, "-i", work / "c.npz"), 2, "c.npz", "member 'a.npy'", "compressed",
                   "np.savez")
    with zipfile.ZipFile(str(work / "t.npz"), "w") as zf:
        zf.writestr("notes.txt", "hello")
    expect_failure(cli("run", s, "-i", work / "t.npz"), 2, "t.npz", "member 'notes.txt'", "not an .npy file")
    good = work / "g.npz"
    savez(good, a=np.arange(3))
    data = good.read_bytes()
    (work / "cut.npz").write_bytes(data[:-30])
    expect_failure(cli("run", s, "-i", work / "cut.npz"), 2, "cut.npz")
    expect_failure(cli("run", s, "-i", good, "-d", "float32"), 2, "g.npz", "own")
    expect_failure(cli("run", s, "-i", work / "cut.npz", "--input-format", "npz"), 2, "cut.npz")
    (work / "z.bin").write_bytes(b"PK\x03\x04" + b"\0" * 10)
    expect_failure(cli("run", s, "-i", work / "z.bin"), 2, "z.bin", "zip")


def test_output_dir_writes_npz_for_table_results(cli, scripts, work):
    savez(work / "in.npz", X=np.c_[np.ones(3), np.arange(3.0)], y=np.arange(3.0))
    f = funcs(scripts)
    out = work / "out"
    out.mkdir()
    o = cli("shared", f + "::fit", f + "::names", "-i", work / "in.npz", "--output-dir", out)
    assert o.rc == 0, o
    assert sorted(p.name for p in out.iterdir()) == ["1-funcs.npz", "2-funcs.npz"]
    with np.load(str(out / "2-funcs.npz")) as z:
        np.testing.assert_array_equal(z["X"], [3, 2])
