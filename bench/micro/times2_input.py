"""Micro-benchmark: numpy `y = x * 2` where x is a read-only MAP_SHARED view of
a /dev/shm file (as pyrmap's Python side sees its input), vs x in private
memory. Run it with NUMPY_MADVISE_HUGEPAGE=0 or 1 to see what transparent
huge pages do for the fresh result array. Also prints the change of the
kernel's compaction counters (/proc/vmstat) over the timed part.

    NUMPY_MADVISE_HUGEPAGE=1 python3 bench/micro/times2_input.py [N] [REPS]
"""
import mmap
import os
import statistics
import sys
import time

import numpy as np

N = int(float(sys.argv[1])) if len(sys.argv) > 1 else 100_000_000
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
PATH = "/dev/shm/pyrmapbench-times2-%d" % os.getpid()


def vmstat():
    out = {}
    with open("/proc/vmstat") as f:
        for line in f:
            k, v = line.split()
            if k.startswith(("compact_stall", "compact_fail", "compact_success", "thp_fault_alloc",
                             "thp_fault_fallback")):
                out[k] = int(v)
    return out


src = np.random.default_rng(0).random(N)
fd = os.open(PATH, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
try:
    os.ftruncate(fd, src.nbytes)
    os.pwrite(fd, memoryview(src).cast("B"), 0)
    ts = {"shm input": [], "private input": []}
    v0 = vmstat()
    for i in range(REPS):
        mm = mmap.mmap(fd, src.nbytes, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        x = np.ndarray((N,), np.float64, buffer=mm)
        t = time.perf_counter()
        y = x * 2
        ts["shm input"].append(time.perf_counter() - t)
        del x, y
        mm.close()
        t = time.perf_counter()
        y = src * 2
        ts["private input"].append(time.perf_counter() - t)
        del y
    v1 = vmstat()
finally:
    os.close(fd)
    os.unlink(PATH)
print("NUMPY_MADVISE_HUGEPAGE=%s  N=%d  medians of %d" % (os.environ.get("NUMPY_MADVISE_HUGEPAGE", "(unset)"), N, REPS))
for k, v in ts.items():
    print("  y = x * 2, %-14s %.3f s  (min %.3f, max %.3f)" % (k, statistics.median(v), min(v), max(v)))
print("  vmstat deltas:", {k: v1[k] - v0.get(k, 0) for k in v1 if v1[k] - v0.get(k, 0)})
