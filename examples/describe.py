"""Several functions in one script; choose one with SCRIPT::FUNCTION:

    printf '2 4 4 4 5 5 7 9\n' | build/pyrmap run examples/describe.py::std

Run without ::FUNCTION, the script computes the mean.
"""
import numpy as np

from pyrmap import process_via_mmap


def mean(data):
    return data.mean()


def std(data):
    return data.std()


def spread(data):
    """Smallest and largest element."""
    return np.array([data.min(), data.max()])


def standardize(data):
    """Each element as its distance from the mean in standard deviations."""
    return (data - data.mean()) / data.std()


if __name__ == "__main__":
    process_via_mmap(mean)()
