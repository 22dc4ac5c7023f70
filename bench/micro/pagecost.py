"""Micro-benchmark: what does writing N fresh bytes cost on this machine?

Compares, for the same size (default 800 MB = 1e8 float64):
  anon-mmap      first write through a fresh anonymous mapping (4 KiB faults)
  anon-thp       the same after madvise(MADV_HUGEPAGE) (2 MiB faults if THP allows)
  anon-populate  mmap(MAP_POPULATE) then write (faults taken in one kernel call)
  anon-reuse     second write to the same (already faulted) pages: pure memcpy cost
  shm-pwrite     pwrite into a fresh /dev/shm file (kernel allocates the pages)
  shm-falloc+pwrite  posix_fallocate first, then pwrite (what pyrmap does)
  shm-mmap       ftruncate + write through a shared mapping (a fault per page)
  shm-falloc+mmap  posix_fallocate, then write through a shared mapping
  shm-mmap-populate  posix_fallocate, MAP_POPULATE, write
  numpy-x*2      numpy: y = x * 2 into a fresh result array (x already touched)
Prints µs per 4 KiB page (median of --reps runs). Leaves nothing in /dev/shm.
"""
import ctypes
import mmap
import os
import statistics
import sys
import time

import numpy as np

N = int(float(sys.argv[1])) if len(sys.argv) > 1 else 800_000_000
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
PAGES = N / 4096
libc = ctypes.CDLL(None, use_errno=True)
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
libc.memcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
SRC = np.ones(N // 8)  # source buffer for copies (touched once)
SRCP = SRC.ctypes.data
SHM = "/dev/shm/pyrmapbench-pagecost-%d" % os.getpid()


def addr(m):
    return ctypes.addressof(ctypes.c_char.from_buffer(m))


def t_anon(advice=None, populate=False, reuse=False):
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    if populate:
        flags |= mmap.MAP_POPULATE
    t = time.perf_counter()
    m = mmap.mmap(-1, N, flags=flags)
    if advice is not None:
        m.madvise(advice)
    a = addr(m)
    if reuse:
        libc.memcpy(a, SRCP, N)
        t = time.perf_counter()
    libc.memcpy(a, SRCP, N)
    dt = time.perf_counter() - t
    del a
    m.close()
    return dt


def t_shm(falloc, how, populate=False):
    fd = os.open(SHM, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        t = time.perf_counter()
        if falloc:
            os.posix_fallocate(fd, 0, N)
        else:
            os.ftruncate(fd, N)
        if how == "pwrite":
            mv = memoryview(SRC).cast("B")
            done = 0
            while done < N:
                done += os.pwrite(fd, mv[done:done + (64 << 20)], done)
        else:
            m = mmap.mmap(fd, N, flags=mmap.MAP_SHARED | (mmap.MAP_POPULATE if populate else 0))
            libc.memcpy(addr(m), SRCP, N)
            m.close()
        return time.perf_counter() - t
    finally:
        os.close(fd)
        os.unlink(SHM)


def t_numpy():
    t = time.perf_counter()
    y = SRC * 2
    dt = time.perf_counter() - t
    del y
    return dt


CASES = [
    ("anon-mmap", lambda: t_anon()),
    ("anon-thp", lambda: t_anon(mmap.MADV_HUGEPAGE)),
    ("anon-populate", lambda: t_anon(populate=True)),
    ("anon-reuse (memcpy only)", lambda: t_anon(reuse=True)),
    ("shm-pwrite", lambda: t_shm(False, "pwrite")),
    ("shm-falloc+pwrite", lambda: t_shm(True, "pwrite")),
    ("shm-mmap", lambda: t_shm(False, "mmap")),
    ("shm-falloc+mmap", lambda: t_shm(True, "mmap")),
    ("shm-falloc+mmap-populate", lambda: t_shm(True, "mmap", populate=True)),
    ("numpy y = x * 2", t_numpy),
]

if __name__ == "__main__":
    print("%d bytes (%d pages of 4 KiB), median of %d" % (N, PAGES, REPS))
    print("%-28s %10s %12s" % ("case", "seconds", "us/page"))
    for name, fn in CASES:
        ts = [fn() for _ in range(REPS)]
        m = statistics.median(ts)
        print("%-28s %10.3f %12.2f" % (name, m, m / PAGES * 1e6), flush=True)
