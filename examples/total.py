"""Pipeline stage 3: the sum of the previous stage's result."""
from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    return data.sum()


if __name__ == "__main__":
    process()
