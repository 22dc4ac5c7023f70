"""`pyrmap run`: one script over one input, every input and output format,
every dtype byte-exact, --dtype conversion, SCRIPT::FUNCTION, script args."""

import io
import os
import re

import numpy as np
import pytest

from conftest import base_env, expect_failure

def npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def load_npy(path):
    return np.load(str(path), allow_pickle=False)


# ------------------------------------------------------------------ text on stdin

def test_text_stdin_sum(cli, scripts):
    s = scripts.func("sum.py", "data.sum()")
    o = cli("run", s, input="1 2 3\n")
    assert o.rc == 0, o
    assert o.out == "6.0\n"  # float64: printed as a float
    o = cli("run", s, "-d", "int64", input="1 2 3\n")
    assert o.rc == 0, o
    assert o.out == "6\n"  # an integer stays an integer


def test_text_stdin_is_float64_and_prints_shortest_round_trip(cli, scripts):
    values = [0.1, 0.2, 0.3, 1e-300, 123456.789]
    s = scripts.func("stats.py", """
        assert data.dtype == np.float64 and data.shape == (5,), (data.dtype, data.shape)
        return np.array([data.sum(), data.prod(), data.mean()])
    """)
    o = cli("run", s, input=" ".join(repr(v) for v in values) + "\n")
    assert o.rc == 0, o
    a = np.array(values)
    # Exact text: Python's repr of each value (shortest round trip).
    assert o.lines() == [repr(float(v)) for v in (a.sum(), a.prod(), a.mean())]


def test_text_stdin_numbers_across_lines_and_spaces(cli, scripts):
    s = scripts.func("ident.py", "data")
    o = cli("run", s, "-d", "int64", input="  1\t2\n\n 3   4 \n5\n")
    assert o.rc == 0, o
    assert o.lines() == ["1", "2", "3", "4", "5"]


def test_text_stdin_with_shape_and_order(cli, scripts):
    s = scripts.func("ident.py", """
        assert data.shape == (2, 3)
        return data
    """)
    text = "1 2 3 4 5 6\n"
    o = cli("run", s, "-s", "2,3", "-d", "int32", input=text)
    assert o.rc == 0, o
    assert o.lines() == ["1 2 3", "4 5 6"]
    o = cli("run", s, "-s", "2,3", "--order", "F", "-d", "int32", input=text)
    assert o.rc == 0, o
    assert o.lines() == ["1 3 5", "2 4 6"]


def test_text_special_values_round_trip(cli, scripts):
    s = scripts.func("ident.py", "data")
    o = cli("run", s, input="-0 0 inf -inf nan 1.5e308 5e-324\n")
    assert o.rc == 0, o
    assert o.lines() == ["-0.0", "0.0", "inf", "-inf", "nan", "1.5e+308", "5e-324"]
    got = np.array([float(t) for t in o.lines()])
    want = np.array([-0.0, 0.0, np.inf, -np.inf, np.nan, 1.5e308, 5e-324])
    np.testing.assert_array_equal(got, want)
    assert np.signbit(got[0]) and not np.signbit(got[1])


@pytest.mark.parametrize("dtype,tokens,printed", [
    ("int64", ["-9223372036854775808", "9223372036854775807", "0", "-1"], None),
    ("int32", ["-2147483648", "2147483647", "7"], None),
    ("uint8", ["0", "255", "17"], None),
    ("bool", ["True", "False", "True"], None),
    ("float32", ["1.5", "-0", "3.4028235e+38", "inf", "16777216", "0.1"],
     ["1.5", "-0.0", "3.4028235e+38", "inf", "16777216.0", "0.1"]),
    ("float64", ["1.5", "-0", "1e300", "-inf", "6", "0.1", "1e16", "1e15"],
     ["1.5", "-0.0", "1e+300", "-inf", "6.0", "0.1", "1e+16", "1000000000000000.0"]),
])
def test_text_extremes_per_dtype(cli, scripts, dtype, tokens, printed):
    # Integers and bools print as they were given; floats as Python's repr
    # (numpy's for float32) shows them.
    s = scripts.func("ident.py", """
        assert data.dtype == np.dtype(sys.argv[1]), data.dtype
        return data
    """)
    o = cli("run", s, "-d", dtype, "--", dtype, input=" ".join(tokens))
    assert o.rc == 0, o
    assert o.lines() == (printed or tokens)


