"""Run a command and measure its wall time and peak *total* memory.

Total memory at one instant is

    sum over the process tree of (RssAnon + RssFile)       [from /proc/PID/status]
  + the allocated pages of every /dev/shm file the tree uses, each counted once

where "the /dev/shm files the tree uses" are (a) files still linked in
/dev/shm whose names mark them as the tree's (pyrmap segments
``pyrmap-<uid>-<pid>-...`` of a pid in the tree, or names starting with one of
the ``shm_prefixes`` given, e.g. the seed's file approach), and (b) /dev/shm
files mapped by a process of the tree, linked or already removed (found in
/proc/PID/maps, sized through /proc/PID/map_files), or held open by one
(/proc/PID/fd: an unnamed segment kept between calls). Files are deduplicated by
inode and sized by st_blocks (tmpfs allocates on write or posix_fallocate), so
a segment written by one process and mapped by another is counted once, and
RssShmem is left out of the per-process sums for the same reason.

/proc/PID/status counters are used instead of smaps_rollup because reading
them does not walk page tables: a poll costs well under a millisecond even
when the processes map gigabytes, so the watcher does not slow the measured
processes down on a 2-core machine.

The tree: the started process and every process whose parent is in the tree.
Each poll lists /proc and reads the parent of pids it has not seen before
(once per process: pids wrap around at pid_max, so a child's pid may be
smaller than its parent's); a pid that is gone is forgotten, so a reused pid
is judged afresh.

Markers: a measured program may print lines ``BENCH_MARK <name> <unix time>``
on stdout (R's as.numeric(Sys.time()), Python's time.time()); the result then
holds the marks and the peak inside the window between two marks.

Command line (ad-hoc use):
    python3 memwatch.py [--poll-ms 5] [--shm-prefix P] -- CMD ARGS...
prints a JSON summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

SHM = "/dev/shm"
PAGE = os.sysconf("SC_PAGE_SIZE")
UID = os.getuid()


def _status_kib(pid: int):
    """(RssAnon + RssFile, VmHWM) in bytes, or None if the process is gone."""
    try:
        with open("/proc/%d/status" % pid, "rb") as f:
            text = f.read()
    except OSError:
        return None
    anon = filerss = hwm = 0
    for line in text.split(b"\n"):
        if line.startswith(b"RssAnon:"):
            anon = int(line.split()[1])
        elif line.startswith(b"RssFile:"):
            filerss = int(line.split()[1])
        elif line.startswith(b"VmHWM:"):
            hwm = int(line.split()[1])
    return (anon + filerss) * 1024, hwm * 1024


def stat_fields(pid: int):
    """The fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rindex(b")") + 2:].split()


def ppid(pid: int):
    f = stat_fields(pid)
    return None if f is None else int(f[1])


def shm_mapped(pid: int, seen: dict) -> None:
    """Adds the /dev/shm files mapped by pid to seen {inode: bytes}."""
    try:
        with open("/proc/%d/maps" % pid, "rb") as f:
            lines = f.read().split(b"\n")
    except OSError:
        return
    for line in lines:
        i = line.find(b" /dev/shm/")
        if i < 0:
            continue
        rng = line.split(b" ", 1)[0].decode()
        try:
            st = os.stat("/proc/%d/map_files/%s" % (pid, rng))
        except OSError:
            continue
        seen[st.st_ino] = st.st_blocks * 512


def shm_open(pid: int, seen: dict) -> None:
    """Adds the /dev/shm files pid holds open (named or not, mapped or not:
    e.g. a pool's kept input segment between calls) to seen {inode: bytes}."""
    d = "/proc/%d/fd" % pid
    try:
        fds = os.listdir(d)
    except OSError:
        return
    for fd in fds:
        try:
            if not os.readlink("%s/%s" % (d, fd)).startswith(SHM + "/"):
                continue
            st = os.stat("%s/%s" % (d, fd))
        except OSError:
            continue
        seen[st.st_ino] = st.st_blocks * 512


