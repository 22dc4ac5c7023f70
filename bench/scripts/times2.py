"""B2/B3/B4: the pyrmap script under test: returns x * 2."""
from pyrmap import process_via_mmap


@process_via_mmap
def process(x):
    return x * 2


if __name__ == "__main__":
    process()
