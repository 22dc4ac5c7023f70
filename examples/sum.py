"""The sum of the input: `printf '1 2 3\n' | build/pyrmap run examples/sum.py` prints 6.0."""
from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    return data.sum()


if __name__ == "__main__":
    process()
