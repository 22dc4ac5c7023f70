"""Warns (sys.argv[1] times, default once), then returns its input; with
data[0] < 0 it raises after warning."""
import sys
import warnings

from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    for i in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
        warnings.warn("careful with %d" % i)
    if data[0] < 0:
        raise ValueError("negative")
    return data


if __name__ == "__main__":
    process()
