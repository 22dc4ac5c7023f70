"""For the long-vector test: checks the input's length (sys.argv[1]) and a
few elements (the pattern i % 251 at 0-based index i), then returns it."""
import sys

import numpy as np

from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    n = int(sys.argv[1])
    if data.shape != (n,) or data.dtype != np.uint8:
        raise ValueError("got %s %s, expected (%d,) uint8" % (data.shape, data.dtype, n))
    for i in (0, 1, 250, 251, 2**31 - 1, 2**31, 2**31 + 1, n - 1):
        if int(data[i]) != i % 251:
            raise ValueError("data[%d] = %d, expected %d" % (i, data[i], i % 251))
    return data


if __name__ == "__main__":
    process()
