"""Writes into its input's memory behind numpy's back (ctypes): the input is
mapped read-only, so this must crash (SIGSEGV) rather than change anything."""
import ctypes

from pyrmap import process_via_mmap


@process_via_mmap
def process(data):
    ctypes.memset(data.__array_interface__["data"][0], 0x7F, 8)
    return data


if __name__ == "__main__":
    process()
