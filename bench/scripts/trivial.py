"""B1: a trivial pyrmap script (the sum of a tiny input)."""
from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    return data.sum()


if __name__ == "__main__":
    process()
