"""A barrier across processes: records this process in directory
sys.argv[1], waits (at most sys.argv[3] seconds, default 60) until
sys.argv[2] processes have done so, then returns 2 * data and the wall-clock
interval it waited in directory/<pid>.times."""
import os
import sys
import time

from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    directory, count = sys.argv[1], int(sys.argv[2])
    limit = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    start = time.time()
    open(os.path.join(directory, "%d.arrived" % os.getpid()), "w").close()
    while sum(n.endswith(".arrived") for n in os.listdir(directory)) < count:
        if time.time() - start > limit:
            raise TimeoutError("barrier: only %d of %d processes arrived"
                               % (sum(n.endswith(".arrived") for n in os.listdir(directory)), count))
        time.sleep(0.02)
    with open(os.path.join(directory, "%d.times" % os.getpid()), "w") as f:
        f.write("%r %r\n" % (start, time.time()))
    return data * data.dtype.type(2)


if __name__ == "__main__":
    process()
