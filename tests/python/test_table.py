"""Table blocks (pyrmap._table) against the golden files and src/table.h, and
their Python objects both ways (pyrmap._frames), with and without pandas."""

import json
import mmap
import os
import struct

import numpy as np
import pytest

from conftest import GOLDEN_DIR
from pyrmap import ProtocolError, ResultTypeError
from pyrmap import _frames as F
from pyrmap import _header as H
from pyrmap import _table as T

try:
    import pandas as pd  # noqa: F811
except ImportError:  # the numpy-only tests still run
    pd = None

needs_pandas = pytest.mark.skipif(pd is None, reason="pandas is not installed")

with open(os.path.join(GOLDEN_DIR, "tables.json"), encoding="utf-8") as _f:
    EXPECTED = json.load(_f)
VALID = sorted(n for n, spec in EXPECTED.items() if "error" not in spec)
INVALID = sorted(n for n, spec in EXPECTED.items() if "error" in spec)
KIND = {v: k for k, v in T.KIND_NAMES.items()}
ROLE = {"element": T.ROLE_ELEMENT, "names": T.ROLE_NAMES, "levels": T.ROLE_LEVELS}
PANDAS = H.TABLES_PANDAS << H.FLAG_TABLES_SHIFT
NUMPY = H.TABLES_NUMPY << H.FLAG_TABLES_SHIFT


def golden(name):
    with open(os.path.join(GOLDEN_DIR, name), "rb") as f:
        return f.read()


def input_size(name):
    return 4160 if name == "table_input_ref.bin" else None


@pytest.mark.parametrize("name", VALID)
def test_golden_table_decodes_to_its_structure_and_encodes_back(name):
    data = golden(name)
    t = T.decode(data, name, input_size(name))
    want = EXPECTED[name]
    assert t.size == want["size"]
    assert len(t.entries) == len(want["entries"])
    for e, w in zip(t.entries, want["entries"]):
        none = lambda i: -1 if i == T.NO_INDEX else i  # noqa: E731
        assert (e.kind, e.role, none(e.parent), e.flags, e.length, none(e.buffer), none(e.mask),
                e.name, e.tz, e.unit, e.children) == (
            KIND[w["kind"]], ROLE[w["role"]], w["parent"], w["flags"], w["length"], w["buffer"],
            w["mask"], w["name"], w["tz"], w["unit"], w["children"])
    for d, loc, w in zip(t.buffers, t.locations, want["buffers"]):
        assert (d.dtype_name, list(d.shape), d.offset, d.nbytes, loc) == (
            w["dtype"], w["shape"], w["offset"], w["nbytes"], w["location"])
    assert T.encode_directory(t) == data[:t.directory_size]


@pytest.mark.parametrize("name", INVALID)
def test_golden_invalid_table_is_rejected_with_its_phrase(name):
    with pytest.raises(ProtocolError) as info:
        T.decode(golden(name), name)
    assert EXPECTED[name]["error"] in str(info.value)
    assert name in str(info.value)


def read(data, flags):
    t = T.decode(data, "test")
    return F.reader_for_block(data, 0, t, flags, "test")


def test_golden_frame_as_numpy_objects():
    f = read(golden("table_frame.bin"), NUMPY).root()
    assert isinstance(f, F.Frame) and list(f) == ["x", "i", "s", "f", "d", "tä"]
    assert f["x"][0] == 1.5 and np.isnan(f["x"][1])
    assert struct.pack("<d", f["x"][1]) == struct.pack("<Q", 0x7FF00000000007A2)  # R's NA bits kept
    assert isinstance(f["i"], np.ma.MaskedArray) and f["i"].mask.tolist() == [False, True, False]
    assert f["s"].tolist() == ["a", None, "é"]
    assert f["f"] == F.Categorical(np.array([0, -1, 1], np.int8), ["u", "v"])
    assert f["d"].dtype == np.dtype("M8[D]") and str(f["d"][0]) == "2020-01-01"
    assert np.isnat(f["d"][1])
    assert f.attrs["pyrmap"]["tzone"] == {"tä": "Europe/Berlin"}
    assert f.index.tolist() == ["r1", "r2", "r3"]
    assert not f["x"].flags.writeable


