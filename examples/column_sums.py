"""The sum of each column of a matrix (give the input's shape with --shape)."""
from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    return data.sum(axis=0)


if __name__ == "__main__":
    process()
