"""Pipeline stage 1: multiplies by a factor, 2 unless given (`-- 10`)."""
import sys

from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    factor = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    return data * factor


if __name__ == "__main__":
    process()
