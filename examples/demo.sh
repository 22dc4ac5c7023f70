#!/bin/sh
# The demo's shell half: the pyrmap command on the same examples.
# PYRMAP_BIN is the command to use (default: build/pyrmap).
set -eu
cd "$(dirname "$0")/.."
pyrmap=${PYRMAP_BIN:-build/pyrmap}
show() {
  printf '$ %s\n' "$1"
  sh -c "$1"
}
show "printf '1 2 3\\n4 5 6\\n' | $pyrmap run examples/plus_one.py --shape 2,3"
show "printf '3 1 4 1 5 9 2 6\\n' | $pyrmap pipeline examples/scale.py examples/square.py examples/total.py"
show "printf '3 1 4 1 5 9 2 6\\n' | $pyrmap shared examples/stats_mean.py examples/stats_max.py --jobs 2"
show "$pyrmap ls"
