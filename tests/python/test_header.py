"""The header codec against the golden images and src/header.h."""

import inspect
import json
import os
import random
import re
import struct
import subprocess

import pytest

from conftest import GOLDEN_DIR, REPO
from pyrmap import ProtocolError
from pyrmap import _header as H
from pyrmap import _table as T

with open(os.path.join(GOLDEN_DIR, "expected.json"), encoding="utf-8") as _f:
    EXPECTED = json.load(_f)

VALID = sorted(n for n, spec in EXPECTED.items() if "error" not in spec)
INVALID = sorted(n for n, spec in EXPECTED.items() if "error" in spec)


def golden(name):
    with open(os.path.join(GOLDEN_DIR, name), "rb") as f:
        return f.read()


def desc_from_spec(spec):
    return H.ArrayDesc(H.DTYPE_CODES[spec["dtype"]], {"C": 0, "F": 1}[spec["order"]],
                       tuple(spec["shape"]), spec["count"], spec["offset"], spec["nbytes"])


def header_from_spec(spec):
    return H.Header(spec["version_major"], spec["version_minor"], spec["state"], spec["flags"],
                    spec["owner_pid"], spec["worker_pid"], desc_from_spec(spec["input"]),
                    desc_from_spec(spec["result"]), spec["error_type"], spec["error_text"],
                    spec["error_truncated"], spec["result_location"], spec["input_kind"],
                    spec["result_kind"])


def test_golden_set_is_complete():
    required = {"input_ready", "result_ready", "scalar_result", "empty_input", "error",
                "error_truncated", "newer_minor", "bad_magic", "newer_major",
                "header_size_too_big", "truncated", "count_mismatch", "nbytes_mismatch",
                "too_many_dims", "unknown_dtype", "unknown_state", "misaligned_offset",
                "error_length_too_big", "result_in_input", "result_location_unknown",
                "result_location_not_handed_over"}
    assert required <= {n[:-4] for n in EXPECTED}
    for name in EXPECTED:
        assert os.path.exists(os.path.join(GOLDEN_DIR, name)), name
    assert len(golden("truncated.bin")) == 100


@pytest.mark.parametrize("name", VALID)
def test_golden_valid_decodes_to_expected_fields(name):
    data = golden(name)
    h = H.decode(data, name)
    assert h == header_from_spec(EXPECTED[name])


@pytest.mark.parametrize("name", VALID)
def test_golden_valid_encodes_back_byte_exact(name):
    data = golden(name)
    assert H.encode(H.decode(data, name)) == data
    # And from the expected fields alone, not through decode.
    assert H.encode(header_from_spec(EXPECTED[name])) == data


@pytest.mark.parametrize("name", INVALID)
def test_golden_invalid_is_rejected_with_its_phrase(name):
    with pytest.raises(ProtocolError) as info:
        H.decode(golden(name), name)
    message = str(info.value)
    assert EXPECTED[name]["error"] in message
    assert "invalid header in segment '%s'" % name in message


def test_invalid_messages_are_distinct():
    messages = {}
    for name in INVALID:
        with pytest.raises(ProtocolError) as info:
            H.decode(golden(name), "seg")
        messages[name] = re.sub(r"\d+", "N", str(info.value))
    # Only these pairs are the same failure with different numbers.
    same = [{"header_size_too_big.bin", "header_size_too_small.bin", "truncated.bin"}]
    groups = {}
    for name, msg in messages.items():
        groups.setdefault(msg, set()).add(name)
    for names in groups.values():
        assert len(names) == 1 or names in same, names


def test_specific_golden_values():
    h = H.decode(golden("input_ready.bin"))
    assert (h.state, h.flags, h.input.dtype_name, h.input.order, h.input.shape) == \
        (0, 1, "float64", H.ORDER_F, (3, 2))
    h = H.decode(golden("result_ready.bin"))
    assert h.result.describe() == "float64[2, 3, 4] (column-major)"
    assert h.input.describe() == "int32[5]"
    h = H.decode(golden("scalar_result.bin"))
    assert h.result.shape == () and h.result.count == 1 and h.result.nbytes == 8
    h = H.decode(golden("error_truncated.bin"))
    assert h.error_truncated and len(h.error_text) == H.ERROR_TEXT_SIZE
    assert h.error_text.endswith("RecursionError: maximum recursion depth exceeded\n")
    h = H.decode(golden("newer_minor.bin"))
    assert (h.version_major, h.version_minor) == (1, 7)
    h = H.decode(golden("error_type_64.bin"))
    assert len(h.error_type) == 64  # no NUL terminator: the field is full


# ------------------------------------------------------------------ the C++ side's constants

# Names of _header.py that the C++ side has no counterpart for, and why.
PYTHON_ONLY = {"STATE_NAMES": "the states' names, for Python's own messages"}
TABLE_PYTHON_ONLY = {"KIND_NAMES": "the kinds' names, for messages",
                     "UNIT_CODES": "numpy's unit names to codes", "UNIT_NAMES": "the inverse"}


