"""Prints to stdout and stderr, then returns the input."""
import sys

from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    print("hello from python: %d elements" % data.size)
    sys.stdout.flush()
    sys.stderr.write("a note on stderr from python\n")
    sys.stderr.flush()
    return data


if __name__ == "__main__":
    process()
