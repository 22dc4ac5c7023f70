"""Sleeps one second, then returns its input (B7: two runs at once on a pool)."""
import time

from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    time.sleep(1)
    return data


if __name__ == "__main__":
    process()
