"""Dies with os._exit(4) after a line on stderr: no outcome recorded."""
import os
import sys

sys.stderr.write("os_exit.py is about to exit\n")
sys.stderr.flush()
os._exit(4)