FLOAT64_VALUES = [0.0, -0.0, 1.0, -6.0, 0.5, 0.1, 1 / 3, 2.0 ** 53, 2.0 ** 53 + 2, 1e15, 1e16,
                  123456.789, 1e-4, 1e-5, 1e22, 1e300, -1e-300, 5e-324, 2.2250738585072014e-308,
                  1.7976931348623157e308, float("inf"), float("-inf"), float("nan")]


def test_float64_text_is_pythons_repr(cli, scripts, work):
    np.save(work / "in.npy", np.array(FLOAT64_VALUES))
    s = scripts.func("ident.py", "data")
    o = cli("run", s, "-i", work / "in.npy")
    assert o.rc == 0, o
    assert o.lines() == [repr(v) for v in FLOAT64_VALUES]


def test_float32_text_is_the_shortest_float32_repr(cli, scripts, work):
    a = np.array([0.0, -0.0, 1.0, -6.0, 0.1, 1 / 3, 16777216.0, 1e-4, 1e-5, 1e15, 1e16, 123456.789,
                  3.4028235e38, 1e-45, 1.1754944e-38, float("inf"), float("-inf"), float("nan")],
                 np.float32)
    np.save(work / "in.npy", a)
    s = scripts.func("ident.py", "data")
    o = cli("run", s, "-i", work / "in.npy")
    assert o.rc == 0, o
    # The shortest digits that read back as the same float32 (numpy's str),
    # laid out as Python's repr lays out a float: 0.1 (not 0.10000000149011612),
    # 0.0001 and 1e-05, 1e+16.
    assert o.lines() == [repr(float(str(v))) for v in a]
    assert o.lines()[4:12] == ["0.1", "0.33333334", "16777216.0", "0.0001", "1e-05",
                               "1000000000000000.0", "1e+16", "123456.79"]


def test_nan_payloads_print_as_nan(cli, scripts, work):
    # Quiet and signalling NaNs with payloads: all are "nan", as Python shows them.
    bits = np.array([0x7FF8000000000000, 0x7FF0000000000001, 0x7FF7FFFFFFFFFFFF, 0x7FF8DEAD0000BEEF],
                    np.uint64)
    np.save(work / "in.npy", bits.view(np.float64))
    s = scripts.func("ident.py", "data")
    o = cli("run", s, "-i", work / "in.npy")
    assert o.rc == 0, o
    assert o.lines() == ["nan"] * 4


def test_negative_nan_prints_as_nan(cli, scripts, work):
    # Python's repr (and numpy's str) show every NaN as 'nan', whatever its sign.
    bits = np.array([0xFFF8000000000000, 0xFFF8DEAD0000BEEF], np.uint64)
    np.save(work / "in.npy", bits.view(np.float64))
    s = scripts.func("ident.py", "data")
    o = cli("run", s, "-i", work / "in.npy")
    assert o.rc == 0, o
    assert o.lines() == [repr(float(v)) for v in bits.view(np.float64)] == ["nan", "nan"]


def test_float_matrix_text(cli, scripts):
    s = scripts.func("ident.py", "data")
    o = cli("run", s, "-s", "2,3", input="1 2.5 -0\n3 1e300 nan\n")
    assert o.rc == 0, o
    assert o.out == "1.0 2.5 -0.0\n3.0 1e+300 nan\n"
    o = cli("run", s, "-s", "2,1,2", "-d", "float32", input="1 2 3 4\n")
    assert o.rc == 0, o
    assert o.out == "1.0 2.0\n\n3.0 4.0\n"


@pytest.mark.parametrize("expr,printed", [
    ("6", "6"),                          # a Python int: int64
    ("6.0", "6.0"),                      # a Python float: float64
    ("True", "True"),                    # bool
    ("np.float32(2)", "2.0"),
    ("np.int32(-2)", "-2"),
    ("np.uint8(255)", "255"),
    ("data.sum() / 3", "2.0"),
    ("np.float64(1) / 3", "0.3333333333333333"),
])
def test_result_text_follows_the_results_dtype(cli, scripts, expr, printed):
    s = scripts.func("scalar.py", expr)
    o = cli("run", s, input="1 2 3")
    assert o.rc == 0, o
    assert o.out == printed + "\n"


# ------------------------------------------------------------------ .npy in and out

def test_npy_c_order_in_and_out(cli, scripts, work):
    a = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    np.save(work / "in.npy", a)
    s = scripts.func("plus.py", """
        assert data.flags.c_contiguous and not data.flags.writeable
        return data + 1
    """)
    o = cli("run", s, "-i", work / "in.npy", "-o", work / "out.npy")
    assert o.rc == 0, o
    assert o.stdout == b""
    b = load_npy(work / "out.npy")
    assert b.dtype == np.float64 and b.shape == (3, 4)
    np.testing.assert_array_equal(b, a + 1)


