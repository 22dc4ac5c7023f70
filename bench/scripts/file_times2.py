"""B3 competitor, Python half of the seed's file approach:

    python3 file_times2.py IN.bin OUT.bin
reads raw float64 with numpy.fromfile, writes x * 2 with tofile.
"""
import sys

import numpy as np

x = np.fromfile(sys.argv[1], dtype=np.float64)
(x * 2).tofile(sys.argv[2])
