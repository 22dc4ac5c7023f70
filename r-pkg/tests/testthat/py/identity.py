"""Returns its input unchanged (stored as a copy in the result segment)."""
from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    return data


if __name__ == "__main__":
    process()
