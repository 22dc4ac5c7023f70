"""Adds one to every element; the result has the input's shape."""
from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    return data + 1


if __name__ == "__main__":
    process()
