"""Tries to modify its input in place."""
from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    data[0] = 99
    return data


if __name__ == "__main__":
    process()