def test_npy_f_order_input_is_a_zero_copy_f_view(cli, scripts, work):
    a = np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3))
    np.save(work / "f.npy", a)
    s = scripts.func("row.py", """
        assert data.flags.f_contiguous and not data.flags.c_contiguous, data.flags
        assert data.shape == (2, 3)
        return data[1]
    """)
    o = cli("run", s, "-i", work / "f.npy")
    assert o.rc == 0, o
    assert o.lines() == ["3", "4", "5"]


def test_npy_f_order_values_round_trip(cli, scripts, work):
    a = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3) * 1.5)
    np.save(work / "f.npy", a)
    s = scripts.func("ident.py", "data")
    o = cli("run", s, "-i", work / "f.npy", "-o", work / "out.npy")
    assert o.rc == 0, o
    b = load_npy(work / "out.npy")
    assert b.dtype == np.float32 and b.shape == (2, 3)
    np.testing.assert_array_equal(b, a)


def test_npy_f_order_result_keeps_its_layout(cli, scripts, work):
    # `pyrmap` asks for "either order" (header flag bit 1): an F-contiguous
    # result is written column-major and saved with fortran_order True.
    a = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    np.save(work / "f.npy", a)
    s = scripts.func("ident.py", "data")
    o = cli("run", s, "-i", work / "f.npy", "-o", work / "out.npy")
    assert o.rc == 0, o
    b = load_npy(work / "out.npy")
    assert b.flags.f_contiguous and not b.flags.c_contiguous


def test_npy_on_stdin_and_npy_on_stdout(cli, scripts):
    a = np.arange(10, dtype=np.int64) - 5
    s = scripts.func("neg.py", "-data")
    o = cli("run", s, "-o", "-", "--output-format", "npy", input=npy_bytes(a))
    assert o.rc == 0, o
    b = np.load(io.BytesIO(o.stdout))
    assert b.dtype == np.int64
    np.testing.assert_array_equal(b, -a)


def test_three_dimensional_npy(cli, scripts, work):
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    np.save(work / "in.npy", a)
    s = scripts.func("t.py", "data.transpose(2, 0, 1) * 3")
    o = cli("run", s, "-i", work / "in.npy", "-o", work / "out.npy")
    assert o.rc == 0, o
    np.testing.assert_array_equal(load_npy(work / "out.npy"), a.transpose(2, 0, 1) * 3)
    # As text: 2-D blocks of the last two axes separated by blank lines.
    o = cli("run", s, "-i", work / "in.npy")
    assert o.rc == 0, o
    blocks = o.out.strip("\n").split("\n\n")
    want = a.transpose(2, 0, 1) * 3
    assert len(blocks) == 4
    for k, block in enumerate(blocks):
        np.testing.assert_array_equal(np.array([r.split() for r in block.splitlines()], int), want[k])


# ------------------------------------------------------------------ raw in and out

def test_raw_in_with_shape_and_order(cli, scripts, work):
    (work / "in.bin").write_bytes(np.arange(6, dtype=np.int32).tobytes())
    s = scripts.func("row.py", "data[1]")
    o = cli("run", s, "-i", work / "in.bin", "-d", "int32", "-s", "2,3")
    assert o.rc == 0, o
    assert o.lines() == ["3", "4", "5"]  # row-major: [[0,1,2],[3,4,5]]
    o = cli("run", s, "-i", work / "in.bin", "-d", "int32", "-s", "2,3", "--order", "F")
    assert o.rc == 0, o
    assert o.lines() == ["1", "3", "5"]  # column-major: [[0,2,4],[1,3,5]]


def test_raw_out_is_the_payload_bytes(cli, scripts, work):
    a = np.arange(12, dtype=np.float64).reshape(3, 4) * 0.25
    (work / "in.bin").write_bytes(a.tobytes())
    s = scripts.func("sq.py", "np.ascontiguousarray(data * data)")
    o = cli("run", s, "-i", work / "in.bin", "-d", "float64", "-s", "3,4", "-o", work / "out.bin")
    assert o.rc == 0, o
    assert (work / "out.bin").read_bytes() == (a * a).tobytes()
    # --output-format raw on stdout: the same bytes.
    o = cli("run", s, "-i", work / "in.bin", "-d", "float64", "-s", "3,4", "--output-format", "raw")
    assert o.rc == 0, o
    assert o.stdout == (a * a).tobytes()


