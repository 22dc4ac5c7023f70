"""Exits with sys.exit(3) before storing anything."""
import sys

sys.exit(3)
