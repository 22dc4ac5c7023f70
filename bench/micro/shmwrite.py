"""Micro-benchmark: the cost of posix_fallocate before pwrite on /dev/shm.

    python3 bench/micro/shmwrite.py [BYTES] [REPS]

Interleaves, REPS times: (a) posix_fallocate then pwrite (what pyrmap does
for the data and result segments), timing each step; (b) pwrite alone into a
fresh (sparse, ftruncate'd) file; (c) unlink of a full file (freeing its
pages). Prints medians in seconds and in µs per 4 KiB page. Leaves nothing
in /dev/shm.
"""
import os
import statistics
import sys
import time

import numpy as np

N = int(float(sys.argv[1])) if len(sys.argv) > 1 else 800_000_000
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 7
SRC = memoryview(np.random.default_rng(0).random(N // 8)).cast("B")
PATH = "/dev/shm/pyrmapbench-shmwrite-%d" % os.getpid()
CHUNK = 64 << 20


def pwrite_all(fd):
    done = 0
    while done < N:
        done += os.pwrite(fd, SRC[done:done + CHUNK], done)


def case_falloc():
    fd = os.open(PATH, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    t0 = time.perf_counter()
    os.posix_fallocate(fd, 0, N)
    t1 = time.perf_counter()
    pwrite_all(fd)
    t2 = time.perf_counter()
    os.close(fd)
    t3 = time.perf_counter()
    os.unlink(PATH)
    t4 = time.perf_counter()
    return {"fallocate": t1 - t0, "pwrite after fallocate": t2 - t1, "fallocate+pwrite": t2 - t0,
            "unlink (free pages)": t4 - t3}


def case_plain():
    fd = os.open(PATH, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    t0 = time.perf_counter()
    os.ftruncate(fd, N)
    pwrite_all(fd)
    t1 = time.perf_counter()
    os.close(fd)
    os.unlink(PATH)
    return {"ftruncate+pwrite (no fallocate)": t1 - t0}


res = {}
try:
    for i in range(REPS):
        for f in ((case_falloc, case_plain) if i % 2 == 0 else (case_plain, case_falloc)):
            for k, v in f().items():
                res.setdefault(k, []).append(v)
finally:
    if os.path.exists(PATH):
        os.unlink(PATH)
pages = N / 4096
print("%d bytes, %d pages; medians of %d" % (N, pages, REPS))
for k, v in res.items():
    m = statistics.median(v)
    print("  %-34s %7.3f s  %6.2f us/page  (min %.3f, max %.3f)" % (k, m, m / pages * 1e6, min(v), max(v)))
