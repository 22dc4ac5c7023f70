#!/usr/bin/env python3
"""Writes the golden exchange-header images and expected.json.

Run once (``python3 tests/golden/make_golden.py``); its output is committed
and read by both the C++ and the Python tests. It spells every byte out with
struct at the offsets documented in src/header.h and deliberately does not
use pyrmap's own encoder: the files are an independent statement of the
table. Valid images are exactly what an encoder produces for their fields
(reserved bytes 0, header_size 4096), so tests may also encode the fields and
compare bytes.

expected.json maps each file name to either the decoded fields

    {"version_major", "version_minor", "state", "flags", "owner_pid",
     "worker_pid", "result_location", "input": DESC, "result": DESC,
     "error_type", "error_text", "error_truncated"}
    DESC = {"dtype": name ("none" for no array), "order": "C" | "F",
            "shape": [...], "count", "offset", "nbytes"}

or, for an image a decoder must reject, {"error": PHRASE} where PHRASE is a
substring of the decoder's message (C++ and Python messages agree).
Standard library only; Python >= 3.8.
"""

import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

MAGIC = b"\x89PYRMAP\n"
SIZE = 4096
DTYPES = {"none": (0, 0), "int32": (1, 4), "int64": (2, 8), "float32": (3, 4),
          "float64": (4, 8), "uint8": (5, 1), "bool": (6, 1)}
ORDERS = {"C": 0, "F": 1}


def desc(dtype="none", shape=(), order="C", offset=0, count=None, nbytes=None,
         code=None, ndim=None, order_code=None):
    """A descriptor spec; the keyword overrides make inconsistent ones."""
    n = 1
    for s in shape:
        n *= s
    if dtype == "none":
        n = 0 if count is None else count
    return {
        "dtype": dtype, "order": order, "shape": list(shape),
        "count": n if count is None else count,
        "offset": offset,
        "nbytes": n * DTYPES[dtype][1] if nbytes is None else nbytes,
        "_code": DTYPES[dtype][0] if code is None else code,
        "_ndim": len(shape) if ndim is None else ndim,
        "_order": ORDERS[order] if order_code is None else order_code,
    }


def put_desc(buf, base, d):
    # ArrayDesc: u32 dtype @0, u32 order @4, u32 ndim @8, u32 reserved @12,
    # u64 count @16, u64 offset @24, u64 nbytes @32, 8 reserved @40,
    # u64 shape[16] @48, 16 reserved @176.
    struct.pack_into("<I", buf, base + 0, d["_code"])
    struct.pack_into("<I", buf, base + 4, d["_order"])
    struct.pack_into("<I", buf, base + 8, d["_ndim"])
    struct.pack_into("<Q", buf, base + 16, d["count"])
    struct.pack_into("<Q", buf, base + 24, d["offset"])
    struct.pack_into("<Q", buf, base + 32, d["nbytes"])
    for i, s in enumerate(d["shape"][:16]):
        struct.pack_into("<Q", buf, base + 48 + 8 * i, s)


def image(state=0, flags=0, owner_pid=4242, worker_pid=0, inp=None, res=None,
          error_type="", error_text="", error_truncated=False, major=1, minor=0,
          header_size=SIZE, magic=MAGIC, error_length=None, result_location=0):
    buf = bytearray(SIZE)
    buf[0:8] = magic
    struct.pack_into("<H", buf, 8, major)
    struct.pack_into("<H", buf, 10, minor)
    struct.pack_into("<I", buf, 12, header_size)
    struct.pack_into("<I", buf, 16, state)
    struct.pack_into("<I", buf, 20, flags)
    struct.pack_into("<q", buf, 24, owner_pid)
    struct.pack_into("<q", buf, 32, worker_pid)
    struct.pack_into("<I", buf, 40, result_location)
    inp = inp or desc()
    res = res or desc()
    put_desc(buf, 64, inp)
    put_desc(buf, 256, res)
    t = error_type.encode("utf-8")
    assert len(t) <= 64
    buf[448:448 + len(t)] = t
    text = error_text.encode("utf-8")
    assert len(text) <= 3072
    struct.pack_into("<I", buf, 512, len(text) if error_length is None else error_length)
    struct.pack_into("<I", buf, 516, 1 if error_truncated else 0)
    buf[1024:1024 + len(text)] = text
    fields = {
        "version_major": major, "version_minor": minor, "state": state,
        "flags": flags, "owner_pid": owner_pid, "worker_pid": worker_pid,
        "result_location": result_location,
        "input": {k: v for k, v in inp.items() if not k.startswith("_")},
        "result": {k: v for k, v in res.items() if not k.startswith("_")},
        "error_type": error_type, "error_text": error_text,
        "error_truncated": error_truncated,
    }
    return bytes(buf), fields


TRACEBACK = (
    'Traceback (most recent call last):\n'
    '  File "/home/user/double.py", line 10, in <module>\n'
    '    process()\n'
    '  File "/home/user/double.py", line 6, in process\n'
    '    raise ValueError("negative input")\n'
    'ValueError: negative input\n')


def long_traceback():
    lines = ['Traceback (most recent call last):\n']
    for i in range(200):
        lines.append('  File "/home/user/deep.py", line %d, in recurse\n'
                     '    return recurse(n - 1)\n' % (i + 1))
    lines.append("RecursionError: maximum recursion depth exceeded\n")
    text = "".join(lines)
    return text[len(text) - 3072:]  # the kept end, exactly 3072 bytes (ASCII)


