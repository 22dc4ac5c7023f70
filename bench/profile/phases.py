"""Where the time of one `pyrmap run` goes: a timeline from strace.

    python3 bench/profile/phases.py [RUNS] -- CMD...

Runs CMD RUNS times under `strace -f --seccomp-bpf -e trace=execve,exit_group`
(only those two system calls stop the tracee, so the overhead is small) and
prints the medians of:
  runner start   -> interpreter exec   (the runner's own start-up: exec, dynamic
                                        linking, argument parsing, input, segments)
  interpreter exec -> interpreter exit (Python: start-up, numpy, pyrmap, script)
  interpreter exit -> runner exit      (reading the result, output, cleanup)
  total (first exec -> last exit)
For a plain `python3 -c ...` only the middle phase exists.
"""
import re
import statistics
import subprocess
import sys
import tempfile

LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(execve|exit_group|\+\+\+ exited)")


def one(cmd):
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as f:
        subprocess.run(["strace", "-f", "--seccomp-bpf", "-ttt", "-e", "trace=execve,exit_group",
                        "-o", f.name] + cmd, check=True, stdout=subprocess.DEVNULL)
        ev = []
        for line in f.read().splitlines():
            m = LINE.match(line)
            if m and "resumed" not in line and "= -1" not in line:
                ev.append((int(m.group(1)), float(m.group(2)), m.group(3)))
    pids = []
    for pid, _, _ in ev:
        if pid not in pids:
            pids.append(pid)
    first = {p: min(t for q, t, k in ev if q == p and k == "execve") for p in pids
             if any(q == p and k == "execve" for q, _, k in ev)}
    last = {p: max(t for q, t, k in ev if q == p and k == "exit_group") for p in pids
            if any(q == p and k == "exit_group" for q, _, k in ev)}
    root = pids[0]
    child = [p for p in pids[1:] if p in first and p in last]
    out = {"total": last[root] - first[root]}
    if child:
        c = child[-1]
        out["runner start -> interpreter exec"] = first[c] - first[root]
        out["interpreter exec -> exit"] = last[c] - first[c]
        out["interpreter exit -> runner exit"] = last[root] - last[c]
    return out


def main():
    argv = sys.argv[1:]
    runs = 15
    if argv and argv[0] != "--":
        runs = int(argv[0])
        argv = argv[1:]
    cmd = argv[1:]
    for _ in range(2):
        one(cmd)  # warm-up
    rows = [one(cmd) for _ in range(runs)]
    print("%s  (%d runs, medians)" % (" ".join(cmd), runs))
    for k in rows[0]:
        xs = [r[k] for r in rows if k in r]
        print("  %-36s %8.1f ms   (min %.1f, max %.1f)" % (k, statistics.median(xs) * 1e3,
                                                         min(xs) * 1e3, max(xs) * 1e3))


if __name__ == "__main__":
    main()