def test_raw_out_layout_follows_order_not_the_results_memory(cli, scripts, work):
    # data.T of a C array is F-contiguous; raw output has no header to say so,
    # so it is written row-major (or column-major with --order F).
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    (work / "in.bin").write_bytes(a.tobytes())
    s = scripts.func("tr.py", "data.T")
    o = cli("run", s, "-i", work / "in.bin", "-d", "int32", "-s", "2,3", "-o", work / "out.bin")
    assert o.rc == 0, o
    assert (work / "out.bin").read_bytes() == np.ascontiguousarray(a.T).tobytes()
    o = cli("run", s, "-i", work / "in.bin", "-d", "int32", "-s", "2,3", "--order", "F",
            "--output-format", "raw")
    assert o.rc == 0, o
    f = np.asfortranarray(np.frombuffer(a.tobytes(), np.int32).reshape(2, 3, order="F"))
    assert o.stdout == f.T.tobytes(order="F")
    # .npy keeps the result's own layout, and its values.
    o = cli("run", s, "-i", work / "in.bin", "-d", "int32", "-s", "2,3", "-o", work / "out.npy")
    assert o.rc == 0, o
    b = load_npy(work / "out.npy")
    np.testing.assert_array_equal(b, a.T)
    assert b.flags.f_contiguous


def test_raw_out_dir_of_shared_and_pipeline_is_row_major(cli, scripts, work):
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    np.save(work / "in.npy", a)
    s = scripts.func("tr.py", "data.T")
    out = work / "out"
    out.mkdir()
    o = cli("shared", s, "-i", work / "in.npy", "--output-dir", out, "--output-format", "raw")
    assert o.rc == 0, o
    assert (out / "1-tr.bin").read_bytes() == np.ascontiguousarray(a.T).tobytes()
    o = cli("pipeline", s, s, s, "-i", work / "in.npy", "-o", work / "p.bin")
    assert o.rc == 0, o
    assert (work / "p.bin").read_bytes() == np.ascontiguousarray(a.T).tobytes()


def test_raw_f_order_round_trip_is_byte_identical(cli, scripts, work):
    # Raw output is the result's own layout: an F input returned unchanged
    # comes back as the same column-major bytes.
    raw = np.arange(6, dtype=np.int32).tobytes()
    (work / "in.bin").write_bytes(raw)
    s = scripts.func("ident.py", "data")
    o = cli("run", s, "-i", work / "in.bin", "-d", "int32", "-s", "2,3", "--order", "F",
            "-o", work / "out.bin")
    assert o.rc == 0, o
    assert (work / "out.bin").read_bytes() == raw


# ------------------------------------------------------------------ every dtype, byte-exact

def _special(dtype):
    if dtype == "int32":
        return np.array([0, 1, -1, np.iinfo(np.int32).min, np.iinfo(np.int32).max, 12345], np.int32)
    if dtype == "int64":
        i = np.iinfo(np.int64)
        return np.array([0, -1, i.min, i.max, 2**53 + 1, -(2**53 + 1)], np.int64)
    if dtype == "uint8":
        return np.arange(256, dtype=np.uint8)
    if dtype == "bool":
        return np.array([True, False, True, True, False])
    if dtype == "float32":
        bits = [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001,
                0xFFC12345, 0x7FBFFFFF, 0x00000001, 0x7F7FFFFF, 0x3F800000]
        return np.array(bits, np.uint32).view(np.float32)
    if dtype == "float64":
        bits = [0x0000000000000000, 0x8000000000000000, 0x7FF0000000000000, 0xFFF0000000000000,
                0x7FF8000000000000, 0x7FF0000000000001, 0xFFF8DEAD0000BEEF, 0x7FF7FFFFFFFFFFFF,
                0x0000000000000001, 0x7FEFFFFFFFFFFFFF, 0x3FF0000000000000]
        return np.array(bits, np.uint64).view(np.float64)
    raise AssertionError(dtype)


