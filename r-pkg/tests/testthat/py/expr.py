"""Returns eval(sys.argv[1]) with `np` and `data` (the input) in scope."""
import sys

import numpy as np

from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    return eval(sys.argv[1], {"np": np, "data": data})


if __name__ == "__main__":
    process()
