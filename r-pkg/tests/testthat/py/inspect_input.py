"""Describes its input in sys.argv[1] (DCF, one record per call, appended)
and returns it unchanged: flags, dtype, shape, what owns the memory and which
file of /proc/self/maps holds the first element."""
import sys

from pyrmap import process_via_mmap


def mapping_of(addr):
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(v, 16) for v in parts[0].split("-"))
            if lo <= addr < hi:
                return (parts[5] if len(parts) > 5 else ""), parts[1]
    return "", ""


def _root(a):
    """What finally owns the array's memory (through views and buffers)."""
    while hasattr(a, "base") and a.base is not None:
        a = a.base
    return getattr(a, "obj", a)  # a memoryview's exporter


@process_via_mmap
def process(data):
    path, perms = mapping_of(data.__array_interface__["data"][0]) if data.size else ("", "")
    fields = {
        "writeable": data.flags.writeable,
        "f_contiguous": data.flags.f_contiguous,
        "c_contiguous": data.flags.c_contiguous,
        "owndata": data.flags.owndata,
        "dtype": data.dtype,
        "shape": ",".join(str(d) for d in data.shape),
        "base": type(_root(data)).__name__,
        "mapping": path,
        "perms": perms,
        "first": data.flat[0] if data.size else "",
    }
    with open(sys.argv[1], "a") as f:
        for k, v in fields.items():
            f.write("%s: %s\n" % (k, v))
        f.write("\n")
    return data


if __name__ == "__main__":
    process()
