"""Returns 2 * data, keeping the input's dtype and shape."""
from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    return data * data.dtype.type(2)


if __name__ == "__main__":
    process()
