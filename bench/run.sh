#!/bin/sh
# pyrmap benchmarks: builds what they need, runs B1-B10, writes bench/RESULTS.md.
#
#   bench/run.sh [--no-build] [bench.py options: --only B1,B3 --reps 5 --n 1e8 --quick ...]
#
# Environment: PYRMAP_PYTHON (an interpreter with numpy; default
# /usr/bin/python3), R_LIBS (default build/Rlib, where `make r-pkg` installs
# the R package), PYRMAP (the pyrmap command; default build/pyrmap).
# Exit status: 0 all targets pass, 2 a target fails, 1 an error.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
build=1
if [ "${1:-}" = "--no-build" ]; then build=0; shift; fi

: "${PYRMAP_PYTHON:=/usr/bin/python3}"
export PYRMAP_PYTHON
export R_LIBS="${R_LIBS:-$repo/build/Rlib}"

if ! "$PYRMAP_PYTHON" -c 'import numpy' >/dev/null 2>&1; then
  echo "bench: $PYRMAP_PYTHON cannot import numpy; set PYRMAP_PYTHON" >&2
  exit 1
fi
for tool in hyperfine Rscript; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }
done
if [ "$build" = 1 ]; then
  make -C "$repo" cli r-pkg >/dev/null
fi
cd "$repo"

# A snapshot of what is measured: others may rebuild build/ while the
# benchmarks run (they take 10-15 minutes), so the command, the Python
# package and the installed R package are copied to bench/out/snapshot and
# run from there (the command finds its Python package in ../python).
pyrmap_cmd=${PYRMAP:-$repo/build/pyrmap}
rpkg=$(Rscript -e 'cat(find.package("pyrmap", quiet = TRUE))' 2>/dev/null || true)
[ -x "$pyrmap_cmd" ] || { echo "bench: $pyrmap_cmd not found (make cli)" >&2; exit 1; }
[ -n "$rpkg" ] || { echo "bench: the R package pyrmap is not installed in R_LIBS=$R_LIBS (make r-pkg)" >&2; exit 1; }
snap="$here/out/snapshot"
rm -rf "$snap"
mkdir -p "$snap/bin" "$snap/python" "$snap/Rlib"
cp "$pyrmap_cmd" "$snap/bin/pyrmap"
cp -R "$repo/python/pyrmap" "$snap/python/pyrmap"
cp -R "$rpkg" "$snap/Rlib/pyrmap"
export PYRMAP="$snap/bin/pyrmap" R_LIBS="$snap/Rlib"
"$PYRMAP" --version >/dev/null
Rscript -e 'suppressPackageStartupMessages(library(pyrmap))' >/dev/null

exec "$PYRMAP_PYTHON" "$here/bench.py" "$@"