@needs_pandas
def test_golden_frame_as_pandas_objects():
    df = read(golden("table_frame.bin"), PANDAS).root()
    assert isinstance(df, pd.DataFrame) and list(df.index) == ["r1", "r2", "r3"]
    assert str(df["i"].dtype) == "Int32" and df["i"].isna().tolist() == [False, True, False]
    assert str(df["f"].dtype) == "category" and df["f"].cat.codes.tolist() == [0, -1, 1]
    assert str(df["tä"].dtype) == "datetime64[ns, Europe/Berlin]"
    assert str(df["tä"][0]) == "2020-01-01 10:00:00+01:00"
    assert df.attrs["pyrmap"]["date"] == ["d"]


def test_golden_list_is_called_with_keywords():
    r = read(golden("table_list.bin"), NUMPY)
    got = r.call(lambda X, y, none, tup: (X, y, none, tup))
    X, y, none, tup = got
    assert X.shape == (3, 2) and X[0, 1] == 4 and y.tolist() == [1, 2, 3] and none is None
    assert isinstance(tup, tuple) and tup[0].tolist() == [True, False]


class Block:
    """A result written to an unnamed file and mapped back."""

    def __init__(self, value, flags=H.FLAG_RESULT_ORDER_F, span=None):
        self.fd = os.open("/tmp", os.O_TMPFILE | os.O_RDWR, 0o600)
        w = F.Writer(flags, span)
        w.add(value)
        self.desc = w.store(F.FdSink(self.fd))
        self.mm = mmap.mmap(self.fd, self.desc.nbytes, prot=mmap.PROT_READ)
        self.table = T.decode(self.mm, "result", span[1] if span else None)

    def value(self, flags):
        return F.reader_for_block(self.mm, 0, self.table, flags, "result").root()

    def close(self):
        os.close(self.fd)


def frame_columns():
    return {
        "x": np.array([1.5, np.nan, -0.0]),
        "i": np.ma.MaskedArray(np.array([1, 0, 3], np.int32), mask=[False, True, False]),
        "b": np.array([True, False, True]),
        "r": np.array([1, 2, 255], np.uint8),
        "s": np.array(["a", "ü", ""], dtype=object),
        "n": np.ma.MaskedArray(np.array(["a", "", "c"], dtype=object), mask=[False, True, False]),
        "c": F.Categorical(np.array([1, -1, 0], np.int16), ["lo", "hi"], ordered=True),
        "d": np.array(["2020-01-01", "NaT", "1960-12-31"], dtype="M8[D]"),
        "t": np.array(["2020-01-01T10:00:00.123456789", "NaT", "1970-01-01"], dtype="M8[ns]"),
    }


def assert_same_numpy(a, b):
    if isinstance(a, np.ma.MaskedArray):
        assert isinstance(b, np.ma.MaskedArray)
        assert a.mask.tolist() == b.mask.tolist()
        assert a.compressed().tolist() == b.compressed().tolist()
    elif isinstance(a, F.Categorical):
        assert a == b
    else:
        assert a.dtype == b.dtype
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fM")


def test_numpy_frame_round_trips():
    frame = F.Frame(frame_columns(), index=np.array(["a", "b", "c"], dtype=object))
    b = Block(frame)
    back = b.value(NUMPY)
    assert list(back) == list(frame) and back.index.tolist() == ["a", "b", "c"]
    for k in frame:
        assert_same_numpy(frame[k], back[k])
    b.close()


@needs_pandas
def test_pandas_frame_round_trips():
    df = pd.DataFrame({
        "x": [1.5, np.nan, 3.0],
        "i": pd.array([1, None, 3], dtype="Int32"),
        "I": pd.array([1, None, 2**40], dtype="Int64"),
        "b": pd.array([True, None, False], dtype="boolean"),
        "s": ["a", None, "é"],
        "c": pd.Categorical(["u", None, "v"], ordered=True),
        "t": pd.to_datetime(["2020-01-01", None, "2021-01-01"]).tz_localize("Europe/Berlin"),
        "n": pd.to_datetime(["2020-01-01 10:00", None, "2021-01-01"]),
    }, index=["r1", "r2", "r3"])
    b = Block(df)
    back = b.value(PANDAS)
    pd.testing.assert_frame_equal(back, df, check_dtype=True)
    b.close()


