"""For pool tests: data[0] picks a behaviour; otherwise returns the input.
0: return data; 1: raise; 2: os._exit(3); 3: SIGSEGV; 4: sleep 600;
5: return the worker's pid and how many times this module was called."""
import os
import signal
import time

from pyrmap import process_via_mmap

CALLS = [0]


@process_via_mmap
def process(data):
    CALLS[0] += 1
    what = int(data[0])
    if what == 1:
        raise ValueError("asked to fail")
    if what == 2:
        os._exit(3)
    if what == 3:
        os.kill(os.getpid(), signal.SIGSEGV)
    if what == 4:
        time.sleep(600)
    if what == 5:
        return [os.getpid(), CALLS[0]]
    return data


if __name__ == "__main__":
    process()
