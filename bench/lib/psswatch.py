"""Run an R benchmark of parallel methods and measure, per timed call, the
peak *summed PSS* of the master and its workers (B5, B6).

Memory of a call at one instant is

    PSS total = sum of Pss (from /proc/PID/smaps_rollup) over
                the master (the R process the harness started),
                the workers of the group the call uses,
                and the master's descendants that belong to no declared
                group and were started during the call (mclapply's forks)

PSS divides every shared page among the processes that map it, so pages a
fork shares copy-on-write with the master, or a /dev/shm segment that two
workers map, are counted once in the sum, not once per process. PSOCK
workers are not children of the master (a shell started them and exited), so
the R script prints their pids (``BENCH_PIDS <group> <pid>...``, see
bench/r/par_common.R) and this watcher reads them from its stdout as it runs.
pyrmap's own workers (memApply's engine) are children of the master: they
are declared as a group too, so that they count for memApply's calls only,
not as descendants in every other method's. A fork counts for the call
during which it started (its start time, /proc/PID/stat, against the call's
times), so a fork of an mclapply call that is still exiting when the next
call begins is not counted for that next call.

PSS misses one thing: pages of a /dev/shm file that no process of the group
maps at that instant (pyrmap's registerVariables writes the shared copy with
pwrite and does not map it in the master; workers map it, page by page as
they touch it). So a second figure is kept beside it:

    with /dev/shm by allocation = sum of (Pss - Pss_Shmem) over the same processes
                                  + the allocated size (st_blocks) of every /dev/shm
                                    file they map, or that is a pyrmap page
                                    (pyrmap-<uid>-ns-...) whose header names the
                                    master as its owner; each file counted once

The calls run back to back, with no pause between them, so the watcher does
not follow them one by one: from the first ``BENCH_START`` of a round in
``sample_reps`` to ``BENCH_ROUNDS_END`` (or the first ``BENCH_START`` of a
round not in it) it samples without a break, and each sample reads every
process that can count for some call: the master, every declared group's
workers, and the master's other descendants, each recorded apart. Which of
them count for a call, and which samples fall inside its window, is decided
afterwards from the call's times (``window``). The memory "before the call"
is the master's and the call's workers' PSS in the last sample that ended
before the call began while no fork of the master ran (forks share the
master's pages, which lowers its PSS): with no pause, that sample is one of
the previous call's last, or, after an mclapply call, one from just before
it; the distance is reported.

Cost: reading smaps_rollup walks the process's page tables under its mmap
lock (a fork() or mmap() in that process can wait for a mapping's walk); on
this VM that is ~13-19 us per MB resident (~5-7 ms for a 360 MB R process).
So the watcher samples only in the memory rounds (rounds not in
``sample_reps`` are left alone, for clean times) and sleeps ``poll_ms``
(default 20) between samples. Each sample's duration is recorded, so the
cost (and the share of one core the watcher takes) is reported with the
results. Between samples nothing is read, so a peak that lasts less than the
interval may be missed; the peak is a lower bound.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

from memwatch import SHM, UID, shm_mapped, stat_fields  # shared with B1-B4

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


# Unix time of the boot, to read a process's start time (clock ticks since
# boot, /proc/PID/stat) as a Unix time.
BOOT = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def started(pid: int):
    """Unix time at which pid started (to 1/TICK s), or None."""
    f = stat_fields(pid)
    return None if f is None else BOOT + int(f[19]) / TICK


def children(pid: int):
    """The children of pid now (/proc/PID/task/TID/children of each thread)."""
    out = []
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid), "rb") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def descendants(root: int):
    """The descendants of root now, parents before their children. Followed
    down from root: pids wrap around (pid_max is 32768 here, and this
    machine makes processes fast), so a fork may have a smaller pid than its
    parent."""
    out = []
    todo = children(root)
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo += children(p)
    return out


class PssWatch:
    """Samples the master and every worker through the memory rounds; fed by
    the R script's stdout (see the module's docstring)."""

    def __init__(self, poll_ms: float = 20.0, sample_reps=None):
        self.poll_s = poll_ms / 1000.0
        self.sample_reps = None if sample_reps is None else set(sample_reps)  # None: every round
        self.master = None
        self.groups = {}        # group -> [pids]
        self.all_pids = set()   # every pid ever seen (for the /dev/shm check)
        self.sampling = False   # inside the memory rounds
        self.final = False      # the rounds ended: one more sample, then none
        self.samples = []       # dicts, see sample()
        self.start_of = {}      # descendant pid -> Unix time it started
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
            on = self.sample_reps is None or int(p[2]) in self.sample_reps
            with self.lock:
                if self.sampling and not on:
                    self.final = True
                elif on and not self.final:
                    self.sampling = True
            self._wake.set()
        elif p[0] == "BENCH_ROUNDS_END":
            with self.lock:
                self.final = self.sampling
            self._wake.set()

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

    def sample(self) -> None:
        """Reads every process that can count for a call, each apart:
        per pid (Pss, Pss_Shmem) and the /dev/shm files it maps."""
        c0 = time.thread_time()
        t0 = time.time()
        with self.lock:
            master = self.master
            groups = {g: list(ps) for g, ps in self.groups.items()}
        grouped = {p for ps in groups.values() for p in ps}
        per, maps, sizes, fork_cpu = {}, {}, {}, {}
        desc = []

        def read(pids, forks):
            for pid in pids:
                if forks:
                    desc.append(pid)
                    if pid not in self.start_of:
                        st = started(pid)
                        if st is not None:
                            self.start_of[pid] = st
                r = rollup(pid)
                if r is None:
                    continue
                per[pid] = r
                mine = {}
                shm_mapped(pid, mine)
                maps[pid] = set(mine)
                sizes.update(mine)
                if forks:
                    c = cpu_s(pid)
                    if c is not None:
                        fork_cpu[pid] = c

        first = [p for p in descendants(master) if p not in grouped]
        read([master] + sorted(grouped), False)
        read(first, True)
        # A fork made while this sample ran is not read: the master may have
        # been read before it (and a fork read after it would count pages
        # twice) or after it (lower, its pages now shared), so the sample
        # may fall short, never over; the peak is a maximum over samples.
        # But the sample is marked, so that it is not taken as a baseline.
        late = [p for p in descendants(master) if p not in grouped and p not in first]
        self.all_pids.update(desc + late)
        pages = set()  # pyrmap pages the master registered (mapped or not)
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
                        sizes[st.st_ino] = st.st_blocks * 512
                        pages.add(st.st_ino)
        except OSError:
            pass
        t1 = time.time()
        self.samples.append({
            "t": (t0 + t1) / 2, "t0": t0, "t1": t1, "per": per, "maps": maps, "sizes": sizes,
            "pages": pages, "desc": [p for p in desc if p in per], "forked": bool(first or late),
            "fork_cpu": fork_cpu,
            "wall": t1 - t0, "cpu": time.thread_time() - c0,
        })

    def _loop(self):
        while not self._stop:
            with self.lock:
                on = self.sampling and self.master is not None
                last = self.final
                if last:
                    self.sampling = False
            if not on:
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            self.sample()  # after the rounds' end: this one, then no more
            if not last:
                time.sleep(self.poll_s)

    # --- results
    def _figures(self, s, procs):
        """Summed figures of processes procs in sample s."""
        got = [p for p in procs if p in s["per"]]
        pss = sum(s["per"][p][0] for p in got)
        pss_shmem = sum(s["per"][p][1] for p in got)
        files = set(s["pages"])
        for p in got:
            files |= s["maps"][p]
        shm_bytes = sum(s["sizes"][i] for i in files)
        m = s["per"].get(self.master, (0, 0))[0]
        return {"t": s["t"], "pss": pss, "master": m, "workers": pss - m, "pss_shmem": pss_shmem,
                "shm_files": shm_bytes, "alloc": pss - pss_shmem + shm_bytes}

    def window(self, group, t0, t1):
        """Peak and baseline of a call of `group` that ran from t0 to t1.
        Counted: the master, the group's workers, and the descendants (not
        in a group) that started during the call. Returns a dict with peak
        (figures of the sample of largest PSS whose midpoint is inside [t0,
        t1]; if none is, the first one after t0 - flagged approx),
        peak_alloc (the largest 'with /dev/shm by allocation' among them),
        fork_cpu (last CPU time seen of each of the call's forks, summed: a
        lower bound), base (PSS of the master and the group's workers in
        the last sample that ended before t0 while no fork of the master
        ran, or None), base_gap (t0 minus that sample's end), n (samples
        inside), approx; or None when no sample is inside or after the
        call."""
        workers = self.groups.get(group, [])
        slack = 1.5 / TICK  # a start time is counted in whole ticks
        forks = {p for p, st in self.start_of.items() if t0 - slack <= st <= t1}
        inside = [s for s in self.samples if t0 <= s["t"] <= t1]
        approx = False
        if not inside:
            inside = [s for s in self.samples if s["t"] > t0][:1]
            approx = True
        if not inside:
            return None
        figs = [self._figures(s, [self.master] + workers + [p for p in s["desc"] if p in forks])
                for s in inside]
        fork_cpu = {}
        for s in self.samples:
            if s["t0"] >= t0 - slack:
                fork_cpu.update({p: c for p, c in s["fork_cpu"].items() if p in forks})
        # a fork shares the master's pages and so lowers its PSS: the
        # baseline comes from a sample in which none ran
        before = [s for s in self.samples if s["t1"] < t0 and not s["forked"]]
        base = self._figures(before[-1], [self.master] + workers) if before else None
        return {"peak": max(figs, key=lambda f: f["pss"]), "peak_alloc": max(f["alloc"] for f in figs),
                "fork_cpu": sum(fork_cpu.values()),
                "base": base["pss"] if base else None, "base_gap": t0 - before[-1]["t1"] if before else None,
                "n": 0 if approx else len(inside), "approx": approx}

    def cost(self):
        """(median seconds per sample, median CPU seconds per sample, median
        interval between samples, samples)."""
        if not self.samples:
            return None
        walls = sorted(s["wall"] for s in self.samples)
        cpus = sorted(s["cpu"] for s in self.samples)
        gaps = sorted(b["t"] - a["t"] for a, b in zip(self.samples, self.samples[1:]))
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
