"""Sleeps sys.argv[1] seconds (default 30), then returns its input."""
import sys
import time

from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 30)
    return data


if __name__ == "__main__":
    process()
