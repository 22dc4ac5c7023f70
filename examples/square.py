"""Pipeline stage 2: squares every element of the previous stage's result."""
from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    return data ** 2


if __name__ == "__main__":
    process()
