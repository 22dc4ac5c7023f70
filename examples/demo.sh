#!/bin/sh
# The demo's shell half: the pyrmap command on the same examples.
set -eu
cd "$(dirname "$0")/.."
echo '$ printf "1 2 3\n4 5 6\n" | build/pyrmap run examples/plus_one.py --shape 2,3'
printf '1 2 3\n4 5 6\n' | build/pyrmap run examples/plus_one.py --shape 2,3
echo '$ printf "3 1 4 1 5 9 2 6\n" | build/pyrmap pipeline examples/scale.py examples/square.py examples/total.py'
printf '3 1 4 1 5 9 2 6\n' | build/pyrmap pipeline examples/scale.py examples/square.py examples/total.py
echo '$ build/pyrmap ls'
build/pyrmap ls
