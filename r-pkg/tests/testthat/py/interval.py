"""Sleeps sys.argv[2] seconds and appends 'start end' (wall clock) to the
file sys.argv[1]; returns the input's sum."""
import sys
import time

from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    start = time.time()
    time.sleep(float(sys.argv[2]))
    with open(sys.argv[1], "a") as f:
        f.write("%r %r\n" % (start, time.time()))
    return data.sum()


if __name__ == "__main__":
    process()