def cpp_constants():
    """The protocol constants of the C++ build, as `pyrmap --protocol-constants`
    prints them (keys are the Python names)."""
    binary = os.environ.get("PYRMAP") or os.path.join(REPO, "build", "pyrmap")
    if not os.access(binary, os.X_OK):
        pytest.fail("the pyrmap command is not built at %s: run `make cli`, or set PYRMAP" % binary)
    p = subprocess.run([binary, "--protocol-constants"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stderr == "", p
    return json.loads(p.stdout)


def as_json(value):
    """A Python constant as JSON has it: bytes as a list, dict keys as strings."""
    if isinstance(value, bytes):
        return list(value)
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    return value


def test_protocol_constants_are_the_cpp_builds():
    cpp = cpp_constants()
    python = {k: getattr(H, k) for k in dir(H) if k.isupper() and not k.startswith("_")}
    # src/table.h's constants, which python/pyrmap/_table.py holds unprefixed.
    python.update({"TABLE_" + k: getattr(T, k) for k in dir(T)
                   if k.isupper() and not k.startswith("_") and k not in TABLE_PYTHON_ONLY
                   and not inspect.ismodule(getattr(T, k))})
    assert sorted(set(python) - set(PYTHON_ONLY)) == sorted(cpp)
    different = {k: (as_json(python[k]), cpp[k]) for k in cpp if as_json(python[k]) != cpp[k]}
    assert different == {}, "python/pyrmap/_header.py vs src/header.h, src/dtype.h (python, C++)"
    # The dump is not trivially short: the whole table is in it.
    assert len([k for k in cpp if k.startswith("OFF_")]) >= 22 and cpp["MAGIC"] == list(b"\x89PYRMAP\n")


# ------------------------------------------------------------------ encode

def test_encode_layout_and_reserved_bytes_zero():
    h = H.Header(state=2, flags=1, owner_pid=-5, worker_pid=1 << 40,
                 input=H.ArrayDesc.make("int64", (2, 3), H.ORDER_F, 64),
                 result=H.ArrayDesc.make("bool", ()), error_type="E", error_text="t")
    b = H.encode(h)
    assert len(b) == 4096 and b[:8] == b"\x89PYRMAP\n"
    assert struct.unpack_from("<HHIIIqq", b, 8) == (2, 0, 4096, 2, 1, -5, 1 << 40)
    assert struct.unpack_from("<IIIIQQQ", b, 64) == (2, 1, 2, 0, 6, 64, 48)
    assert struct.unpack_from("<3Q", b, 64 + 48) == (2, 3, 0)
    assert struct.unpack_from("<IIIIQQQ", b, 256) == (6, 0, 0, 0, 1, 0, 1)
    reserved = [(44, 64), (64 + 12, 64 + 16), (64 + 40, 64 + 48), (64 + 176, 256),
                (256 + 176, 448), (520, 1024), (1025, 4096), (449, 512)]
    for a, z in reserved:
        assert b[a:z] == bytes(z - a), (a, z)


def test_error_text_cut_at_its_start():
    text = "".join("line %05d\n" % i for i in range(400))  # 4000 bytes
    h = H.decode(H.encode(H.Header(state=2, error_type="E", error_text=text)))
    assert h.error_truncated
    assert h.error_text == text[-3072:]
    exact = "y" * 3072
    h = H.decode(H.encode(H.Header(state=2, error_text=exact)))
    assert (h.error_text, h.error_truncated) == (exact, False)
    h = H.decode(H.encode(H.Header(state=2, error_text=exact + "z")))
    assert (h.error_text, h.error_truncated) == (("y" * 3071) + "z", True)
    # A short text keeps an explicitly set flag.
    assert H.decode(H.encode(H.Header(error_text="x", error_truncated=True))).error_truncated


def test_error_text_cut_on_a_character_boundary():
    text = "é" * 2000  # 4000 bytes of 2-byte characters
    text2 = "x" + text  # odd length: a cut at 3072 from the end splits a character
    for t in (text, text2):
        h = H.decode(H.encode(H.Header(error_text=t)))
        assert h.error_truncated
        assert "\ufffd" not in h.error_text
        assert t.endswith(h.error_text) and len(h.error_text.encode()) <= 3072


def test_error_type_cut_to_64_bytes():
    h = H.decode(H.encode(H.Header(error_type="T" * 100)))
    assert h.error_type == "T" * 64
    h = H.decode(H.encode(H.Header(error_type="ß" * 40)))  # 80 bytes
    assert h.error_type == "ß" * 32


def test_unencodable_text_is_still_recorded():
    h = H.decode(H.encode(H.Header(error_text="bad \udcff name")))
    assert h.error_text == "bad \\udcff name"


def test_encode_rejects_too_many_dims():
    with pytest.raises(ValueError):
        H.ArrayDesc.make("uint8", (1,) * 17)
    with pytest.raises(ValueError):
        H.encode(H.Header(input=H.ArrayDesc(1, 0, (1,) * 17, 1, 0, 4)))


def test_array_desc_make_and_describe():
    d = H.ArrayDesc.make("float32", (4, 5), H.ORDER_F, 128)
    assert (d.dtype, d.count, d.nbytes, d.offset, d.ndim, d.itemsize) == (3, 20, 80, 128, 2, 4)
    assert d.describe() == "float32[4, 5] (column-major)"
    assert H.ArrayDesc.make(1, (7,)).describe() == "int32[7]"
    assert H.ArrayDesc.make("uint8", ()).count == 1
    assert H.ArrayDesc.make("bool", (3, 0)).nbytes == 0
    with pytest.raises(ValueError):
        H.ArrayDesc.make("complex128", (1,))
    with pytest.raises(ValueError):
        H.ArrayDesc.make(9, (1,))


# ------------------------------------------------------------------ decode

def test_decode_accepts_a_larger_header_size():
    b = bytearray(H.encode(H.Header(input=H.ArrayDesc.make("uint8", (3,)))))
    struct.pack_into("<H", b, 10, 3)
    struct.pack_into("<I", b, 12, 8192)
    b += b"\0" * 4096
    h = H.decode(bytes(b))
    assert (h.version_minor, h.input.shape) == (3, (3,))


def test_decode_accepts_memoryview_and_bytearray():
    data = golden("result_ready.bin")
    assert H.decode(memoryview(data)) == H.decode(bytearray(data)) == H.decode(data)


def test_decode_shape_overflow():
    b = bytearray(H.encode(H.Header(input=H.ArrayDesc.make("uint8", (3, 3)))))
    struct.pack_into("<QQ", b, 64 + 48, 1 << 40, 1 << 40)
    with pytest.raises(ProtocolError, match="shape overflows 64 bits"):
        H.decode(bytes(b))


def test_decode_nbytes_overflow():
    b = bytearray(H.encode(H.Header(input=H.ArrayDesc.make("float64", (3,)))))
    struct.pack_into("<Q", b, 64 + 48, 1 << 62)
    struct.pack_into("<Q", b, 64 + 16, 1 << 62)
    with pytest.raises(ProtocolError, match="nbytes 24 does not match"):
        H.decode(bytes(b))


def test_decode_no_array_geometry_is_not_checked():
    b = bytearray(H.encode(H.Header()))
    struct.pack_into("<Q", b, 256 + 24, 8)  # a misaligned offset in an empty result
    assert H.decode(bytes(b)).result.dtype == H.DTYPE_NONE


def test_decode_never_reads_out_of_bounds():
    """Every prefix and thousands of random corruptions either decode or
    raise ProtocolError: never struct.error, IndexError or UnicodeError."""
    rng = random.Random(20240611)
    images = [golden(n) for n in VALID]
    for image in images[:3]:
        for n in range(0, 4097, 7):
            try:
                H.decode(image[:n])
            except ProtocolError:
                pass
    hot = list(range(0, 64)) + list(range(64, 112)) + list(range(256, 304)) + \
        list(range(448, 520)) + list(range(1024, 1040))
    for _ in range(4000):
        b = bytearray(rng.choice(images))
        for _ in range(rng.randint(1, 6)):
            pos = rng.choice(hot) if rng.random() < 0.8 else rng.randrange(len(b))
            b[pos] = rng.randrange(256)
        if rng.random() < 0.2:
            b = b[:rng.randrange(len(b))]
        try:
            H.decode(bytes(b))
        except ProtocolError:
            pass


def test_check_payload_fits():
    d = H.ArrayDesc.make("float64", (3, 2), H.ORDER_F, 64)
    H.check_payload_fits(d, 64 + 48, "seg")
    with pytest.raises(ProtocolError) as info:
        H.check_payload_fits(d, 64 + 47, "seg")
    assert str(info.value) == ("payload of float64[3, 2] (column-major) at offset 64 "
                               "(48 bytes) does not fit segment 'seg' of 111 bytes")
    H.check_payload_fits(H.ArrayDesc.make("uint8", (0,)), 0, "seg")
    huge = H.ArrayDesc(1, 0, (1,), 1, (1 << 64) - 2, 4)  # offset + nbytes overflows
    with pytest.raises(ProtocolError):
        H.check_payload_fits(huge, 1 << 70, "seg")


def test_header_record_behaviour():
    a = H.Header(state=1)
    b = H.Header(state=1)
    assert a == b and a is not b and a.input is not b.input
    assert a != H.Header(state=2)
    assert "state=1" in repr(a)
    with pytest.raises(TypeError):
        H.Header(bogus=1)
    with pytest.raises(TypeError):
        H.ArrayDesc(1, 2, 3, 4, 5, 6, 7)
