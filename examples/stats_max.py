"""The largest element of the input (with stats_mean.py: `pyrmap shared`)."""
from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    return data.max()


if __name__ == "__main__":
    process()
