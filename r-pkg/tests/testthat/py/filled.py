"""Returns a new float64 vector of sys.argv[1] elements, all 1.5."""
import sys

import numpy as np

from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    return np.full(int(sys.argv[1]), 1.5)


if __name__ == "__main__":
    process()
