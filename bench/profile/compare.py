"""Interleaved timing of several commands: wall time and CPU time (user+sys of
the whole process tree, from wait4), medians over N rounds. Each round runs
every command once, in an order that rotates, so load changes weigh on all
alike; CPU time is much less disturbed by other load than wall time.

    python3 bench/profile/compare.py [-n ROUNDS] NAME=CMD [NAME=CMD ...]

CMD is split like a shell would (shlex); prefix it with `env VAR=... ` to set
variables.
"""
import os
import shlex
import statistics
import subprocess
import sys
import time


def run(cmd):
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    err = p.stderr.read()
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("failed: %s\n%s" % (shlex.join(cmd), err.decode(errors="replace")))
    return dt, ru.ru_utime + ru.ru_stime


def main():
    argv = sys.argv[1:]
    rounds = 30
    if argv[:1] == ["-n"]:
        rounds = int(argv[1])
        argv = argv[2:]
    cmds = []
    for a in argv:
        name, cmd = a.split("=", 1)
        cmds.append((name, shlex.split(cmd)))
    for _, c in cmds:
        run(c)
        run(c)
    res = {n: [] for n, _ in cmds}
    for i in range(rounds):
        k = i % len(cmds)
        for name, c in cmds[k:] + cmds[:k]:
            res[name].append(run(c))
    base_w = statistics.median(w for w, _ in res[cmds[0][0]])
    base_c = statistics.median(c for _, c in res[cmds[0][0]])
    print("%-24s %10s %10s %10s %12s %10s" % ("command", "wall med", "wall min", "vs first",
                                             "cpu med", "vs first"))
    for name, _ in cmds:
        w = [x for x, _ in res[name]]
        c = [y for _, y in res[name]]
        print("%-24s %8.1fms %8.1fms %+8.1fms %10.1fms %+8.1fms" % (
            name, statistics.median(w) * 1e3, min(w) * 1e3, (statistics.median(w) - base_w) * 1e3,
            statistics.median(c) * 1e3, (statistics.median(c) - base_c) * 1e3))


if __name__ == "__main__":
    main()
