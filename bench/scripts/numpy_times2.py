"""B2 competitor: the same work in one plain numpy process.

    python3 numpy_times2.py IN.npy OUT.npy
loads IN.npy, multiplies by 2 and saves OUT.npy.
"""
import sys

import numpy as np

x = np.load(sys.argv[1])
np.save(sys.argv[2], x * 2)