DTYPES = ["int32", "int64", "float32", "float64", "uint8", "bool"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_npy_byte_exact(cli, scripts, work, dtype):
    a = _special(dtype)
    np.save(work / "in.npy", a)
    # The identity writes from the input's own buffer; the reversal goes
    # through the staging copy. Both must keep every bit (NaN payloads, -0.0).
    s = scripts.func("both.py", """
        assert data.dtype == np.dtype(sys.argv[1]), data.dtype
        return data if sys.argv[2] == "same" else data[::-1]
    """)
    for how, want in (("same", a), ("reversed", a[::-1])):
        o = cli("run", s, "-i", work / "in.npy", "-o", work / "out.npy", "--", dtype, how)
        assert o.rc == 0, o
        b = load_npy(work / "out.npy")
        assert b.dtype == a.dtype and b.shape == a.shape
        assert b.tobytes() == np.ascontiguousarray(want).tobytes(), how


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_raw_byte_exact(cli, scripts, work, dtype):
    a = _special(dtype)
    (work / "in.bin").write_bytes(a.tobytes())
    s = scripts.func("ident.py", "data")
    o = cli("run", s, "-i", work / "in.bin", "-d", dtype, "-o", work / "out.bin")
    assert o.rc == 0, o
    assert (work / "out.bin").read_bytes() == a.tobytes()


# ------------------------------------------------------------------ --dtype conversion

def test_dtype_converts_npy_input(cli, scripts, work):
    np.save(work / "in.npy", np.array([1, 2, 300, -4], np.int64))
    s = scripts.func("ident.py", """
        assert data.dtype == np.float32, data.dtype
        return data
    """)
    o = cli("run", s, "-i", work / "in.npy", "-d", "float32", "-o", work / "out.npy")
    assert o.rc == 0, o
    b = load_npy(work / "out.npy")
    assert b.dtype == np.float32
    np.testing.assert_array_equal(b, [1, 2, 300, -4])


def test_dtype_converts_float_npy_to_int(cli, scripts, work):
    np.save(work / "in.npy", np.array([[1.0, -2.0], [3.0, 2.0**40]]))
    s = scripts.func("ident.py", "data")
    o = cli("run", s, "-i", work / "in.npy", "-d", "int64", "-o", work / "out.npy")
    assert o.rc == 0, o
    b = load_npy(work / "out.npy")
    assert b.dtype == np.int64
    np.testing.assert_array_equal(b, [[1, -2], [3, 2**40]])


def test_dtype_refuses_a_value_that_does_not_fit(cli, scripts, work):
    np.save(work / "in.npy", np.array([1, 2, 300], np.int64))
    s = scripts.func("ident.py", "data")
    o = cli("run", s, "-i", work / "in.npy", "-d", "uint8")
    expect_failure(o, 2, "300", "uint8", "in.npy")


def test_dtype_refuses_a_fraction_for_an_integer_type(cli, scripts, work):
    np.save(work / "in.npy", np.array([1.0, 1.5]))
    s = scripts.func("ident.py", "data")
    expect_failure(cli("run", s, "-i", work / "in.npy", "-d", "int32"), 2, "1.5", "int32")
    # The same from stdin.
    expect_failure(cli("run", s, "-d", "int32", input=npy_bytes(np.array([1.0, 1.5]))), 2,
                   "1.5", "int32", "stdin")


def test_dtype_refuses_text_that_does_not_fit(cli, scripts):
    s = scripts.func("ident.py", "data")
    expect_failure(cli("run", s, "-d", "uint8", input="1 2 300\n"), 2, "300", "uint8")


# ------------------------------------------------------------------ empty input

def test_empty_stdin_sums_to_zero(cli, scripts):
    s = scripts.func("sum.py", """
        assert data.shape == (0,) and data.dtype == np.float64
        return data.sum()
    """)
    o = cli("run", s, input="")
    assert o.rc == 0, o
    assert o.out == "0.0\n"


@pytest.mark.parametrize("shape,dtype", [((0,), "int32"), ((0, 3), "float64"), ((4, 0), "uint8")])
def test_empty_npy_round_trips(cli, scripts, work, shape, dtype):
    a = np.zeros(shape, dtype)
    np.save(work / "in.npy", a)
    s = scripts.func("ident.py", "data")
    o = cli("run", s, "-i", work / "in.npy", "-o", work / "out.npy")
    assert o.rc == 0, o
    b = load_npy(work / "out.npy")
    assert b.shape == shape and b.dtype == a.dtype


def test_empty_raw_file(cli, scripts, work):
    (work / "empty.bin").write_bytes(b"")
    s = scripts.func("count.py", "np.int64(data.size)")
    o = cli("run", s, "-i", work / "empty.bin", "-d", "int32")
    assert o.rc == 0, o
    assert o.out == "0\n"


def test_empty_result_from_nonempty_input(cli, scripts):
    s = scripts.func("none.py", "data[data > 100]")
    o = cli("run", s, input="1 2 3")
    assert o.rc == 0, o
    assert o.out == ""


# ------------------------------------------------------------------ SCRIPT::FUNCTION, args

FUNCS = """
    import numpy as np
    from pyrmap import process_via_mmap

    def double(data):
        return data * 2

    @process_via_mmap
    def negate(data):
        return -data

    def total(data):
        return data.sum()

    if __name__ == "__main__":
        raise SystemExit("the __main__ block must not run with ::FUNCTION")
"""


@pytest.mark.parametrize("func,want", [("double", ["2", "4", "6"]), ("negate", ["-1", "-2", "-3"]),
                                       ("total", ["6"])])
def test_script_function(cli, scripts, func, want):
    s = scripts.write("funcs.py", FUNCS)
    o = cli("run", s + "::" + func, "-d", "int64", input="1 2 3")
    assert o.rc == 0, o
    assert o.lines() == want


@pytest.mark.parametrize("pool", [False, True])
def test_script_function_that_does_not_exist(cli, scripts, pool):
    """A usage error (exit 2), said once and in the user's terms: the
    script, the name asked for and the functions it has; no traceback of
    pyrmap's own code, no environment variable."""
    s = scripts.write("funcs.py", FUNCS)
    args = ["shared", s + "::nope", "--pool"] if pool else ["run", s + "::nope"]
    o = cli(*args, input="1 2 3")
    expect_failure(o, 2, "funcs.py", "no function 'nope'", "double", "total")
    assert o.stderr.count("no function 'nope'") == 1, o
    assert o.stderr.count("\n") == 1, o  # one line
    for word in ("Traceback", "PYRMAP_FUNCTION", "AttributeError", "ScriptNotLoaded", "raised"):
        assert word not in o.stderr, o


def test_text_input_accepts_commas_between_numbers(cli, scripts):
    s = scripts.func("sum.py", "data.sum()")
    o = cli("run", s, input="1,2, 3\n4 ,5,6\n7 8\n")
    assert o.rc == 0, o
    assert o.lines() == ["36.0"]
    o = cli("run", scripts.func("shape.py", "np.array(data.shape)"), "-s", "2,3", "-d", "int32",
            input="1,2,3\n4,5,6\n")
    assert o.rc == 0 and o.lines() == ["2", "3"], o


@pytest.mark.parametrize("text,line", [("1,,2\n", 1), ("1 2\n,3\n", 2), ("1,2,\n", 1)])
def test_text_input_refuses_an_empty_field(cli, scripts, text, line):
    s = scripts.func("sum.py", "data.sum()")
    expect_failure(cli("run", s, input=text), 2, "stdin: line %d" % line, "empty field")


def test_progress_is_quiet_by_default(cli, scripts):
    o = cli("run", scripts.func("sum.py", "data.sum()"), input="1 2 3")
    assert o.rc == 0 and o.lines() == ["6.0"] and o.stderr == "", o


PROGRESS_LINE = re.compile(r"^pyrmap: (input|output|(\[\d+(-\d+)?/\d+\] )?(script|pipeline) '.+'): ")


def progress_lines(o):
    lines = o.stderr.splitlines()
    for line in lines:
        assert PROGRESS_LINE.match(line), (line, str(o))
    return lines


def test_progress_of_a_run(cli, scripts, work):
    s = scripts.func("plus.py", "data + 1")
    np.save(work / "in.npy", np.zeros((1000, 4)))
    o = cli("run", s, "-i", work / "in.npy", "-o", work / "out.npy", "--progress")
    assert o.rc == 0 and o.stdout == b"", o
    lines = progress_lines(o)
    assert len(lines) == 4, o
    assert lines[0] == "pyrmap: input: %s: float64[1000, 4] (row-major), 31.2 KiB" % (work / "in.npy"), o
    assert lines[1] == "pyrmap: script '%s': started on float64[1000, 4] (row-major), 31.2 KiB" % s, o
    assert re.fullmatch(r"pyrmap: script '%s': done in \d+\.\d+ s: float64\[1000, 4\] \(row-major\), "
                        r"31\.2 KiB" % re.escape(s), lines[2]), o
    assert re.fullmatch(r"pyrmap: output: %s: 31\.2 KiB in \d+\.\d+ s" % re.escape(str(work / "out.npy")),
                        lines[3]), o
    np.testing.assert_array_equal(np.load(work / "out.npy"), np.ones((1000, 4)))


@pytest.mark.parametrize("pool", [False, True])
def test_progress_of_a_pipeline_says_each_stage_in_turn(cli, scripts, pool):
    a = scripts.func("a.py", "np.repeat(data, 2)")
    b = scripts.func("b.py", "data.sum()")
    o = cli("pipeline", a, b, "-v", *(["--pool"] if pool else []), input="1 2 3")
    assert o.rc == 0 and o.lines() == ["12.0"], o
    lines = progress_lines(o)
    assert lines[0] == "pyrmap: input: stdin: float64[3], 24 B", o
    if pool:
        # In a pool the pipeline runs inside one worker: one start, one end.
        assert lines[1].startswith("pyrmap: [1-2/2] pipeline '%s', '%s': started on float64[3], 24 B" % (a, b)), o
        assert re.search(r"\[1-2/2\] pipeline .*: done in [\d.]+ s: float64\[1\], 8 B$", lines[2]), o
    else:
        assert lines[1] == "pyrmap: [1/2] script '%s': started on float64[3], 24 B" % a, o
        assert re.search(r"^pyrmap: \[1/2\] script '.*a\.py': done in [\d.]+ s: float64\[6\], 48 B$", lines[2]), o
        assert lines[3] == "pyrmap: [2/2] script '%s': started on float64[6], 48 B" % b, o
        assert re.search(r"^pyrmap: \[2/2\] script '.*b\.py': done in [\d.]+ s: float64\[1\], 8 B$", lines[4]), o
    assert lines[-1].startswith("pyrmap: output: stdout (text): 8 B in "), o


def test_progress_of_shared_scripts_and_a_failure(cli, scripts):
    ok = scripts.func("ok.py", "data.max()")
    bad = scripts.func("bad.py", "raise ValueError('no')")
    o = cli("shared", ok, bad, "-v", input="1 2 3")
    assert o.rc == 3, o
    started = [l for l in o.stderr.splitlines() if ": started on " in l]
    assert sorted(started) == sorted(["pyrmap: [1/2] script '%s': started on float64[3], 24 B" % ok,
                                      "pyrmap: [2/2] script '%s': started on float64[3], 24 B" % bad]), o
    assert re.search(r"^pyrmap: \[2/2\] script '.*bad\.py': failed after [\d.]+ s$", o.stderr, re.M), o
    assert "ValueError: no" in o.stderr, o


def test_script_args_after_double_dash(cli, scripts):
    s = scripts.func("argv.py", """
        with open(os.environ["ARGV_OUT"], "w") as f:
            f.write(repr(sys.argv[1:]))
        return data * float(sys.argv[1])
    """)
    out = scripts.path("argv.txt")
    env_args = ["3", "-i", "--timeout", "x y", "--"]
    o = cli("run", s, "-t", "30", "--", *env_args, input="1 2", env=base_env(ARGV_OUT=out))
    assert o.rc == 0, o
    assert o.lines() == ["3.0", "6.0"]
    with open(out) as f:
        assert eval(f.read()) == env_args


def test_script_args_with_arg_option(cli, scripts):
    s = scripts.func("argv.py", """
        with open(os.environ["ARGV_OUT"], "w") as f:
            f.write(repr(sys.argv[1:]))
        return data * float(sys.argv[1])
    """)
    out = scripts.path("argv.txt")

    def argv_of(*args):
        o = cli("run", s, *args, input="1 2", env=base_env(ARGV_OUT=out))
        assert o.rc == 0, o
        assert o.lines() == ["3.0", "6.0"]
        with open(out) as f:
            return eval(f.read())

    assert argv_of("-a", "3") == ["3"]
    # Repeatable, in order, values may look like options; -a/--arg come before
    # the arguments after --.
    assert argv_of("--arg", "3", "-d", "float64", "-a", "x y", "--arg=-i", "-a", "--", "--", "z") == \
        ["3", "x y", "-i", "--", "z"]
    assert argv_of("-a", "3", "--", "4") == ["3", "4"]


def test_script_sees_its_own_directory_on_sys_path(cli, scripts):
    scripts.write("helper_mod.py", "FACTOR = 7\n")
    s = scripts.func("uses_helper.py", "data * helper_mod.FACTOR", prelude="import helper_mod\n")
    o = cli("run", s, input="1 2", cwd="/")
    assert o.rc == 0, o
    assert o.lines() == ["7.0", "14.0"]


def test_script_stdout_passes_through(cli, scripts, work):
    s = scripts.func("chatty.py", """
        print("hello from the script", flush=True)
        return data
    """)
    # The result goes to a file of our own (never to the real /dev/null: a
    # regression in writing devices would replace it for the whole machine).
    o = cli("run", s, "-o", work / "out.bin", input="1")
    assert o.rc == 0, o
    assert "hello from the script" in o.out


# ------------------------------------------------------------------ segments of a big input

RESULT_SEGMENT_SIZE = """
    # What the runner prepared: the result segment's size, and whether the
    # data segment still has a name, seen before anything is stored.
    size = os.stat("/dev/shm/" + os.environ["PYRMAP_RESULT"]).st_size
    named = os.path.exists("/dev/shm/" + os.environ["PYRMAP_DATA"])
    return np.array([size, named, data.nbytes], dtype=np.int64)
"""


@pytest.mark.parametrize("count, reserved", [(1 << 22, True), (1000, False)])
def test_big_inputs_get_their_result_segments_reserved_ahead(cli, scripts, work, count, reserved):
    # Several scripts over one input each write a result segment of their
    # own: for a big input (32 MiB of float64) the runner reserves them to
    # the input's size while it writes the input; small inputs are not worth it.
    np.save(work / "in.npy", np.ones(count))
    s = scripts.func("probe.py", RESULT_SEGMENT_SIZE)
    o = cli("shared", s, s, "-j", "2", "-i", work / "in.npy")
    assert o.rc == 0, o
    lines = [line for line in o.lines() if not line.startswith("==")]
    for size, named, nbytes in zip(*[iter(int(v) for v in lines)] * 3):
        assert nbytes == count * 8
        assert size == (nbytes if reserved else 0)
        # The scripts got the data as a descriptor; its name is already gone.
        assert named == 0


def test_a_single_script_writes_its_result_over_its_own_input(cli, scripts, work):
    # The input is this call's alone: the result goes into its pages (no
    # result segment is filled, none is reserved).
    np.save(work / "in.npy", np.ones(1 << 22))
    s = scripts.func("probe.py", RESULT_SEGMENT_SIZE)
    o = cli("run", s, "-i", work / "in.npy")
    assert o.rc == 0, o
    size, named, nbytes = (int(v) for v in o.lines())
    assert (size, named, nbytes) == (0, 0, 8 << 22)


def test_a_result_smaller_than_the_reservation_is_cut_to_size(cli, scripts, work):
    np.save(work / "in.npy", np.arange(1 << 22, dtype=np.float64))
    s = scripts.func("total.py", "data[:3] * 2")
    o = cli("run", s, "-i", work / "in.npy", "-o", work / "out.npy")
    assert o.rc == 0, o
    np.testing.assert_array_equal(np.load(work / "out.npy"), [0.0, 2.0, 4.0])


@pytest.mark.parametrize("expr", ["np.concatenate([data, data, data]) + 1", "data[::3] - 1",
                                  "data.astype(np.float32)", "data.reshape(4, -1).T.copy()"])
def test_results_written_over_the_input_are_right_whatever_their_size(cli, scripts, work, expr):
    x = np.arange(1 << 20, dtype=np.float64)  # 8 MiB
    np.save(work / "in.npy", x)
    s = scripts.func("f.py", expr)
    o = cli("run", s, "-i", work / "in.npy", "-o", work / "out.npy")
    assert o.rc == 0, o
    data = x  # noqa: F841 (the expression's name)
    np.testing.assert_array_equal(np.load(work / "out.npy"), eval(expr))


def test_pipeline_stages_write_over_their_inputs_and_kept_stages_stay_intact(cli, scripts, work):
    x = np.arange(1 << 18, dtype=np.float64)
    np.save(work / "in.npy", x)
    a = scripts.func("a.py", "data * 2")
    b = scripts.func("b.py", "np.concatenate([data, data])")
    c = scripts.func("c.py", "data[: data.size // 4] + 1")
    o = cli("pipeline", a, b, c, "-i", work / "in.npy", "-o", work / "out.npy")
    assert o.rc == 0, o
    np.testing.assert_array_equal(np.load(work / "out.npy"), np.concatenate([x * 2, x * 2])[: x.size // 2] + 1)
    (work / "kept").mkdir()
    o = cli("pipeline", a, b, c, "-k", "-i", work / "in.npy", "--output-dir", work / "kept")
    assert o.rc == 0, o
    np.testing.assert_array_equal(np.load(work / "kept" / "1-a.npy"), x * 2)
    np.testing.assert_array_equal(np.load(work / "kept" / "2-b.npy"), np.concatenate([x * 2, x * 2]))
    np.testing.assert_array_equal(np.load(work / "kept" / "3-c.npy"), (x * 2)[: x.size // 2] + 1)
