"""Defines a function but never calls it: the script ends without a result."""
from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    return data
