"""Run an R benchmark of parallel methods and measure, per timed call, the
peak *summed PSS* of the master and its workers (B5, B6).

Memory at one instant is

    PSS total = sum of Pss (from /proc/PID/smaps_rollup) over
                the master (the R process the harness started),
                its descendants at that instant (mclapply's forked workers)
                that belong to no declared group,
                and the workers of the group the call uses

PSS divides every shared page among the processes that map it, so pages a
fork shares copy-on-write with the master, or a /dev/shm segment that two
workers map, are counted once in the sum, not once per process. PSOCK
workers are not children of the master (a shell started them and exited), so
the R script prints their pids (``BENCH_PIDS <group> <pid>...``, see
bench/r/par_common.R) and this watcher reads them from its stdout as it runs.
pyrmap's own workers (memApply's engine) are children of the master: they
are declared as a group too, so that they count for memApply's calls only,
not as descendants in every other method's.

PSS misses one thing: pages of a /dev/shm file that no process of the group
maps at that instant (pyrmap's registerVariables writes the shared copy with
pwrite and does not map it in the master; workers map it, page by page as
they touch it). So a second figure is kept beside it:

    with /dev/shm by allocation = sum of (Pss - Pss_Shmem) over the same processes
                                  + the allocated size (st_blocks) of every /dev/shm
                                    file they map, or that is a pyrmap page
                                    (pyrmap-<uid>-ns-...) whose header names the
                                    master as its owner; each file counted once

Cost: reading smaps_rollup walks the process's page tables under its mmap
lock (a fork() or mmap() in that process can wait for a mapping's walk); on
this VM that is ~13-19 us per MB resident (~5-7 ms for a 360 MB R process).
So the watcher samples only while a call of a memory round runs (from
``BENCH_START`` to ``BENCH_ITER``; rounds not in ``sample_reps`` are left
alone, for clean times), only the processes of that call's group, and sleeps
``poll_ms`` (default 20) between samples. Each sample's duration is recorded,
so the cost (and the share of one core the watcher takes) is reported with
the results. Between samples nothing is read, so a peak that lasts less than
the interval may be missed; the peak is a lower bound.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

from memwatch import SHM, UID, ppid, shm_mapped, stat_fields  # shared with B1-B4

PAGE_PREFIX = "pyrmap-%d-ns-" % UID
PAGE_MAGIC = b"\x89PYRPAGE"


def rollup(pid: int):
    """(Pss, Pss_Shmem) in bytes, or None (process gone, or a zombie)."""
    try:
        with open("/proc/%d/smaps_rollup" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    pss = shm = None
    for line in data.split(b"\n"):
        if line.startswith(b"Pss:"):
            pss = int(line.split()[1]) * 1024
        elif line.startswith(b"Pss_Shmem:"):
            shm = int(line.split()[1]) * 1024
    if pss is None:
        return None
    return pss, shm or 0


TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int):
    """User + system CPU seconds of pid so far, or None."""
    f = stat_fields(pid)
    return None if f is None else (int(f[11]) + int(f[12])) / TICK


def descendants(root: int):
    """The descendants of root now. Pids grow, so only pids > root are read
    (ascending: a parent comes before its children)."""
    try:
        pids = sorted(int(d) for d in os.listdir("/proc") if d.isdigit() and int(d) > root)
    except OSError:
        return []
    tree = {root}
    out = []
    for p in pids:
        if ppid(p) in tree:
            tree.add(p)
            out.append(p)
    return out


class PssWatch:
    """Samples the active call's processes; fed by the R script's stdout."""

    def __init__(self, poll_ms: float = 20.0, sample_reps=None):
        self.poll_s = poll_ms / 1000.0
        self.sample_reps = None if sample_reps is None else set(sample_reps)  # None: every round
        self.master = None
        self.groups = {}        # group -> [pids]
        self.all_pids = set()   # every pid ever seen (for the /dev/shm check)
        self.active = None      # (method, rep, group) while a call runs
        self.closing = None     # the call that just ended (one more sample)
        self.samples = []       # dicts, see sample()
        self.owner = {}         # inode -> owner pid of a pyrmap page (header)
        self.lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)

    # --- fed by the reader of R's stdout
    def line(self, text: str) -> None:
        p = text.split()
        if not p:
            return
        if p[0] == "BENCH_PIDS" and len(p) >= 3:
            pids = [int(x) for x in p[2:]]
            with self.lock:
                if p[1] == "master":
                    self.master = pids[0]
                else:
                    self.groups[p[1]] = pids
                self.all_pids.update(pids)
        elif p[0] == "BENCH_START" and len(p) == 4:
            if self.sample_reps is not None and int(p[2]) not in self.sample_reps:
                return  # a round measured for time only: nothing is read
            with self.lock:
                self.active = (p[1], int(p[2]), p[3])
            self._wake.set()
        elif p[0] == "BENCH_ITER":
            with self.lock:
                # one more sample after the call: a call shorter than the
                # interval then still has one (flagged as approximate)
                self.closing = self.active
                self.active = None

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop = True
        self._wake.set()
        self._thread.join()

    def _page_owner(self, path: str, ino: int):
        if ino not in self.owner:
            try:
                with open(path, "rb") as f:
                    h = f.read(24)
            except OSError:
                return None
            if len(h) < 24 or h[:8] != PAGE_MAGIC:
                return None  # header not written yet: look again next time
            self.owner[ino] = int.from_bytes(h[16:24], "little", signed=True)
        return self.owner[ino]

    def sample(self, active) -> None:
        c0 = time.thread_time()
        t0 = time.time()
        method, rep, group = active
        master = self.master
        grouped = {p for ps in self.groups.values() for p in ps}
        desc = [p for p in descendants(master) if p not in grouped]
        workers = list(self.groups.get(group, []))
        self.all_pids.update(desc)
        shm = {}
        per = {}
        fork_cpu = {}
        for pid in [master] + workers + desc:
            r = rollup(pid)
            if r is None:
                continue
            per[pid] = r
            shm_mapped(pid, shm)
            if pid in desc:
                c = cpu_s(pid)
                if c is not None:
                    fork_cpu[pid] = c
        try:
            with os.scandir(SHM) as it:
                for e in it:
                    if not e.name.startswith(PAGE_PREFIX):
                        continue
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if self._page_owner(e.path, st.st_ino) == master:
                        shm[st.st_ino] = st.st_blocks * 512
        except OSError:
            pass
        t1 = time.time()
        m = per.get(master, (0, 0))
        pss = sum(v[0] for v in per.values())
        pss_shmem = sum(v[1] for v in per.values())
        shm_bytes = sum(shm.values())
        self.samples.append({
            "t": (t0 + t1) / 2, "method": method, "rep": rep,
            "pss": pss, "master": m[0], "workers": pss - m[0],
            "pss_shmem": pss_shmem, "shm_files": shm_bytes,
            "alloc": pss - pss_shmem + shm_bytes,
            "nproc": len(per), "forks": len([p for p in desc if p in per]), "fork_cpu": fork_cpu,
            "wall": t1 - t0, "cpu": time.thread_time() - c0,
        })

    def _loop(self):
        while not self._stop:
            with self.lock:
                active = self.active
                if active is None and self.closing is not None:
                    active, self.closing = self.closing, None
                ready = self.master is not None
            if active is None or not ready:
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            self.sample(active)
            time.sleep(self.poll_s)

    # --- results
    def window(self, method, rep, t0, t1):
        """Peak and baseline of call (method, rep) that ran from t0 to t1:
        dict with peak (the sample of largest PSS inside [t0, t1]; if no sample
        fell inside, the first one after t0 - flagged), peak_alloc (the largest
        'with /dev/shm by allocation' inside), base (the last sample before
        t0), n (samples inside)."""
        mine = [s for s in self.samples if s["method"] == method and s["rep"] == rep]
        inside = [s for s in mine if t0 <= s["t"] <= t1]
        approx = False
        if not inside:
            after = [s for s in mine if s["t"] > t0]
            inside = after[:1]
            approx = True
        before = [s for s in mine if s["t"] < t0]
        if not inside:
            return None
        fork_cpu = {}  # the last CPU time seen of each fork (a lower bound)
        for s in mine:
            if t0 <= s["t"]:
                fork_cpu.update(s["fork_cpu"])
        return {"peak": max(inside, key=lambda s: s["pss"]),
                "fork_cpu": sum(fork_cpu.values()),
                "peak_alloc": max(s["alloc"] for s in inside),
                "base": before[-1] if before else None,
                "n": 0 if approx else len(inside), "approx": approx}

    def cost(self):
        """(median seconds per sample, median CPU seconds per sample, median
        interval between samples of one call, samples)."""
        if not self.samples:
            return None
        walls = sorted(s["wall"] for s in self.samples)
        cpus = sorted(s["cpu"] for s in self.samples)
        gaps = sorted(b["t"] - a["t"] for a, b in zip(self.samples, self.samples[1:])
                      if a["method"] == b["method"] and a["rep"] == b["rep"])
        med = lambda xs: xs[len(xs) // 2] if xs else float("nan")  # noqa: E731
        return med(walls), med(cpus), med(gaps), len(self.samples)


def run(cmd, env=None, cwd=None, poll_ms=20.0, sample_reps=None):
    """Runs cmd (an R script following bench/r/par_common.R's protocol) under
    a PssWatch that samples the calls of rounds `sample_reps` (default: all).
    Returns dict: rc, wall_s, stdout, stderr, watch."""
    w = PssWatch(poll_ms, sample_reps).start()
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace")
    out = []
    err = []

    def read_out():
        for line in proc.stdout:
            out.append(line)
            w.line(line)

    def read_err():
        err.append(proc.stderr.read())

    readers = [threading.Thread(target=read_out), threading.Thread(target=read_err)]
    for r in readers:
        r.start()
    rc = proc.wait()
    for r in readers:
        r.join()
    w.stop()
    return {"cmd": list(cmd), "rc": rc, "wall_s": time.perf_counter() - t,
            "stdout": "".join(out), "stderr": "".join(err), "watch": w}


def alive_workers(pids, timeout=10.0):
    """The pids of `pids` still alive after waiting up to `timeout` s (a
    PSOCK worker quits when its master's socket closes). Zombies count as
    gone."""
    deadline = time.time() + timeout
    left = list(pids)
    while True:
        left = [p for p in left if _alive(p)]
        if not left or time.time() > deadline:
            return left
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    f = stat_fields(pid)
    return f is not None and f[0] != b"Z"


def cmdline(pid: int) -> str:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