class Watch:
    """Polls a process tree; see the module docstring."""

    def __init__(self, root: int, shm_prefixes=(), poll_s: float = 0.005):
        self.root = root
        self.tree = {root}  # the live processes of the tree
        self.all_pids = {root}  # every pid the tree has had
        self._others = {}  # pid -> parent pid, of live processes seen outside the tree
        self.shm_prefixes = tuple(shm_prefixes)
        self.poll_s = poll_s
        self.samples = []  # (unix time, total bytes, shm bytes, nprocs)
        self.hwm = {}  # pid -> VmHWM seen last
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()

    def _grow_tree(self):
        try:
            live = {int(d) for d in os.listdir("/proc") if d.isdigit()}
        except OSError:
            return
        self.tree &= live
        for pid in list(self._others):
            if pid not in live:
                del self._others[pid]
        for pid in live - self.tree - self._others.keys():
            pp = ppid(pid)
            if pp is not None:
                self._others[pid] = pp
        grew = True
        while grew:  # children, then their children found in the same poll
            joined = [p for p, pp in self._others.items() if pp in self.tree]
            for p in joined:
                del self._others[p]
                self.tree.add(p)
                self.all_pids.add(p)
            grew = bool(joined)

    def sample(self):
        self._grow_tree()
        total = 0
        alive = 0
        shm = {}
        for pid in list(self.tree):
            st = _status_kib(pid)
            if st is None:
                continue
            alive += 1
            total += st[0]
            self.hwm[pid] = st[1]
            shm_mapped(pid, shm)
            shm_open(pid, shm)
        mine = tuple("pyrmap-%d-%d-" % (UID, p) for p in self.all_pids) + self.shm_prefixes
        try:
            with os.scandir(SHM) as it:
                for e in it:
                    if e.name.startswith(mine):
                        try:
                            st = e.stat(follow_symlinks=False)
                        except OSError:
                            continue
                        shm[st.st_ino] = st.st_blocks * 512
        except OSError:
            pass
        shm_total = sum(shm.values())
        self.samples.append((time.time(), total + shm_total, shm_total, alive))

    def _loop(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.poll_s)

    def peak(self, t0=None, t1=None):
        """(peak total, shm at that instant) over samples in [t0, t1]."""
        best = (0, 0)
        for t, tot, shm, _ in self.samples:
            if (t0 is None or t >= t0) and (t1 is None or t <= t1) and tot > best[0]:
                best = (tot, shm)
        return best

    def at(self, t):
        """The last sample taken at or before t (total bytes), or 0."""
        last = 0
        for ts, tot, _, _ in self.samples:
            if ts > t:
                break
            last = tot
        return last


def run(cmd, env=None, cwd=None, shm_prefixes=(), poll_ms=5.0, stdin=None,
        capture_stdout=True):
    """Runs cmd under a Watch. Returns a dict: wall_s (spawn to exit, from the
    harness), rc, stdout, stderr, marks {name: unix time}, peak_bytes (whole
    run), watch (the Watch, for windows), maxrss_bytes (wait4's ru_maxrss: the
    largest single process of the tree, its RssShmem included)."""
    t0 = time.time()
    p0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=stdin,
                            stdout=subprocess.PIPE if capture_stdout else None,
                            stderr=subprocess.PIPE)
    w = Watch(proc.pid, shm_prefixes, poll_ms / 1000.0).start()
    bufs = {}

    def drain(name, f):
        bufs[name] = f.read()
        f.close()

    readers = [threading.Thread(target=drain, args=("err", proc.stderr))]
    if capture_stdout:
        readers.append(threading.Thread(target=drain, args=("out", proc.stdout)))
    for t in readers:
        t.start()
    _, status, ru = os.wait4(proc.pid, 0)
    p1 = time.perf_counter()
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join()
    w.stop()
    marks = {}
    text = bufs.get("out", b"").decode(errors="replace")
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "BENCH_MARK":
            marks[parts[1]] = float(parts[2])
    return {
        "cmd": list(cmd),
        "rc": proc.returncode,
        "wall_s": p1 - p0,
        "t_start": t0,
        "stdout": text,
        "stderr": bufs.get("err", b"").decode(errors="replace"),
        "marks": marks,
        "peak_bytes": w.peak()[0],
        "maxrss_bytes": ru.ru_maxrss * 1024,
        "user_s": ru.ru_utime,
        "sys_s": ru.ru_stime,
        "watch": w,
    }


def main(argv):
    poll = 5.0
    prefixes = []
    while argv and argv[0] != "--":
        if argv[0] == "--poll-ms":
            poll = float(argv[1])
            argv = argv[2:]
        elif argv[0] == "--shm-prefix":
            prefixes.append(argv[1])
            argv = argv[2:]
        else:
            sys.exit("usage: memwatch.py [--poll-ms MS] [--shm-prefix P] -- CMD ...")
    r = run(argv[1:], shm_prefixes=prefixes, poll_ms=poll, capture_stdout=False)
    w = r.pop("watch")
    r["peak_MB"] = r["peak_bytes"] / 1e6
    r["samples"] = len(w.samples)
    json.dump({k: v for k, v in r.items() if k not in ("stdout",)}, sys.stdout, indent=1)
    print()
    return r["rc"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
