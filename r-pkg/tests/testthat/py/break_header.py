"""Stores a result, then overwrites the magic of its exchange header: the
caller must report a protocol error, not use the result."""
import os

from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    return data


if __name__ == "__main__":
    process()
    fd = os.open("/dev/shm/" + os.environ["PYRMAP_META"], os.O_RDWR)
    os.pwrite(fd, b"BROKEN!!", 0)
    os.close(fd)
