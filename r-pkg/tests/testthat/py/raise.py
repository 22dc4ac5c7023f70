"""Raises a ValueError two frames deep."""
from pyrmap import process_via_mmap


def check_input(data):
    raise ValueError("input of length %d rejected by check_input" % data.size)


@process_via_mmap
def process(data):
    return check_input(data)


if __name__ == "__main__":
    process()
