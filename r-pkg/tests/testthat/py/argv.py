"""Returns the lengths of sys.argv[1:] as int32 (shows the arguments arrived)."""
import sys

import numpy as np

from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    return np.array([len(a) for a in sys.argv[1:]], dtype=np.int32)


if __name__ == "__main__":
    process()
