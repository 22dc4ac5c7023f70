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
          header_size=SIZE, magic=MAGIC, error_length=None, result_location=0,
          input_kind=0, result_kind=0):
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
    # 2.0: input_kind @44, result_kind @48 (0 = one array, 1 = a table block).
    struct.pack_into("<I", buf, 44, input_kind)
    struct.pack_into("<I", buf, 48, result_kind)
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
        "input_kind": input_kind if major >= 2 else 0,
        "result_kind": result_kind if major >= 2 else 0,
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
        # Version 2.0: tables (flags bits 3-4 = tables mode, bit 5 = input refs).
        "v2_array": image(flags=1, major=2, minor=0, inp=f64_32),
        "v2_table_input": image(flags=1 | (2 << 3) | (1 << 5), major=2, minor=0,
                             inp=desc("uint8", (1216,)), input_kind=1),
        "v2_table_result": image(state=1, flags=1, worker_pid=4243, major=2, minor=0,
                              inp=desc("uint8", (1216,)), input_kind=1,
                              res=desc("uint8", (2048,)), result_kind=1),
    }
    invalid = {
        "bad_magic": (image(inp=f64_32, magic=b"\x89PYRMAQ\n")[0], "bad magic"),
        "newer_major": (image(inp=f64_32, major=3)[0], "is newer than this pyrmap"),
        "unknown_input_kind": (image(major=2, inp=f64_32, input_kind=2)[0],
                               "input_kind 2 is unknown"),
        "v2_table_not_bytes": (image(major=2, inp=f64_32, input_kind=1)[0],
                            "is a table block described as float64[3, 2]"),
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


# ------------------------------------------------------------------ tables
#
# Table blocks (src/table.h), spelled out with struct as well. tables.json
# maps each table_*.bin to its decoded structure
#   {"entries": [{"kind", "parent", "role", "flags", "length", "buffer",
#                 "mask", "name", "tz", "unit", "children"}],
#    "buffers": [{"dtype", "order", "shape", "offset", "nbytes", "location"}],
#    "size": block size}
# (kind and role by name, -1 for "none") or {"error": PHRASE}.

TKINDS = {"array": 1, "string": 2, "category": 3, "datetime": 4, "list": 5, "frame": 6, "null": 7}
TROLES = {"element": 0, "names": 1, "levels": 2}
NONE = 0xFFFFFFFF


def table_block(entries, buffers, magic=b"\x89PYRTAB\n", version=1):
    """entries: dicts (kind, parent, role, flags, length, buffer, mask, name,
    tz, unit); buffers: (dtype, shape, order, payload bytes, location,
    offset or None). Returns (bytes, spec)."""
    n, nb = len(entries), len(buffers)
    children = [[] for _ in entries]
    for i, e in enumerate(entries):
        if e["parent"] >= 0:
            children[e["parent"]].append(i)
    strings = bytearray()
    name_at = []
    for e in entries:
        a = len(strings)
        strings += e["name"].encode("utf-8")
        b = len(strings)
        strings += e["tz"].encode("utf-8")
        name_at.append((a, b))
    buffers_offset = 64 + 64 * n
    strings_offset = buffers_offset + 192 * nb
    pos = (strings_offset + len(strings) + 63) // 64 * 64
    descs = []
    for dtype, shape, order, payload, location, offset in buffers:
        count = 1
        for d in shape:
            count *= d
        nbytes = count * DTYPES[dtype][1]
        assert len(payload) == nbytes, (dtype, shape, len(payload))
        if offset is None:
            offset = pos
            pos += (nbytes + 63) // 64 * 64
        descs.append(dict(dtype=dtype, shape=list(shape), order=order, offset=offset,
                          nbytes=nbytes, count=count, location=location, payload=payload))
    size = pos
    buf = bytearray(size)
    buf[0:8] = magic
    struct.pack_into("<IIII", buf, 8, version, n, nb, 0)
    struct.pack_into("<QQQQQ", buf, 24, 64, buffers_offset, strings_offset, len(strings), size)
    for i, e in enumerate(entries):
        q = 64 + 64 * i
        a, b = name_at[i]
        struct.pack_into("<IIIIQIIIIIIII", buf, q, TKINDS[e["kind"]],
                         NONE if e["parent"] < 0 else e["parent"], TROLES[e["role"]], e["flags"],
                         e["length"], NONE if e["buffer"] < 0 else e["buffer"],
                         NONE if e["mask"] < 0 else e["mask"], a, len(e["name"].encode("utf-8")),
                         b, len(e["tz"].encode("utf-8")), e["unit"], len(children[i]))
    for i, d in enumerate(descs):
        q = buffers_offset + 192 * i
        put_desc(buf, q, desc(d["dtype"], tuple(d["shape"]), d["order"], d["offset"]))
        struct.pack_into("<I", buf, q + 12, d["location"])
        if d["location"] == 0:
            buf[d["offset"]:d["offset"] + d["nbytes"]] = d["payload"]
    buf[strings_offset:strings_offset + len(strings)] = strings
    spec = {"size": size,
            "entries": [dict(e, children=children[i]) for i, e in enumerate(entries)],
            "buffers": [{k: v for k, v in d.items() if k not in ("payload", "count")}
                        for d in descs]}
    return bytes(buf), spec


def ent(kind, parent, length=0, role="element", flags=0, buffer=-1, mask=-1, name="", tz="",
        unit=0):
    return dict(kind=kind, parent=parent, role=role, flags=flags, length=length, buffer=buffer,
                mask=mask, name=name, tz=tz, unit=unit)


def strings_payload(values):
    raw = [v.encode("utf-8") for v in values]
    offs = [0]
    for r in raw:
        offs.append(offs[-1] + len(r))
    return struct.pack("<%dq" % len(offs), *offs), b"".join(raw)


def table_cases():
    na_real = struct.pack("<Q", 0x7FF00000000007A2)
    i64min = -(1 << 63)
    s_off, s_bytes = strings_payload(["a", "", "\u00e9"])
    l_off, l_bytes = strings_payload(["u", "v"])
    r_off, r_bytes = strings_payload(["r1", "r2", "r3"])
    frame_entries = [
        ent("frame", -1, 3),
        ent("array", 0, 3, name="x", buffer=0),
        ent("array", 0, 3, name="i", flags=1, buffer=1, mask=2),
        ent("string", 0, 3, name="s", flags=1, buffer=3, mask=5),
        ent("category", 0, 3, name="f", buffer=6, unit=1),
        ent("string", 4, 2, role="levels", buffer=7),
        ent("datetime", 0, 3, name="d", buffer=9, unit=0),
        ent("datetime", 0, 3, name="t\u00e4", buffer=10, unit=4, tz="Europe/Berlin"),
        ent("string", 0, 3, role="names", buffer=11),
    ]
    frame_buffers = [
        ("float64", (3,), "C", struct.pack("<d", 1.5) + na_real + struct.pack("<d", 3.0), 0, None),
        ("int32", (3,), "C", struct.pack("<3i", 1, -(1 << 31), 3), 0, None),
        ("bool", (3,), "C", bytes([0, 1, 0]), 0, None),
        ("int64", (4,), "C", s_off, 0, None),
        ("uint8", (len(s_bytes),), "C", s_bytes, 0, None),
        ("bool", (3,), "C", bytes([0, 1, 0]), 0, None),
        ("uint8", (3,), "C", struct.pack("<3b", 0, -1, 1), 0, None),
        ("int64", (3,), "C", l_off, 0, None),
        ("uint8", (len(l_bytes),), "C", l_bytes, 0, None),
        ("int64", (3,), "C", struct.pack("<3q", 18262, i64min, 18808), 0, None),
        ("int64", (3,), "C", struct.pack("<3q", 1577869200 * 10**9, i64min, 1609455601 * 10**9),
         0, None),
        ("int64", (4,), "C", r_off, 0, None),
        ("uint8", (len(r_bytes),), "C", r_bytes, 0, None),
    ]
    list_entries = [
        ent("list", -1, 4, flags=2),
        ent("array", 0, 6, name="X", buffer=0),
        ent("array", 0, 3, name="y", buffer=1),
        ent("null", 0, 0, name="none"),
        ent("list", 0, 1, name="tup"),
        ent("array", 4, 2, buffer=2),
    ]
    list_buffers = [
        ("float64", (3, 2), "F", struct.pack("<6d", 1, 2, 3, 4, 5, 6), 0, None),
        ("int32", (3,), "C", struct.pack("<3i", 1, 2, 3), 0, None),
        ("bool", (2,), "C", bytes([1, 0]), 0, None),
    ]
    # A result whose column refers to the input's block (location 1).
    ref_entries = [ent("frame", -1, 2), ent("array", 0, 2, name="x", buffer=0)]
    ref_buffers = [("float64", (2,), "C", b"\0" * 16, 1, 4096)]
    valid = {
        "table_frame": table_block(frame_entries, frame_buffers),
        "table_list": table_block(list_entries, list_buffers),
        "table_input_ref": table_block(ref_entries, ref_buffers),
    }

    def broken(entries, buffers, phrase, **kw):
        return table_block(entries, buffers, **kw)[0], phrase

    bad_width = [dict(e) for e in frame_entries]
    bad_width[4]["unit"] = 3
    bad_parent = [dict(e) for e in list_entries]
    bad_parent[1]["parent"] = 3
    bad_mask = [dict(e) for e in frame_entries]
    bad_mask[2]["flags"] = 0
    short_col = [dict(e) for e in frame_entries]
    short_col[1]["length"] = 2
    short_buffers = list(frame_buffers)
    short_buffers[0] = ("float64", (2,), "C", struct.pack("<2d", 1, 2), 0, None)
    invalid = {
        "table_bad_magic": broken(list_entries, list_buffers, "bad magic",
                                  magic=b"\x89PYRTAX\n"),
        "table_newer": broken(list_entries, list_buffers, "table version 2 is not", version=2),
        "table_bad_width": broken(bad_width, frame_buffers, "code width 3 is not 1, 2 or 4"),
        "table_parent_after": broken(bad_parent, list_buffers, "does not come before it"),
        "table_mask_flag": broken(bad_mask, frame_buffers, "its mask flag and mask buffer disagree"),
        "table_short_column": broken(short_col, short_buffers, "is not a column of 3 rows"),
        "table_ref_without_input": (table_block(ref_entries, ref_buffers)[0],
                                    "lies in the input block"),
    }
    data = bytearray(valid["table_list"][0])
    struct.pack_into("<Q", data, 56, len(data) + 64)  # block_size beyond the bytes
    invalid["table_too_big"] = (bytes(data), "exceeds the")
    return valid, invalid


def main():
    tvalid, tinvalid = table_cases()
    tables = {}
    for name, (data, spec) in tvalid.items():
        tables[name + ".bin"] = spec
        with open(os.path.join(HERE, name + ".bin"), "wb") as f:
            f.write(data)
    for name, (data, phrase) in tinvalid.items():
        tables[name + ".bin"] = {"error": phrase}
        with open(os.path.join(HERE, name + ".bin"), "wb") as f:
            f.write(data)
    with open(os.path.join(HERE, "tables.json"), "w", encoding="utf-8") as f:
        json.dump(tables, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")
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
