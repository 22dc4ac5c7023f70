"""The mean of the input (with stats_max.py: two scripts over one shared input)."""
from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    return data.mean()


if __name__ == "__main__":
    process()
