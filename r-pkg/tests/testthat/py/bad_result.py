"""Returns a value that has no exchange dtype (a set)."""
from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    return {"not", "an", "array"}


if __name__ == "__main__":
    process()