def cases():
    f64_32 = desc("float64", (3, 2), "F")
    valid = {
        "input_ready": image(flags=1, inp=f64_32),
        "result_ready": image(state=1, flags=1, worker_pid=4243,
                              inp=desc("int32", (5,)),
                              res=desc("float64", (2, 3, 4), "F")),
        "scalar_result": image(state=1, worker_pid=4243, inp=desc("float64", (4,)),
                               res=desc("float64", ())),
        "empty_input": image(inp=desc("uint8", (0,))),
        "bool_offset_input": image(inp=desc("bool", (7, 3), "C", offset=128)),
        "int64_result": image(state=1, inp=desc("float32", (2, 2), "F"),
                                         res=desc("int64", (2, 2), "C"), worker_pid=7),
        "max_dims": image(inp=desc("int32", (1,) * 15 + (3,))),
        "error": image(state=2, worker_pid=4243, inp=f64_32, flags=1,
                       error_type="ValueError", error_text=TRACEBACK),
        "error_truncated": image(state=2, worker_pid=4243, inp=f64_32,
                                 error_type="RecursionError", error_text=long_traceback(),
                                 error_truncated=True),
        "error_utf8": image(state=2, worker_pid=4243, inp=f64_32,
                            error_type="__main__.Größenfehler",
                            error_text="__main__.Größenfehler: Größe ≠ 3 (π ≈ 3.14)\n"),
        "error_type_64": image(state=2, worker_pid=4243, inp=f64_32,
                               error_type="x" * 55 + ".LongName",
                               error_text="x.LongName: the type fills all 64 bytes\n"),
        "no_numpy": image(state=2, worker_pid=4243, inp=f64_32,
                          error_type="pyrmap.NumpyMissing",
                          error_text="the Python interpreter /usr/bin/python3 cannot "
                                     "import numpy (No module named 'numpy')"),
        "newer_minor": image(flags=1, inp=f64_32, minor=7),
        # Version 1.1: the result written into the input's segment (flag bit 2).
        "result_in_input": image(state=1, flags=4 | 1, worker_pid=4243, minor=1, inp=f64_32,
                                 res=desc("float64", (3, 2), "F"), result_location=1),
    }
    invalid = {
        "bad_magic": (image(inp=f64_32, magic=b"\x89PYRMAQ\n")[0], "bad magic"),
        "newer_major": (image(inp=f64_32, major=2)[0], "is newer than this pyrmap"),
        "version_zero": (image(inp=f64_32, major=0)[0], "header version 0.0 is unknown"),
        "header_size_too_big": (image(inp=f64_32, header_size=8192)[0], "header_size"),
        "header_size_too_small": (image(inp=f64_32, header_size=1024)[0], "header_size"),
        # 100 bytes hold the magic and header_size 4096, which does not fit.
        "truncated": (image(inp=f64_32)[0][:100], "header_size"),
        "tiny": (image(inp=f64_32)[0][:10], "too few for a header"),
        "count_mismatch": (image(inp=desc("float64", (3, 2), "F", count=7))[0],
                           "does not match its shape"),
        "nbytes_mismatch": (image(inp=desc("float64", (3, 2), "F", nbytes=40))[0],
                            "nbytes 40 does not match"),
        "too_many_dims": (image(inp=desc("uint8", (1,) * 16, ndim=17))[0], "dimensions"),
        "unknown_dtype": (image(inp=desc("float64", (3, 2), code=9))[0], "dtype code 9"),
        "unknown_result_dtype": (image(inp=f64_32, res=desc("float64", (1,), code=7))[0],
                                 "result dtype code 7"),
        "unknown_order": (image(inp=desc("float64", (3, 2), order_code=2))[0],
                          "order 2 is unknown"),
        "unknown_state": (image(state=7, inp=f64_32)[0], "state 7 is unknown"),
        "misaligned_offset": (image(inp=desc("float64", (3, 2), "F", offset=8))[0],
                              "not a multiple of 64"),
        "error_length_too_big": (image(state=2, inp=f64_32, error_type="ValueError",
                                       error_length=4000)[0], "error_length"),
        "result_ready_without_result": (image(state=1, inp=f64_32)[0],
                                        "no result is described"),
        "result_location_unknown": (image(state=1, flags=4, minor=1, inp=f64_32,
                                          res=desc("float64", (1,)), result_location=2)[0],
                                    "result_location 2 is unknown"),
        "result_location_not_handed_over": (
            image(state=1, flags=0, minor=1, inp=f64_32, res=desc("float64", (1,)),
                  result_location=1)[0],
            "which the caller did not hand over"),
    }
    return valid, invalid


def main():
    valid, invalid = cases()
    expected = {}
    for name, (data, fields) in valid.items():
        assert len(data) == SIZE
        expected[name + ".bin"] = fields
        with open(os.path.join(HERE, name + ".bin"), "wb") as f:
            f.write(data)
    for name, (data, phrase) in invalid.items():
        expected[name + ".bin"] = {"error": phrase}
        with open(os.path.join(HERE, name + ".bin"), "wb") as f:
            f.write(data)
    with open(os.path.join(HERE, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    print("wrote %d images and expected.json to %s" % (len(expected), HERE))


if __name__ == "__main__":
    main()