@needs_pandas
def test_series_keeps_its_index_as_names():
    s = pd.Series([1.0, 2.0], index=["a", "b"])
    b = Block({"s": s, "plain": pd.Series([3, 4])})
    t = b.table
    e = t.entries[1]
    assert e.kind == T.KIND_ARRAY and [t.entries[c].role for c in e.children] == [T.ROLE_NAMES]
    assert t.entries[2].children == []  # a default RangeIndex is no names
    b.close()


def test_masked_int_data_holds_r_na_under_the_mask():
    b = Block(np.ma.MaskedArray(np.array([7, 8], np.int64), mask=[True, False]))
    d = b.table.buffers[b.table.entries[0].buffer]
    raw = np.frombuffer(b.mm, np.int64, count=2, offset=d.offset)
    assert raw.tolist() == [-(1 << 63), 8]
    b.close()


def test_unchanged_input_columns_are_referred_to_not_written():
    src = Block(F.Frame({"x": np.arange(1000.0), "y": np.arange(1000.0) * 2}))
    frame = src.value(NUMPY)
    span = F.input_span(src.mm, 0, src.desc.nbytes)
    out = Block(F.Frame({"x": frame["x"], "z": frame["y"] + 1}), span=span)
    assert out.table.locations[:2] == [T.IN_INPUT, T.IN_BLOCK]
    assert out.table.buffers[0].offset == src.table.buffers[0].offset
    assert out.desc.nbytes < src.desc.nbytes
    # Without the caller's leave, everything is written.
    again = Block(F.Frame({"x": frame["x"]}))
    assert again.table.locations == [T.IN_BLOCK]
    for b in (src, out, again):
        b.close()


@pytest.mark.parametrize("value,phrase", [
    ({"d": np.array([1], dtype="M8[M]")}, "datetime64 of unit M is not supported"),
    ({"o": np.array([{"a": 1}], dtype=object)}, "holding a Python dict at element 1"),
    (F.Frame({"a": np.zeros(2), "b": np.zeros(3)}), "columns have different lengths"),
    (F.Frame({"m": np.zeros((2, 2))}), "column 'm' has 2 dimensions"),
    ({"x": "\udcff"}, "not valid Unicode"),
])
def test_unstorable_values_name_the_column_and_the_type(value, phrase):
    with pytest.raises(ResultTypeError) as info:
        F.Writer(0).add(value)
    assert phrase in str(info.value)


@needs_pandas
@pytest.mark.parametrize("make,phrase", [
    (lambda: pd.DataFrame({"p": pd.period_range("2020", periods=2, freq="M")}),
     "pandas dtype period[M] is not supported"),
    (lambda: pd.DataFrame({"c": pd.Categorical([1, 2])}), "categories are int"),
    (lambda: pd.DataFrame({"x": [1, 2]}, index=["a", "a"]), "R's row names must be unique"),
    (lambda: pd.DataFrame({"t": [pd.Timestamp("2020-01-01", tz="UTC"),
                                 pd.Timestamp("2020-01-01", tz="Europe/Berlin")]}),
     "mixed time zones"),
    (lambda: pd.DataFrame({"o": [1, "a"]}), "holding a Python int at element 1"),
])
def test_unstorable_pandas_columns_name_the_column_and_the_type(make, phrase):
    with pytest.raises(ResultTypeError) as info:
        F.Writer(0).add(make())
    assert phrase in str(info.value)


@needs_pandas
def test_pandas_is_not_imported_for_a_list_of_plain_arrays(monkeypatch):
    # A table without frames, masks, categories or zones needs no pandas in auto mode.
    b = Block({"a": np.arange(3)})
    r = F.reader_for_block(b.mm, 0, b.table, 0, "result")
    assert r.pd is None
    b.close()
