"""Several functions; run as a script it returns the input's mean."""
import numpy as np

from pyrmap import process_via_mmap


def total(data):
    return data.sum()


def spread(data):
    return np.array([data.min(), data.max()])


@process_via_mmap
def negate(data):
    return -data


if __name__ == "__main__":
    process_via_mmap(lambda data: data.mean())()
