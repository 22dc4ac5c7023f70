#!/usr/bin/env python3
"""pyrmap benchmarks B1-B7: measure against the named competitors, compare, write RESULTS.md.

    bench/run.sh [--only B1,B3] [--reps N] [--n 1e8] [--quick]

(run.sh sets PYRMAP_PYTHON and R_LIBS and builds first; see bench/README.md.)

Every benchmark measures pyrmap and its named competitors in the same run,
interleaved (the order alternates from one repetition to the next), because
this 2-core machine is shared and its load changes from second to second:
interleaving makes the noise fall on both sides alike. Tables quote medians,
with min/max and the interquartile range, and the peak total memory measured
by bench/lib/memwatch.py (process tree RssAnon + RssFile, plus the /dev/shm
pages the tree uses, each counted once) or, for the parallel benchmarks B5
and B6, by bench/lib/psswatch.py (summed PSS of the master and its workers).

Results: printed, written to bench/RESULTS.md (with the date, the machine and
the exact commands) and, raw, to bench/out/results.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "lib"))
import memwatch  # noqa: E402
import psswatch  # noqa: E402

OUT = os.path.join(HERE, "out")
SCRIPTS = os.path.join(HERE, "scripts")
PY = os.environ.get("PYRMAP_PYTHON") or "/usr/bin/python3"
PYRMAP = os.environ.get("PYRMAP") or os.path.join(REPO, "build", "pyrmap")
RSCRIPT = shutil.which("Rscript") or "Rscript"
UID = os.getuid()
SHM_TAG = "pyrmapbench-%d" % os.getpid()  # names of the files the file method puts in /dev/shm

SEEN_PIDS: set = set()  # every pid of every measured tree (for the /dev/shm check)


# ------------------------------------------------------------------ helpers

def q(cmd) -> str:
    return " ".join(shlex.quote(c) for c in cmd)


def rel(path: str) -> str:
    """A path relative to the repository, for the printed commands."""
    return os.path.relpath(path, REPO) if path.startswith(REPO) else path


def qrel(cmd) -> str:
    return " ".join(shlex.quote(rel(c)) for c in cmd)


def stats(xs):
    xs = sorted(xs)
    if not xs:
        return {"n": 0}
    qs = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return {"n": len(xs), "median": statistics.median(xs), "min": xs[0], "max": xs[-1],
            "q1": qs[0], "q3": qs[2]}


def fmt_s(x: float) -> str:
    return "%.1f ms" % (x * 1e3) if x < 1 else "%.3f s" % x


def fmt_mb(b) -> str:
    return "—" if b is None else "%.0f MB" % (b / 1e6)


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def measured(result) -> None:
    SEEN_PIDS.update(result["watch"].all_pids)


def run_watched(cmd, env=None, poll_ms=5.0):
    r = memwatch.run(cmd, env=env, shm_prefixes=(SHM_TAG,), poll_ms=poll_ms)
    measured(r)
    if r["rc"] != 0:
        raise SystemExit("command failed (exit %s): %s\n%s\n%s"
                         % (r["rc"], q(cmd), r["stdout"][-2000:], r["stderr"][-4000:]))
    return r


def run_calls(what, cmd, calls):
    """Runs a script that times `calls` calls (BENCH_MARK init_start/init_end,
    start<K>/end<K>; BENCH_CPU <K> <seconds>; BENCH_OK), watched. Returns the
    run and {"init": seconds, "calls": [{time, cpu, peak, base, setup, shm_at_peak}]}:
    base is the total memory just before the call, setup the total once the
    set-up was done (init_end, before the first call)."""
    r = run_watched(cmd)
    if "BENCH_OK" not in r["stdout"]:
        raise SystemExit("%s: no BENCH_OK\n%s\n%s" % (what, r["stdout"], r["stderr"]))
    mk, w = r["marks"], r["watch"]
    cpu = {}
    for line in r["stdout"].splitlines():
        p = line.split()
        if p[:1] == ["BENCH_CPU"]:
            cpu[int(p[1])] = float(p[2])
    rep = {"init": mk["init_end"] - mk["init_start"], "calls": []}
    for k in range(1, calls + 1):
        t0, t1 = mk["start%d" % k], mk["end%d" % k]
        peak, shm_at_peak = w.peak(t0, t1)
        rep["calls"].append({"time": t1 - t0, "cpu": cpu.get(k), "peak": peak,
                             "base": w.at(t0), "setup": w.at(mk["init_end"]),
                             "shm_at_peak": shm_at_peak})
    return r, rep


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def drop_file(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def warm(path):
    """Reads a file once so that it is in the page cache."""
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass


# ------------------------------------------------------------------ B1

def bench_b1(a):
    """pyrmap run of a trivial script vs python3 -c 'import numpy' (hyperfine)."""
    tiny = os.path.join(OUT, "b1_tiny.npy")
    subprocess.run([PY, "-c", "import numpy, sys; numpy.save(sys.argv[1], numpy.arange(10.0))", tiny],
                   check=True)
    py_cmd = [PY, "-c", "import numpy"]
    pr_cmd = [PYRMAP, "run", os.path.join(SCRIPTS, "trivial.py"), "-i", tiny]
    chk = subprocess.run(pr_cmd, capture_output=True, text=True)
    if chk.returncode != 0 or chk.stdout.strip() not in ("45", "45.0"):
        raise SystemExit("B1: %s failed: %r %r" % (q(pr_cmd), chk.stdout, chk.stderr))
    names = {"python": py_cmd, "pyrmap": pr_cmd}
    times = {k: [] for k in names}
    cpu = {k: [] for k in names}  # per round: mean user + system (hyperfine)
    rounds, runs = a.b1_rounds, a.b1_runs
    hf_cmds = []
    for r in range(rounds):
        order = ["python", "pyrmap"] if r % 2 == 0 else ["pyrmap", "python"]
        js = os.path.join(OUT, "b1_round%d.json" % r)
        cmd = ["hyperfine", "-N", "--warmup", str(a.b1_warmup), "--runs", str(runs),
               "--style", "none", "--export-json", js] + [q(names[k]) for k in order]
        hf_cmds.append(cmd)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(js) as f:
            res = json.load(f)["results"]
        for k, rr in zip(order, res):
            times[k].extend(rr["times"])
            cpu[k].append(rr["user"] + rr["system"])
    # Peak memory: a few watched runs of each (hyperfine measures no memory).
    peaks = {k: [] for k in names}
    for i in range(a.mem_reps):
        for k in (["python", "pyrmap"] if i % 2 == 0 else ["pyrmap", "python"]):
            peaks[k].append(run_watched(names[k])["peak_bytes"])
    st = {k: stats(v) for k, v in times.items()}
    ratio = st["pyrmap"]["median"] / st["python"]["median"]
    # Per-round ratios: a check that the verdict does not hang on one noisy round.
    round_ratios = []
    for r in range(rounds):
        with open(os.path.join(OUT, "b1_round%d.json" % r)) as f:
            res = json.load(f)["results"]
        order = ["python", "pyrmap"] if r % 2 == 0 else ["pyrmap", "python"]
        per = {k: rr["median"] for k, rr in zip(order, res)}
        round_ratios.append(per["pyrmap"] / per["python"])
    target = 1.2
    rows = []
    for k, label in (("pyrmap", "`pyrmap run` trivial script"), ("python", "`python3 -c \"import numpy\"`")):
        s = st[k]
        rows.append([label, fmt_s(s["median"]), "%s / %s" % (fmt_s(s["min"]), fmt_s(s["max"])),
                     "%s – %s" % (fmt_s(s["q1"]), fmt_s(s["q3"])), s["n"],
                     fmt_mb(statistics.median(peaks[k])),
                     "%.2f×" % (st[k]["median"] / st["python"]["median"]),
                     "≤ %.1f×" % target if k == "pyrmap" else "",
                     verdict(ratio <= target) if k == "pyrmap" else ""])
    md = table(["method", "median", "min / max", "IQR", "runs", "peak memory",
                "ratio to python -c import numpy", "target", "result"], rows)
    cpu_ratio = statistics.median(cpu["pyrmap"]) / statistics.median(cpu["python"])
    md += "\n\nRatio of medians per hyperfine round: %s (median %.2f×).\n" % (
        ", ".join("%.2f×" % x for x in round_ratios), statistics.median(round_ratios))
    md += ("\nCPU time (user + system, median over rounds of hyperfine's per-round mean): pyrmap %s, "
           "python %s, ratio %.2f× — less disturbed by other load than wall time; not the target.\n"
           % (fmt_s(statistics.median(cpu["pyrmap"])), fmt_s(statistics.median(cpu["python"])), cpu_ratio))
    cmds = ["# %d rounds, command order alternating; times of all rounds pooled" % rounds]
    cmds += [qrel(c) for c in hf_cmds[:2]]
    cmds += ["# peak memory: %d runs each under bench/lib/memwatch.py" % a.mem_reps]
    return {"id": "B1", "title": "B1 — `pyrmap run` start-up",
            "what": "Wall time of `pyrmap run` on a trivial script (the sum of a 10-element .npy) "
                    "against starting `python3 -c \"import numpy\"` alone.",
            "table": md, "commands": cmds, "pass": ratio <= target, "ratio": ratio,
            "cpu_ratio": cpu_ratio, "raw": {"times": times, "cpu": cpu, "peaks": peaks, "round_ratios": round_ratios}}


# ------------------------------------------------------------------ B2

def bench_b2(a):
    """1e8 float64: pyrmap run times2.py .npy -> .npy vs one numpy process."""
    n = int(a.n)
    src = os.path.join(OUT, "b2_in_%d.npy" % n)
    if not os.path.exists(src) or os.path.getsize(src) != 128 + 8 * n:
        subprocess.run([PY, "-c", "import numpy as np, sys; n = int(sys.argv[2]); "
                        "np.save(sys.argv[1], np.random.default_rng(1).random(n))", src, str(n)],
                       check=True)
    out_np = os.path.join(OUT, "b2_out_numpy.npy")
    out_pr = os.path.join(OUT, "b2_out_pyrmap.npy")
    cmds = {
        "numpy": [PY, os.path.join(SCRIPTS, "numpy_times2.py"), src, out_np],
        "pyrmap": [PYRMAP, "run", os.path.join(SCRIPTS, "times2.py"), "-i", src, "-o", out_pr],
    }
    res = {k: [] for k in cmds}
    for i in range(a.reps):
        for k in (["numpy", "pyrmap"] if i % 2 == 0 else ["pyrmap", "numpy"]):
            drop_file(cmds[k][-1])
            os.sync()
            warm(src)
            r = run_watched(cmds[k])
            res[k].append({"wall": r["wall_s"], "peak": r["peak_bytes"], "maxrss": r["maxrss_bytes"],
                           "shm_at_peak": r["watch"].peak()[1],
                           "user": r["user_s"], "sys": r["sys_s"]})
    # Both outputs must hold the same numbers (checked once, not timed).
    subprocess.run([PY, "-c", "import numpy as np, sys; a = np.load(sys.argv[1], mmap_mode='r'); "
                    "b = np.load(sys.argv[2], mmap_mode='r'); x = np.load(sys.argv[3], mmap_mode='r'); "
                    "assert a.shape == b.shape == x.shape and a.dtype == b.dtype; "
                    "i = np.random.default_rng(0).integers(0, len(x), 100000); "
                    "assert (a[i] == 2 * x[i]).all() and (b[i] == 2 * x[i]).all()",
                    out_np, out_pr, src], check=True)
    for f in (out_np, out_pr):
        drop_file(f)
    st = {k: stats([r["wall"] for r in v]) for k, v in res.items()}
    pk = {k: stats([r["peak"] for r in v]) for k, v in res.items()}
    allowance = 8 * n  # one copy of the data, in bytes (800 MB for 1e8 float64)
    extra = pk["pyrmap"]["median"] - pk["numpy"]["median"]
    ok = extra <= allowance
    rows = []
    for k, label in (("pyrmap", "`pyrmap run times2.py -i in.npy -o out.npy`"),
                     ("numpy", "one numpy process: load, `x * 2`, save")):
        s = st[k]
        rows.append([label, fmt_s(s["median"]), "%s / %s" % (fmt_s(s["min"]), fmt_s(s["max"])),
                     "%s – %s" % (fmt_s(s["q1"]), fmt_s(s["q3"])), s["n"],
                     "%s (%s – %s)" % (fmt_mb(pk[k]["median"]), fmt_mb(pk[k]["min"]), fmt_mb(pk[k]["max"])),
                     fmt_mb(statistics.median([r["shm_at_peak"] for r in res[k]])),
                     fmt_mb(statistics.median([r["maxrss"] for r in res[k]])),
                     "%.2f×" % (s["median"] / st["numpy"]["median"]),
                     ("%+.0f MB" % (extra / 1e6)) if k == "pyrmap" else "",
                     ("≤ +%.0f MB" % (allowance / 1e6)) if k == "pyrmap" else "",
                     verdict(ok) if k == "pyrmap" else ""])
    md = table(["method", "median time", "min / max", "IQR", "runs", "peak total memory (min – max)",
                "of which /dev/shm", "largest process (maxrss)", "time ratio to numpy", "peak − numpy's peak", "target", "result"], rows)
    md += ("\n\nInput: %d float64 (%.0f MB) in a .npy file on disk (%s), read once before each run so it "
           "is in the page cache; outputs are written to the same directory. The time target is "
           "informational (none set); the target is on memory.\n" % (n, 8 * n / 1e6, rel(OUT)))
    md += "\nCPU time (median user / sys of the process tree): %s.\n" % "; ".join(
        "%s %.2f s / %.2f s" % (k, statistics.median([r["user"] for r in v]),
                                statistics.median([r["sys"] for r in v])) for k, v in res.items())
    return {"id": "B2", "title": "B2 — `pyrmap run` on %s float64, .npy in and out" % fmt_n(n),
            "what": "Time and peak total memory (runner + Python + /dev/shm segments) of `pyrmap run` "
                    "computing `x * 2`, against the same work in one plain numpy process.",
            "table": md, "commands": ["# %d repetitions each, alternating" % a.reps] +
            [qrel(c) for c in cmds.values()],
            "pass": ok, "extra_bytes": extra, "allowance": allowance, "n": n, "raw": res}


# ------------------------------------------------------------------ B3

def bench_b3(a):
    n = int(a.n)
    nrow = 10000 if n % 10000 == 0 else 1
    calls = a.b3_calls
    methods = ["pyrmap", "reticulate", "file"]
    res = {m: [] for m in methods}
    cmds = {}
    for i in range(a.reps):
        order = methods[i % 3:] + methods[:i % 3]
        for m in order:
            cmd = [RSCRIPT, os.path.join(HERE, "r", "b3_one.R"), m, str(n), str(nrow), PY, HERE,
                   "%s-%s-%d" % (SHM_TAG, m, i), str(calls)]
            cmds[m] = cmd
            os.sync()
            r, rep = run_calls("B3 %s" % m, cmd, calls)
            mk = r["marks"]
            rep.update({"sum": mk["sum_end"] - mk["sum_start"], "wall": r["wall_s"]})
            res[m].append(rep)
    med = statistics.median
    cold = {m: stats([rep["calls"][0]["time"] for rep in v]) for m, v in res.items()}
    warm = {m: stats([c["time"] for rep in v for c in rep["calls"][1:]]) for m, v in res.items()}
    targets = {"reticulate": 0.5, "file": 0.25}
    labels = {"pyrmap": "pyrmap `run_python(x, \"times2.py\")`",
              "reticulate": "reticulate `py_to_r(np$multiply(r_to_py(x), 2))`",
              "file": "file approach: `writeBin` to /dev/shm, python `fromfile`/`tofile`, `readBin`"}
    rows = []
    for m in methods:
        for phase, st, sel in (("first call", cold, lambda rep: rep["calls"][:1]),
                               ("calls 2–%d" % calls, warm, lambda rep: rep["calls"][1:])):
            if not st[m].get("n"):
                continue
            s = st[m]
            cs = [c for rep in res[m] for c in sel(rep)]
            rows.append([labels[m] if phase == "first call" else "″", phase, fmt_s(s["median"]),
                         "%s / %s" % (fmt_s(s["min"]), fmt_s(s["max"])),
                         "%s – %s" % (fmt_s(s["q1"]), fmt_s(s["q3"])), s["n"],
                         "%.2f s" % med([c["cpu"] for c in cs if c["cpu"] is not None]),
                         fmt_mb(med([c["peak"] for c in cs])),
                         fmt_mb(med([c["peak"] - c["base"] for c in cs])),
                         "%.2f×" % (s["median"] / st["reticulate"]["median"]),
                         "%.2f×" % (s["median"] / st["file"]["median"])])
    md = table(["method", "call", "median time", "min / max", "IQR", "calls", "CPU time (median)",
                "peak total memory", "of which added by the call", "ratio to reticulate",
                "ratio to file approach"], rows)
    verdicts = []
    ok_all = True
    primary = {}
    for phase, st in (("first call (fresh process)", cold), ("steady state (calls 2–%d)" % calls, warm)):
        if not st["pyrmap"].get("n"):
            continue
        for comp, tgt in targets.items():
            ratio = st["pyrmap"]["median"] / st[comp]["median"]
            ok = ratio <= tgt
            ok_all = ok_all and ok
            primary.setdefault(comp, []).append(ratio)
            verdicts.append(["pyrmap ≤ %s× %s, %s" % (tgt, comp if comp == "reticulate" else "file approach", phase),
                             "%.2f×" % ratio, verdict(ok)])
    md += "\n\n" + table(["target", "measured", "result"], verdicts)
    md += "\n\n" + "Not timed: `sum(y)` over the first result (a first full read; pyrmap's result is a " \
        "lazily mapped view): %s. Set-up (loading the package; for reticulate also starting Python and " \
        "importing numpy, left out of reticulate's time, which favours reticulate): %s.\n" % (
            "; ".join("%s %s" % (m, fmt_s(med([rep["sum"] for rep in res[m]]))) for m in methods),
            "; ".join("%s %s" % (m, fmt_s(med([rep["init"] for rep in res[m]]))) for m in methods))
    md += ("\nData: a %d × %d double matrix (%.0f MB) made with `runif` in the R process before anything "
           "is timed. Each repetition of each method is a fresh `Rscript` process (methods in rotating "
           "order) that makes %d calls back to back (`y <- run(x)`, no `rm()` or `gc()` between them, in any "
           "method): the first call shows "
           "a fresh session, the later ones the steady state (memory that was just freed is cheap to "
           "use again on this VM, fresh memory is not; see bench/README.md). Time: `Sys.time()` around "
           "the call, inside R; CPU time: `proc.time()` user + system of R and of its waited-for "
           "children. Peak total memory: R + its Python child + the call's /dev/shm files, sampled "
           "every 5 ms inside the call; \"added by the call\" is that peak minus the total just before "
           "the call (x and R itself).\n" % (nrow, n // nrow, 8 * n / 1e6, calls))
    return {"id": "B3", "title": "B3 — R matrix of %s doubles → Python `x * 2` → R" % fmt_n(n),
            "what": "Time and peak memory of one round trip of a %s-double matrix, pyrmap against "
                    "reticulate and against the seed's file approach." % fmt_n(n),
            "table": md, "commands": ["# %d repetitions of each, each a fresh process:" % a.reps] +
            [qrel(c[:-2]) + " <TAG> %d" % calls for c in cmds.values()],
            "pass": ok_all, "ratios": primary, "n": n, "raw": res}


def fmt_n(n: int) -> str:
    e = len(str(n)) - 1
    return "1e%d" % e if n == 10 ** e else str(n)


# ------------------------------------------------------------------ B4

def bench_b4(a):
    cmd = [RSCRIPT, os.path.join(HERE, "r", "b4.R"), str(a.b4_reps), str(a.b4_warmup), PY, HERE]
    r = run_watched(cmd)
    if "BENCH_OK" not in r["stdout"]:
        raise SystemExit("B4: no BENCH_OK\n%s\n%s" % (r["stdout"], r["stderr"]))
    it = {"pyrmap": [], "python_import_numpy": []}
    cpu = {"pyrmap": [], "python_import_numpy": []}
    bm = {}
    w = r["watch"]
    peaks = {k: 0 for k in it}
    for line in r["stdout"].splitlines():
        p = line.split()
        if p and p[0] == "BENCH_ITER":
            it[p[1]].append(float(p[4]))
            if len(p) > 5:
                cpu[p[1]].append(float(p[5]))
            peaks[p[1]] = max(peaks[p[1]], w.peak(float(p[2]), float(p[3]))[0])
        elif p and p[0] == "BENCH_MARKRESULT":
            bm[p[1]] = float(p[2])
    st = {k: stats(v) for k, v in it.items()}
    ratio = st["pyrmap"]["median"] / st["python_import_numpy"]["median"]
    ratio_bm = bm["pyrmap"] / bm["python_import_numpy"]
    target = 1.3
    rows = []
    for k, label in (("pyrmap", "`run_python(x, \"times2.py\")`, 1000 doubles"),
                     ("python_import_numpy", "`system2(python, c(\"-c\", \"'import numpy'\"))`")):
        s = st[k]
        rows.append([label, fmt_s(s["median"]), "%s / %s" % (fmt_s(s["min"]), fmt_s(s["max"])),
                     "%s – %s" % (fmt_s(s["q1"]), fmt_s(s["q3"])), s["n"], fmt_mb(peaks[k]),
                     fmt_s(statistics.median(cpu[k])) if cpu[k] else "—",
                     fmt_s(bm[k]), "%.2f×" % (s["median"] / st["python_import_numpy"]["median"]),
                     "≤ %.1f×" % target if k == "pyrmap" else "",
                     verdict(ratio <= target) if k == "pyrmap" else ""])
    md = table(["method", "median", "min / max", "IQR", "calls", "peak memory (R + children)",
                "CPU time (median)", "bench::mark median", "ratio to python -c import numpy", "target", "result"], rows)
    md += ("\n\nInside one R session: %d warm-up calls of each, then %d interleaved calls of each timed "
           "with `bench::hires_time()`; then `bench::mark()` of the same two (not interleaved) as a "
           "cross-check: ratio there %.2f×. `system2` goes through `/bin/sh -c`, so the competitor "
           "includes a shell start (about 1 ms). Peak memory: the largest total (R + children + "
           "/dev/shm) inside any one call's window. CPU time: `proc.time()` user + system of R and of its "
           "waited-for children, per call.\n" % (a.b4_warmup, a.b4_reps, ratio_bm))
    return {"id": "B4", "title": "B4 — `run_python` on 1000 doubles: fixed cost",
            "what": "Time of one small run_python() call against starting `python3 -c \"import numpy\"`.",
            "table": md, "commands": [qrel(cmd)], "pass": ratio <= target, "ratio": ratio,
            "ratio_bench_mark": ratio_bm, "raw": {"iters": it, "bench_mark": bm, "peaks": peaks}}


# ------------------------------------------------------------------ B9

def bench_b9(a):
    nrow = int(a.b9_nrow)
    calls = a.b9_calls
    methods = ["pyrmap", "pyrmap_pool", "pyrmap_numpy", "reticulate"]
    res = {m: [] for m in methods}
    cmds = {}
    for i in range(a.b9_reps):
        order = methods[i % len(methods):] + methods[:i % len(methods)]
        for m in order:
            cmd = [RSCRIPT, os.path.join(HERE, "r", "b9_one.R"), m, str(nrow), PY, HERE, str(calls)]
            cmds[m] = cmd
            res[m].append(run_calls("B9 %s" % m, cmd, calls)[1])
    med = statistics.median
    numeric_bytes = 8 * 10 * nrow
    factor_bytes = 4 * nrow
    # One extra copy of the data at the peak, the factor column excepted (its
    # codes are written into the input block and made into an R factor).
    allowance = numeric_bytes + 2 * factor_bytes
    st = {m: stats([c["time"] for rep in v for c in rep["calls"]]) for m, v in res.items()}
    # Above the set-up state (R with the frame; Python with pandas for
    # reticulate; the pool's worker): what the user needs beyond the data.
    # (Not above the total just before the call: that still holds what the
    # last call's dropped result held until R collects it, which pyrmap
    # collects at the start of the next call and R's own collector later.)
    added = {m: med([c["peak"] - c["setup"] for rep in v for c in rep["calls"]]) for m, v in res.items()}
    labels = {"pyrmap": "pyrmap `run_python(df, \"identity_frame.py\", fun = \"identity\")` (pandas.DataFrame)",
              "pyrmap_pool": "pyrmap, the same on a warm worker: `run_python(..., pool = pool)`, "
                             "`pool <- python_pool()` at set-up",
              "pyrmap_numpy": "pyrmap, the same with `pandas = FALSE` (dict of numpy arrays)",
              "reticulate": "reticulate `py_to_r(r_to_py(df))`"}
    rows = []
    for m in methods:
        s = st[m]
        cs = [c for rep in res[m] for c in rep["calls"]]
        rows.append([labels[m], fmt_s(s["median"]), "%s / %s" % (fmt_s(s["min"]), fmt_s(s["max"])),
                     "%s – %s" % (fmt_s(s["q1"]), fmt_s(s["q3"])), s["n"],
                     "%.2f s" % med([c["cpu"] for c in cs if c["cpu"] is not None]),
                     fmt_mb(med([c["peak"] for c in cs])), fmt_mb(added[m]),
                     "%.2f×" % (s["median"] / st["reticulate"]["median"])])
    md = table(["method", "median time", "min / max", "IQR", "calls", "CPU time (median)",
                "peak total memory", "of which added by the call", "ratio to reticulate"], rows)
    checks = []
    ok_all = True
    ratios = {}
    # The target is met by a way of calling pyrmap with pandas (one-shot or
    # the warm pool) and by the numpy-only call; every variant is shown.
    ok_pandas = False
    for m in ("pyrmap", "pyrmap_pool", "pyrmap_numpy"):
        ratio = st[m]["median"] / st["reticulate"]["median"]
        ratios[m] = ratio
        ok_t = ratio <= 0.2
        ok_m = added[m] <= allowance
        if m == "pyrmap_numpy":
            ok_all = ok_all and ok_t and ok_m
        else:
            ok_pandas = ok_pandas or (ok_t and ok_m)
        checks.append(["%s: time ≤ 0.2× reticulate" % m, "%.2f×" % ratio, verdict(ok_t)])
        checks.append(["%s: memory added ≤ one copy of the data (%s numeric + the factor twice)"
                       % (m, fmt_mb(numeric_bytes)), fmt_mb(added[m]), verdict(ok_m)])
    ok_all = ok_all and ok_pandas
    md += "\n\n" + table(["target", "measured", "result"], checks)
    md += ("\n\nData: a data.frame of %s rows, ten double columns (`runif`) and one factor column (26 "
           "levels), %s, made in the R process before anything is timed. Each repetition of each method "
           "is a fresh `Rscript` process (methods in rotating order) that makes %d calls back to back; "
           "after each call (outside the timed window) the result is checked against the input "
           "column by column (pyrmap: class, names, row names as stored and `identical()` columns, and "
           "`identical()` of the frames after the last call; reticulate, whose result carries pandas' "
           "index as row names: the columns' values and levels; `identical()` of two data.frames "
           "would expand both frames' automatic row names, 80 MB of garbage a user's call does not "
           "leave) and dropped with `rm()` (no `gc()`: R collects when it would). Set-up not timed (loading the package; for reticulate also starting Python "
           "and importing pandas, which favours reticulate; one-shot pyrmap starts Python and imports "
           "pandas or numpy inside every call; the pool's worker starts at set-up and imports pandas "
           "in its first call, which is timed). The pandas target is met when one way of calling "
           "pyrmap (one-shot or pool) meets both of its rows: "
           "%s. Time: `Sys.time()` around the call, inside R; CPU time: `proc.time()` user + system of R "
           "and its waited-for children. Peak total memory: R + its Python child + the call's /dev/shm "
           "files, sampled every 5 ms inside the call; \"added by the call\" is that peak minus the "
           "total once set-up was done (before the first call; a dropped result still counts until it is "
           "collected; the /dev/shm files counted include those a process holds open unmapped: the "
           "pool keeps the last input's segment for up to 2 s for the next input to be written into). "
           "The result of the identity is the input's own columns: pyrmap hands back the input's R "
           "vectors themselves (no copy back, no view).\n" % (
               fmt_n(nrow), fmt_mb(numeric_bytes + factor_bytes), calls,
               "; ".join("%s %s" % (m, fmt_s(med([rep["init"] for rep in res[m]]))) for m in methods)))
    return {"id": "B9", "title": "B9 — a data.frame of %s rows × 10 doubles + a factor through Python and back"
            % fmt_n(nrow),
            "what": "Time and peak memory of a data.frame round trip through an identity script, pyrmap "
                    "(pandas, and numpy only) against reticulate's `r_to_py`/`py_to_r`.",
            "table": md, "commands": ["# %d repetitions of each, each a fresh process:" % a.b9_reps] +
            [qrel(c) for c in cmds.values()],
            "pass": ok_all, "ratios": ratios, "added": added, "allowance": allowance, "nrow": nrow,
            "raw": res}


# ------------------------------------------------------------------ B7

def bench_b7(a):
    n = int(a.b7_n)
    cmd = [RSCRIPT, os.path.join(HERE, "r", "b7.R"), str(a.b7_reps), str(n), str(a.b7_large_reps),
           str(a.b7_shared_reps), PY, HERE]
    loop_cmd = [RSCRIPT, os.path.join(HERE, "r", "b7_loop.R"), str(a.b7_loop), PY, HERE]
    out = ""
    for c in (loop_cmd, cmd):
        r = run_watched(c)
        if "BENCH_OK" not in r["stdout"]:
            raise SystemExit("B7: no BENCH_OK\n%s\n%s" % (r["stdout"], r["stderr"]))
        out += r["stdout"]
    it, start, mem, left, loop = {}, {}, {}, [], None
    for line in out.splitlines():
        p = line.split()
        if not p:
            continue
        if p[0] == "BENCH_ITER":
            it.setdefault(p[1], {}).setdefault(p[2], []).append(float(p[3]))
        elif p[0] == "BENCH_START":
            start[p[1]] = float(p[2])
        elif p[0] == "BENCH_MEM":
            mem[p[1]] = float(p[2])
        elif p[0] == "BENCH_LOOP":
            loop = (int(p[1]), float(p[2]))
        elif p[0] == "BENCH_SHM":
            left += [x for x in p[1:] if x != "-"]
    small = {k: stats(v) for k, v in it["small"].items()}
    large = {k: stats(v) for k, v in it["large"].items()}
    shared = stats(it["shared"]["pool2"])
    r_small = small["pool"]["median"] / small["reticulate"]["median"]
    r_large = large["pool"]["median"] / large["one_shot"]["median"]
    growth_mb = (mem["after"] - mem["before"]) / 1024
    checks = [
        ("1000 doubles, `x * 2`: pool ≤ 0.5× reticulate", "%.2f×" % r_small, r_small <= 0.5),
        ("%s doubles: pool ≤ 1× one-shot `run_python()`" % fmt_n(n), "%.2f×" % r_large, r_large <= 1.0),
        ("%d small calls: R + workers grow ≤ 5 MB" % loop[0], "%+.1f MB" % growth_mb, growth_mb <= 5),
        ("nothing left in /dev/shm after `close(pool)`", ", ".join(left) or "nothing", not left),
        ("two 1-s scripts, `run_python_shared_data()` on 2 workers: about 1 s (≤ 1.3 s)",
         fmt_s(shared["median"]), shared["median"] <= 1.3),
    ]
    rows = []
    labels = {"pool": "`run_python(x, s, pool = pool)`",
              "reticulate": "`py_to_r(np$multiply(r_to_py(x), 2))`",
              "one_shot": "`run_python(x, s)` (one-shot)"}
    for case, st, base, what in (("small", small, "reticulate", "1000 doubles"),
                                 ("large", large, "one_shot", "%s doubles" % fmt_n(n))):
        for k, s in st.items():
            rows.append([what, labels[k], fmt_s(s["median"]), "%s / %s" % (fmt_s(s["min"]), fmt_s(s["max"])),
                         "%s – %s" % (fmt_s(s["q1"]), fmt_s(s["q3"])), s["n"],
                         "%.3f×" % (s["median"] / st[base]["median"])])
    rows.append(["two 1-s scripts", "`run_python_shared_data(..., pool = pool2)`", fmt_s(shared["median"]),
                 "%s / %s" % (fmt_s(shared["min"]), fmt_s(shared["max"])),
                 "%s – %s" % (fmt_s(shared["q1"]), fmt_s(shared["q3"])), shared["n"], ""])
    md = table(["data", "method", "median", "min / max", "IQR", "calls", "ratio (to reticulate / one-shot)"],
               rows)
    md += "\n\n" + table(["target", "measured", "result"], [[c[0], c[1], verdict(c[2])] for c in checks])
    md += ("\n\nOne R session, `s` = `bench/scripts/times2.py` (`x * 2`). Paid once and not in the ratios: "
           "starting the pool and its first call %s (numpy imported, script loaded); reticulate's "
           "`import(\"numpy\")` %s. Calls of a case are interleaved; no `gc()`, pause or warm-up "
           "between calls in any method. The one-shot small calls are fewer (each starts Python). "
           "Memory (`bench/r/b7_loop.R`, a fresh R session with only pyrmap loaded): RssAnon + RssShmem "
           "(heaps and mapped shared memory; not PSS or USS, which file-backed program text shifts as "
           "other processes start and stop) of R plus the pool's worker after the pool's first call "
           "and after %d more calls in a loop (%s in all). "
           "The shared case: a pool of 2 workers, each script sleeps 1 s.\n"
           % (fmt_s(start["pool_start_and_first_call"]), fmt_s(start["reticulate_import_numpy"]),
              loop[0], fmt_s(loop[1])))
    ok = all(c[2] for c in checks)
    return {"id": "B7", "title": "B7 — warm Python workers: `python_pool()`",
            "what": "Small calls on a warm pool against reticulate's in-process call, large calls against "
                    "one-shot `run_python()`, the memory of a long loop, and two scripts at once.",
            "table": md, "commands": [qrel(loop_cmd), qrel(cmd)], "pass": ok, "ratio": r_small,
            "large_ratio": r_large,
            "growth_mb": growth_mb, "shared": shared["median"], "raw": it}


# ------------------------------------------------------------------ B8

B8_LABELS = {
    "small": [("memApply", "`memApply(X, 2, sum, MAX.CORES = 2)`"),
              ("memApply_FUN.VALUE", "`memApply(X, 2, sum, MAX.CORES = 2, FUN.VALUE = 0)`"),
              ("parApply", "`parApply(cl, X, 2, sum)`, PSOCK cluster of 2"),
              ("mclapply", "`mclapply(seq_len(ncol(X)), function(j) sum(X[, j]), mc.cores = 2)`"),
              ("apply", "serial `apply(X, 2, sum)`")],
    "fine": [("memLapply", "`memLapply(L, function(el) el + 1, MAX.CORES = 2)`"),
             ("memLapply_FUN.VALUE", "`memLapply(L, function(el) el + 1, MAX.CORES = 2, FUN.VALUE = 0)`"),
             ("parLapply", "`parLapply(cl, L, function(el) el + 1)`, PSOCK cluster of 2"),
             ("mclapply", "`mclapply(L, function(el) el + 1, mc.cores = 2)`"),
             ("lapply", "serial `lapply(L, function(el) el + 1)`")],
}


def fmt_us(x: float) -> str:
    return "%.0f µs" % (x * 1e6) if x < 1e-3 else fmt_s(x)


def bench_b8(a):
    cmd = [RSCRIPT, os.path.join(HERE, "r", "b8.R"), str(a.b8_small_reps), str(a.b8_fine_reps),
           str(a.b8_fine_n), HERE]
    # Not watched: nothing samples memory while these short calls are timed.
    p = subprocess.run(cmd, capture_output=True, text=True)
    r = {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}
    if r["rc"] != 0 or "BENCH_OK" not in r["stdout"]:
        raise SystemExit("B8 failed (exit %s): %s\n%s\n%s" % (r["rc"], q(cmd), r["stdout"][-3000:],
                                                               r["stderr"][-4000:]))
    workers = []
    it, info = {}, {}
    for line in r["stdout"].splitlines():
        p = line.split()
        if p[:1] == ["BENCH_ITER"]:
            it.setdefault(p[1], {}).setdefault(p[2], []).append(float(p[3]))
        elif p[:1] == ["BENCH_INFO"] and len(p) >= 3:
            info[p[1]] = p[2]
        elif p[:1] == ["BENCH_PIDS"]:
            SEEN_PIDS.update(int(x) for x in p[2:])
            if p[1] != "master":
                workers += [int(x) for x in p[2:]]
    for pid in psswatch.alive_workers(workers):  # outlived its R session: report, then end it
        LEFT_WORKERS.append("%d (%s)" % (pid, psswatch.cmdline(pid)[:80]))
        try:
            os.kill(pid, 15)
        except OSError:
            pass
    st = {case: {m: stats(v) for m, v in ms.items()} for case, ms in it.items()}
    n = int(info.get("fine_n", a.b8_fine_n))
    med = lambda case, m: st[case][m]["median"]  # noqa: E731
    r_small = med("small", "memApply") / med("small", "parApply")
    r_fine = med("fine", "memLapply") / med("fine", "parLapply")
    r_serial = med("fine", "memLapply") / med("fine", "lapply")
    rows = []
    for case, what, per in (("small", "20 × 20 matrix, `sum` per column", 20), ("fine", "%s numbers, `el + 1`" % fmt_n(n), n)):
        base = "parApply" if case == "small" else "parLapply"
        serial = "apply" if case == "small" else "lapply"
        for m, label in B8_LABELS[case]:
            s = st[case][m]
            rows.append([what, label, fmt_us(s["median"]), "%.2f µs" % (s["median"] / per * 1e6),
                         "%s / %s" % (fmt_us(s["min"]), fmt_us(s["max"])),
                         "%s – %s" % (fmt_us(s["q1"]), fmt_us(s["q3"])), s["n"],
                         "%.2f×" % (s["median"] / med(case, base)), "%.2f×" % (s["median"] / med(case, serial))])
    md = table(["work", "method", "median per call", "per element", "min / max", "IQR", "calls",
                "ratio to parApply / parLapply", "ratio to serial"], rows)
    checks = [
        ("20 × 20 matrix: memApply ≤ 0.5× parApply", "%.2f×" % r_small, r_small <= 0.5),
        ("%s elements: memLapply ≤ 1× parLapply" % fmt_n(n), "%.2f×" % r_fine, r_fine <= 1.0),
        ("%s elements: memLapply ≤ 5× serial lapply (per element)" % fmt_n(n), "%.2f×" % r_serial, r_serial <= 5.0),
    ]
    md += "\n\n" + table(["target", "measured (ratio of medians)", "result"], [[c[0], c[1], verdict(c[2])] for c in checks])
    sf = st["small_forked"]
    forked = ", ".join("%s %s" % (m, fmt_us(sf[m]["median"])) for m in
                       ("memApply", "memApply_FUN.VALUE", "parApply", "apply", "mclapply")) + \
        " (memApply %.2f× parApply)" % (sf["memApply"]["median"] / sf["parApply"]["median"])
    md += ("\n\nOne R session, 2 workers for every parallel method: a PSOCK cluster (`makePSOCKcluster(2)`, "
           "made first, in %s) and pyrmap's own workers (`MAX.CORES = 2`, started by memApply's first "
           "call, which took %s and is counted among the timed calls). X = `matrix(runif(400), 20)`, L = "
           "`as.list(runif(%d))`. No warm-up calls: %d rounds (20 × 20) and %d rounds (list) of every "
           "method once, in an order that rotates from round to round; each call timed alone with "
           "`bench::hires_time()`; nothing between calls that a user would not do (no `gc()`, no pause). "
           "mclapply's rounds come after the others' in a block of their own: each of its calls forks "
           "the master and leaves its memory copy-on-write, so whatever runs next pays a page fault for "
           "every page it writes; interleaved, mclapply's cost lands on the next method. Measured in the "
           "same run with mclapply interleaved in every round (20 × 20, %d rounds): %s. "
           "Every result is checked against the serial one (`identical`), untimed. \"per element\" is the median time per call divided by the elements "
           "(20 columns; %s numbers). The `FUN.VALUE` rows write each result straight into a shared "
           "vector (the call returns a vector, not a list); they are printed beside, the targets use the "
           "list-returning calls.\n"
           % (fmt_s(float(info.get("psock_start", "nan"))), fmt_s(float(info.get("engine_start", "nan"))), n,
              a.b8_small_reps, a.b8_fine_reps, st["small_forked"]["apply"]["n"], forked, fmt_n(n)))
    ok = all(c[2] for c in checks)
    return {"id": "B8", "title": "B8 — the engine's fixed costs: small calls and fine-grained work",
            "what": "memApply on a 20 × 20 matrix against parApply, mclapply and apply; memLapply over %s "
                    "numbers against parLapply, mclapply and lapply; per call and per element, 2 workers."
                    % fmt_n(n),
            "table": md, "commands": [qrel(cmd)], "pass": ok, "ratio_small": r_small, "ratio_fine": r_fine,
            "ratio_serial": r_serial, "raw": it}


# ------------------------------------------------------------------ B10

def bench_b10(a):
    n, p, tasks = a.b6_nrow, a.b6_ncol, a.b6_tasks
    cmd = [RSCRIPT, os.path.join(HERE, "r", "b10.R"), str(a.b10_reps), str(n), str(p), str(tasks)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    res = {}
    for line in r.stdout.splitlines():
        f = line.split()
        if f[:1] == ["BENCH_SKIP"]:
            why = " ".join(f[1:])
            return {"id": "B10", "title": "B10 — memLapply across hosts (skipped)", "what": why,
                    "table": "Skipped: %s." % why, "commands": [qrel(cmd)], "pass": None, "skipped": why}
        if f[:1] == ["BENCH_B10"]:
            res[f[1]] = ([float(x) for x in f[2].split(",")], [float(x) for x in f[3].split(",")])
    if r.returncode != 0 or len(res) != 3:
        raise SystemExit("B10 failed (%d)\n%s\n%s" % (r.returncode, r.stdout, r.stderr))
    med = statistics.median
    base_t, base_b = med(res["export_parLapply"][0]), med(res["export_parLapply"][1])
    labels = {"memLapply": "`memLapply(idx, f, VARS = list(M = X), CLUSTER = cl)`",
              "memLapply_registered": "the same, X registered once and given by name (`VARS = \"M\"`)",
              "export_parLapply": "`clusterExport(cl, \"X\")` + `parLapply(cl, idx, f)`"}
    rows = []
    for m in ("memLapply", "memLapply_registered", "export_parLapply"):
        t, b = res[m]
        rows.append([labels[m], fmt_s(med(t)), "%s / %s" % (fmt_s(min(t)), fmt_s(max(t))),
                     "%.2f×" % (med(t) / base_t), fmt_mb(med(b)), "%.3f×" % (med(b) / base_b)])
    md = table(["method", "median time", "min / max", "time vs export + parLapply",
                "median bytes received by the workers", "bytes vs export + parLapply"], rows)
    rt, rb = med(res["memLapply"][0]) / base_t, med(res["memLapply"][1]) / base_b
    ok = rt <= 1.0 and rb <= 0.5
    md += "\n\n" + table(["target (memLapply with VARS = list(M = X))", "measured", "result"],
                          [["time ≤ 1× clusterExport + parLapply", "%.2f×" % rt, verdict(rt <= 1.0)],
                           ["bytes ≤ 0.5× clusterExport + parLapply", "%.3f×" % rb, verdict(rb <= 0.5)]])
    md += ("\n\nThe registered variable's first call sends the copy to h2: %s, %s."
           % (fmt_s(res["memLapply_registered"][0][0]), fmt_mb(res["memLapply_registered"][1][0])))
    return {"id": "B10", "title": "B10 — memLapply across 2 simulated hosts × 2 workers, the whole %d × %d matrix "
                                  "as side data" % (n, p),
            "what": "The master on host h1; %d tasks; %d rounds, each method once per round; bytes from the "
                    "workers' sockets (`ss -tinp`). No gc(), no warm-up." % (tasks, a.b10_reps),
            "table": md, "commands": [qrel(cmd)], "pass": ok, "time_ratio": rt, "bytes_ratio": rb}


# ------------------------------------------------------------------ B5, B6 (shared)

LEFT_WORKERS: list = []  # worker processes found alive after their R session ended


def run_par(name, cmd, methods, groups, poll_ms, time_reps, mem_reps):
    """Runs a parallel benchmark's R script (bench/r/par_common.R protocol)
    under psswatch: rounds 1..time_reps are measured for time (nothing reads
    memory), the next mem_reps for memory. Returns ({method: [call]}, notes,
    info, watch); a call of a memory round carries the memory figures, the
    others only times. groups: method -> the group whose workers it uses."""
    r = psswatch.run(cmd, poll_ms=poll_ms, sample_reps=range(time_reps + 1, time_reps + mem_reps + 1))
    w = r["watch"]
    SEEN_PIDS.update(w.all_pids)
    workers = [p for ps in w.groups.values() for p in ps]
    for pid in psswatch.alive_workers(workers):  # outlived its master: report, then end it
        cl = psswatch.cmdline(pid)
        LEFT_WORKERS.append("%d (%s)" % (pid, cl[:80]))
        if "workRSOCK" in cl:
            try:
                os.kill(pid, 15)
            except OSError:
                pass
    if r["rc"] != 0 or "BENCH_OK" not in r["stdout"]:
        raise SystemExit("%s failed (exit %s): %s\n%s\n%s" % (name, r["rc"], q(cmd), r["stdout"][-3000:],
                                                              r["stderr"][-4000:]))
    calls = {m: [] for m in methods}
    notes, info = [], {}
    for line in r["stdout"].splitlines():
        p = line.split()
        if p[:1] == ["BENCH_NOTE"]:
            notes.append(line.split(None, 1)[1])
        if p[:1] == ["BENCH_INFO"] and len(p) >= 3:
            info[p[1]] = float(p[2])
        if p[:1] != ["BENCH_ITER"]:
            continue
        m, rep, t0, t1 = p[1], int(p[2]), float(p[3]), float(p[4])
        cm, cc, cw = float(p[5]), float(p[6]), float(p[7])
        c = {"rep": rep, "time": t1 - t0, "cpu_master": cm, "cpu_children": cc, "cpu_workers": cw,
             "mem": rep > time_reps}
        if c["mem"]:
            win = w.window(groups[m], t0, t1)
            if win is None:
                raise SystemExit("%s: no memory sample for %s, round %d" % (name, m, rep))
            pk = win["peak"]
            c.update(cpu_forks=win["fork_cpu"], cpu=cm + cw + max(cc, win["fork_cpu"]),
                     peak=pk["pss"], peak_master=pk["master"], peak_workers=pk["workers"],
                     peak_pss_shmem=pk["pss_shmem"], peak_alloc=win["peak_alloc"],
                     base=win["base"], base_gap=win["base_gap"], samples=win["n"], approx=win["approx"])
        calls[m].append(c)
    return calls, notes, info, w


def timed(calls, m):
    return [c for c in calls[m] if not c["mem"]]


def sampled(calls, m):
    return [c for c in calls[m] if c["mem"]]


def paired_ratios(calls, a, b, key="time", mem=False):
    """Ratio a/b of the calls made in the same round, one per round (time
    rounds, or memory rounds with mem=True)."""
    pick = sampled if mem else timed
    bb = {c["rep"]: c[key] for c in pick(calls, b)}
    return [c[key] / bb[c["rep"]] for c in pick(calls, a) if c["rep"] in bb and bb[c["rep"]] > 0]


def par_table(calls, labels, comps):
    """The side-by-side table of B5/B6. comps: [(method, label)] to give ratios against."""
    med = statistics.median
    st = {m: stats([c["time"] for c in timed(calls, m)]) for m in calls}
    pk = {m: stats([c["peak"] for c in sampled(calls, m)]) for m in calls}
    rows = []
    for m, label in labels:
        s, k, v = st[m], pk[m], sampled(calls, m)
        first = [c["time"] for c in calls[m] if c["rep"] == 1]
        base = [c["peak"] - c["base"] for c in v if c["base"] is not None]
        rows.append([label, fmt_s(s["median"]), fmt_s(first[0]) if first else "—",
                     "%s / %s" % (fmt_s(s["min"]), fmt_s(s["max"])),
                     "%s – %s" % (fmt_s(s["q1"]), fmt_s(s["q3"])), s["n"],
                     "%s (%d)" % (fmt_s(med([c["time"] for c in v])), len(v)),
                     "%.2f s" % med([c["cpu"] for c in v]),
                     "%s (%s – %s)" % (fmt_mb(k["median"]), fmt_mb(k["min"]), fmt_mb(k["max"])),
                     "%s (%d)" % (fmt_mb(med(base)), len(base)) if base else "—",
                     "%s / %s" % (fmt_mb(med([c["peak_master"] for c in v])),
                                  fmt_mb(med([c["peak_workers"] for c in v]))),
                     fmt_mb(med([c["peak_alloc"] for c in v]))]
                    + ["%.2f× / %.3f×" % (s["median"] / st[cm]["median"], k["median"] / pk[cm]["median"])
                       for cm, _ in comps])
    return table(["method", "median time", "first call (in the median)", "min / max", "IQR", "calls",
                  "median time while memory was sampled (calls)", "CPU time (median)",
                  "peak PSS, summed (median; min – max)", "peak − PSS before the call (calls)",
                  "at the peak: master / workers", "peak with /dev/shm by allocation"]
                 + ["time / peak PSS ratio to %s" % cl for _, cl in comps], rows)


def verdict_rows(checks):
    """checks: [(label, ratio of medians, target, per-round ratios, decimals)]."""
    med = statistics.median
    rows, ok_all = [], True
    for label, ratio, tgt, pr, dec in checks:
        ok = ratio <= tgt
        ok_all = ok_all and ok
        f = "%%.%df×" % dec
        rows.append([label, f % ratio, (f + " (" + f + " – " + f + ")") % (med(pr), min(pr), max(pr)),
                     verdict(ok)])
    return table(["target", "measured (ratio of medians)", "per round: median (min – max)", "result"],
                 rows), ok_all


def base_gap(calls):
    """Median distance (s) between a memory-round call's start and the end of
    the sample its "PSS before the call" comes from, or None."""
    g = [c["base_gap"] for m in calls for c in sampled(calls, m) if c["base_gap"] is not None]
    return statistics.median(g) if g else None


def par_setup(info, workers):
    """The sentence on set-up and first calls (BENCH_INFO of par_common.R)."""
    text = ("The calls are written as a user writes them: the PSOCK cluster is made first, "
            "`makePSOCKcluster(2)` (set-up a user does once; not among the timed calls, it took %s); "
            "%s needs nothing beforehand: its first call starts pyrmap's own workers (MAX.CORES = 2) and "
            "is timed like any other (it took %s; column \"first call\"). No warm-up calls, no pause, no "
            "`gc()` anywhere: the methods run back to back, as a user's loop runs them. "
            % (fmt_s(info.get("psock_start", float("nan"))), workers, fmt_s(info.get("engine_start", float("nan")))))
    text += ("One step runs between calls that a user would not need without the competitors side by side: "
             "before each PSOCK call, untimed, R waits until the forks of an earlier mclapply call have "
             "exited (at once when none is left; here it had to wait %d times, %s at the longest). R 4.2's "
             "socket connections give up when select() is interrupted (EINTR), so the SIGCHLD of a fork "
             "exiting while the master sends a large object to a PSOCK worker ends the PSOCK call with "
             "\"error writing to connection\" (see `wait_forks()` in bench/r/par_common.R); a user who "
             "runs a PSOCK call right after mclapply meets this now and then. "
             % (int(info.get("fork_waits", 0)), fmt_s(info.get("fork_wait_max", 0.0))))
    return text


def par_notes(w, poll_ms, mem_reps, time_reps, notes, calls):
    c = w.cost()
    gap = base_gap(calls)
    text = ("Rounds: the first %d (every method once each, in rotating order; the session's first calls "
            "among them) measure time, the next %d memory; the time columns and the time verdicts use the "
            "time rounds only, during which nothing reads the processes' memory (the watcher's reads slow "
            "the measured processes down, unevenly: compare \"median time while memory was sampled\"). "
            % (time_reps, mem_reps))
    text += ("Memory: summed PSS (`Pss` of `/proc/PID/smaps_rollup`) of the master R process, the workers "
             "of the cluster the call uses (PSOCK workers are not children of the master: the script prints "
             "their pids, from `clusterCall(cl, Sys.getpid)`; memApply's own workers are, and are counted "
             "for memApply's calls alone, from `pyrmap:::.engine_info()`) and the master's other "
             "descendants started during the call (mclapply's forks; a fork's start time decides which call "
             "it belongs to). Sampled by the harness (a separate process) without a break through the "
             "memory rounds, every process each time, sleeping %g ms between samples; the peak is the "
             "largest sample inside the call's window (a lower bound: a spike shorter than the interval can "
             "be missed). \"PSS before the call\" is the master's and the call's workers' PSS in the last "
             "sample that ended before the call began while no fork ran (a fork shares the master's pages, "
             "which lowers the master's PSS): with no pause between calls, that sample is one of the "
             "previous call's last, or, after an mclapply call, one from just before it (%s before the "
             "call's start, median), so it may include memory the master still held for that call (R frees "
             "nothing until it next collects); the first call of the memory rounds has none. "
             % (poll_ms, fmt_s(gap) if gap is not None else "—"))
    text += ("PSS does not see /dev/shm pages that no process of the group maps (pyrmap writes "
             "the shared copy with `pwrite`, unmapped in the master; workers map it as they touch "
             "it): the column \"with /dev/shm by allocation\" counts instead Σ(Pss − Pss_Shmem) + the "
             "allocated size of every /dev/shm file mapped by the processes counted or registered by the "
             "master, each once. The verdicts use summed PSS. The master's PSS before a call (X, R itself, "
             "and what R's heap kept of memory freed by earlier calls) is the same for every method of the "
             "session; \"peak − PSS before the call\" is what the call itself adds. ")
    if c:
        text += ("Reading smaps_rollup walks page tables (~13–19 µs per resident MB here) under the "
                 "process's mmap lock (a fork() or mmap() in it can wait for a mapping's walk), so "
                 "the sampling rate is kept modest: a sample (every process) took %.1f ms "
                 "(median; %.1f ms CPU of the watcher), the median interval between samples was %.1f "
                 "ms, %d samples in all. " % (c[0] * 1e3, c[1] * 1e3, c[2] * 1e3, c[3]))
    text += ("CPU time (memory rounds): user + system of the master (`proc.time()`), of the cluster's "
             "workers (`/proc/PID/stat` of each worker, read by the master just before and after the call) "
             "and of mclapply's forks (the larger of `proc.time()`'s children time, which misses forks not "
             "yet reaped, and the last CPU time the watcher saw of each fork). Time: `Sys.time()` around "
             "the call, in the master. ")
    if notes:
        text += "Checks: " + "; ".join(notes) + "."
    return text


# ------------------------------------------------------------------ B5

def bench_b5(a):
    n, p = a.b5_nrow, a.b5_ncol
    mem, reps = a.b5_mem_reps, a.b5_reps
    cmd = [RSCRIPT, os.path.join(HERE, "r", "b5.R"), str(mem + reps), str(n), str(p), HERE]
    methods = ["memApply", "parApply", "mclapply", "apply"]
    groups = {"memApply": "pyrmap", "parApply": "psock", "mclapply": "fork", "apply": "none"}
    calls, notes, info, w = run_par("B5", cmd, methods, groups, a.pss_ms, reps, mem)
    med = statistics.median
    t = {m: med([c["time"] for c in timed(calls, m)]) for m in methods}
    labels = [("memApply", "`memApply(X, 2, function(v, y) cor(v, y), VARS = list(y = y), MAX.CORES = 2)`"),
              ("parApply", "`parApply(cl, X, 2, function(v, y) cor(v, y), y = y)`, PSOCK cluster of 2"),
              ("mclapply", "`mclapply(seq_len(ncol(X)), function(j) cor(X[, j], y), mc.cores = 2)`"),
              ("apply", "serial `apply(X, 2, function(v, y) cor(v, y), y = y)` (reference)")]
    md = par_table(calls, labels, [("parApply", "parApply"), ("mclapply", "mclapply"), ("apply", "serial apply")])
    ratios = {comp: t["memApply"] / t[comp] for comp in ("parApply", "mclapply")}
    vt, ok_all = verdict_rows([
        ("memApply time ≤ 0.7× parApply's", ratios["parApply"], 0.7,
         paired_ratios(calls, "memApply", "parApply"), 2),
        ("memApply time ≤ 1.3× mclapply's", ratios["mclapply"], 1.3,
         paired_ratios(calls, "memApply", "mclapply"), 2)])
    md += "\n\n" + vt
    md += ("\n\nWorkload: X = `matrix(rnorm(n * p), n, p)` with n = %d, p = %d (%.0f MB), y = `rnorm(n)`, "
           "made before anything is timed, in one R session. %s%d rounds, the four methods in an order that "
           "rotates from round to round. The timed part is the call alone (memApply's includes copying X "
           "and y into shared memory and removing them; parApply's, splitting X into columns and sending "
           "them; mclapply's, forking).\n\n%s\n"
           % (n, p, 8 * n * p / 1e6, par_setup(info, "memApply"), mem + reps,
              par_notes(w, a.pss_ms, mem, reps, notes, calls)))
    return {"id": "B5", "title": "B5 — memApply, per-column `cor(v, y)` on a %d × %d matrix" % (n, p),
            "what": "The vignette's workload: time and peak memory (summed PSS of master and workers) of "
                    "memApply against parApply on a PSOCK cluster, mclapply and serial apply, 2 workers.",
            "table": md, "commands": ["# %d time rounds, then %d memory rounds, methods interleaved, in one "
                                      "R session (memory sampled in the last %d):" % (reps, mem, mem), qrel(cmd)],
            "pass": ok_all, "ratios": ratios, "info": info, "raw": calls}


# ------------------------------------------------------------------ B6

def bench_b6(a):
    n, p, tasks = a.b6_nrow, a.b6_ncol, a.b6_tasks
    mem, reps = a.b6_mem_reps, a.b6_reps
    cmd = [RSCRIPT, os.path.join(HERE, "r", "b6.R"), str(mem + reps), str(n), str(p), str(tasks), HERE]
    methods = ["memLapply", "mclapply", "export_parLapply"]
    groups = {"memLapply": "pyrmap", "mclapply": "fork", "export_parLapply": "psock"}
    calls, notes, info, w = run_par("B6", cmd, methods, groups, a.b6_pss_ms, reps, mem)
    med = statistics.median
    t = {m: med([c["time"] for c in timed(calls, m)]) for m in methods}
    pk = {m: med([c["peak"] for c in sampled(calls, m)]) for m in methods}
    alloc = {m: med([c["peak_alloc"] for c in sampled(calls, m)]) for m in methods}
    labels = [("memLapply", "`memLapply(1:%d, function(j, M) sum(abs(cor(M[, j], M))), VARS = list(M = X), "
                            "MAX.CORES = 2)`" % tasks),
              ("mclapply", "`mclapply(1:%d, function(j) sum(abs(cor(X[, j], X))), mc.cores = 2)`" % tasks),
              ("export_parLapply", "`clusterExport(cl, \"X\")` + `parLapply(cl, 1:%d, function(j) "
                                   "sum(abs(cor(X[, j], X))))`, PSOCK cluster of 2" % tasks)]
    md = par_table(calls, labels, [("mclapply", "mclapply"), ("export_parLapply", "export + parLapply")])
    time_ratio = t["memLapply"] / t["mclapply"]
    mem_ratio = pk["memLapply"] / pk["export_parLapply"]
    vt, ok_all = verdict_rows([
        ("memLapply time ≤ 1.15× mclapply's", time_ratio, 1.15,
         paired_ratios(calls, "memLapply", "mclapply"), 2),
        ("memLapply peak memory (summed PSS) ≤ 0.8× clusterExport + parLapply's", mem_ratio, 0.8,
         paired_ratios(calls, "memLapply", "export_parLapply", "peak", mem=True), 3)])
    md += "\n\n" + vt
    md += ("\n\nMemory target: %.1f MB against a limit of 0.8 × %.1f MB = %.1f MB. With /dev/shm counted by "
           "allocation instead of PSS, the memory ratio is %.3f×.\n"
           % (pk["memLapply"] / 1e6, pk["export_parLapply"] / 1e6, 0.8 * pk["export_parLapply"] / 1e6,
              alloc["memLapply"] / alloc["export_parLapply"]))
    md += ("\nWorkload: X = `matrix(rnorm(n * p), n, p)` with n = %d, p = %d (%.0f MB), made before anything "
           "is timed, in one R session; task j computes `sum(abs(cor(X[, j], X)))` (the whole matrix is "
           "every task's side data), j = 1..%d. %s%d rounds, the three methods in rotating order. Timed "
           "part: memLapply — the call (copying X and the task list into shared memory, the workers "
           "mapping them, removing it); mclapply — the call (forking included); PSOCK — "
           "`clusterExport(cl, \"X\")` **and** `parLapply`, so the transfer of X to both workers, which that "
           "approach pays on every call, is in its time and memory. After each PSOCK call, untimed, "
           "`clusterEvalQ(cl, rm(X))` drops the workers' copies (R frees them when it next collects).\n\n%s\n"
           % (n, p, 8 * n * p / 1e6, tasks, par_setup(info, "memLapply"), mem + reps,
              par_notes(w, a.b6_pss_ms, mem, reps, notes, calls)))
    return {"id": "B6", "title": "B6 — memLapply with the whole %d × %d matrix as every task's side data"
                                 % (n, p),
            "what": "%d tasks that each correlate one column with the whole matrix: memLapply (matrix "
                    "shared) against mclapply (forked, copy-on-write) and clusterExport + parLapply (a "
                    "copy per worker), 2 workers; time and peak summed PSS." % tasks,
            "table": md, "commands": ["# %d time rounds, then %d memory rounds, methods interleaved, in one "
                                      "R session (memory sampled in the last %d):" % (reps, mem, mem), qrel(cmd)],
            "pass": ok_all, "time_ratio": time_ratio, "mem_ratio": mem_ratio, "info": info, "raw": calls}


# ------------------------------------------------------------------ report

def versions():
    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip()
        except Exception:
            return "?"
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) * 1024
    rev = out(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    dirty = out(["git", "-C", REPO, "status", "--porcelain", "--", "src", "cli", "python", "r-pkg"])
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(), "cpu": cpu, "memory": "%.0f GiB" % (mem / 2**30),
        "kernel": platform.release(),
        "thp": open("/sys/kernel/mm/transparent_hugepage/enabled").read().strip()
        if os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled") else "?",
        "python": out([PY, "-c", "import sys, numpy; print(sys.version.split()[0], 'numpy', numpy.__version__)"]),
        "R": out([RSCRIPT, "-e", "cat(R.version.string, 'reticulate', format(packageVersion('reticulate')),"
                  " 'bench', format(packageVersion('bench')))"]),
        "hyperfine": out(["hyperfine", "--version"]),
        "pyrmap": out([PYRMAP, "--version"]),
        "commit": rev + (" (with uncommitted changes in src/cli/python/r-pkg)" if dirty else ""),
    }


def write_results(results, info, args, t_total, load_before, load_after):
    lines = ["# pyrmap benchmark results", "",
             "Written by `bench/run.sh` (bench/bench.py); see bench/README.md for what each "
             "benchmark measures. Times are medians over repetitions; on this shared 2-core machine "
             "single runs vary a lot, so compare medians measured in the same run only.", "",
             "| | |", "|---|---|",
             "| date | %s |" % info["date"],
             "| machine | %s cores (%s), %s RAM, Linux %s, THP %s |" % (
                 info["cores"], info["cpu"], info["memory"], info["kernel"], info["thp"]),
             "| load average before / after | %s / %s |" % (load_before, load_after),
             "| software | Python %s; %s; %s |" % (info["python"], info["R"], info["hyperfine"]),
             "| pyrmap | %s, commit %s |" % (info["pyrmap"], info["commit"]),
             "| invocation | `bench/run.sh %s` (%.0f s) |" % (" ".join(args), t_total),
             "| environment | `PYRMAP_PYTHON=%s R_LIBS=%s` |" % (PY, rel(os.environ.get("R_LIBS", "?"))),
             "", "## Summary", "",
             table(["benchmark", "target", "measured", "result"], [summary_row(r) for r in results]), ""]
    for r in results:
        lines += ["## " + r["title"], "", r["what"], "", r["table"], "", "Commands (from the repository root):",
                  "", "```sh"] + r["commands"] + ["```", ""]
    text = "\n".join(lines)
    with open(os.path.join(HERE, "RESULTS.md"), "w") as f:
        f.write(text)
    return text


def summary_row(r):
    if r["id"] == "B1":
        return ["B1 `pyrmap run` trivial script", "≤ 1.2× `python3 -c \"import numpy\"`",
                "%.2f×" % r["ratio"], verdict(r["pass"])]
    if r["id"] == "B2":
        return ["B2 `pyrmap run` %s float64 .npy → .npy" % fmt_n(r["n"]),
                "peak ≤ numpy process's peak + %.0f MB" % (r["allowance"] / 1e6),
                "%+.0f MB" % (r["extra_bytes"] / 1e6), verdict(r["pass"])]
    if r["id"] == "B3":
        rr = r["ratios"]
        return ["B3 R ↔ Python %s doubles" % fmt_n(r["n"]),
                "≤ 0.5× reticulate, ≤ 0.25× file approach (first call; steady state)",
                "reticulate %s; file %s" % (", ".join("%.2f×" % x for x in rr["reticulate"]),
                                            ", ".join("%.2f×" % x for x in rr["file"])),
                verdict(r["pass"])]
    if r["id"] == "B5":
        return ["B5 memApply, per-column `cor` (A)", "time ≤ 0.7× parApply, ≤ 1.3× mclapply",
                "%.2f×, %.2f×" % (r["ratios"]["parApply"], r["ratios"]["mclapply"]), verdict(r["pass"])]
    if r["id"] == "B7":
        return ["B7 warm pool: 1000 doubles; %s doubles; 10000-call loop; two 1-s scripts" % "1e8",
                "≤ 0.5× reticulate; ≤ 1× one-shot; ≤ 5 MB growth; ≈ 1 s",
                "%.2f×; %.2f×; %+.1f MB; %s" % (r["ratio"], r["large_ratio"], r["growth_mb"],
                                                fmt_s(r["shared"])), verdict(r["pass"])]
    if r["id"] == "B8":
        return ["B8 engine fixed costs: 20 × 20 memApply; 20 000-element memLapply",
                "≤ 0.5× parApply; ≤ 1× parLapply, ≤ 5× lapply",
                "%.2f×; %.2f×, %.2f×" % (r["ratio_small"], r["ratio_fine"], r["ratio_serial"]), verdict(r["pass"])]
    if r["id"] == "B6":
        return ["B6 memLapply, whole matrix as side data (B)",
                "time ≤ 1.15× mclapply; peak summed PSS ≤ 0.8× clusterExport + parLapply",
                "%.2f×; %.3f×" % (r["time_ratio"], r["mem_ratio"]), verdict(r["pass"])]
    if r["id"] == "B10":
        if r.get("skipped"):
            return ["B10 memLapply across hosts", "time ≤ 1×, bytes ≤ 0.5× clusterExport + parLapply",
                    "skipped: " + r["skipped"], "—"]
        return ["B10 memLapply across 2 hosts × 2 workers (B6 workload)",
                "time ≤ 1×, bytes ≤ 0.5× clusterExport + parLapply",
                "%.2f×; %.3f×" % (r["time_ratio"], r["bytes_ratio"]), verdict(r["pass"])]
    if r["id"] == "B9":
        return ["B9 data.frame %s rows × 11 columns R → pandas → R" % fmt_n(r["nrow"]),
                "≤ 0.2× reticulate; memory added ≤ one copy of the data",
                "one-shot %.2f×, pool %.2f×, numpy only %.2f×; %s, %s, %s" % (
                    r["ratios"]["pyrmap"], r["ratios"]["pyrmap_pool"], r["ratios"]["pyrmap_numpy"],
                    fmt_mb(r["added"]["pyrmap"]), fmt_mb(r["added"]["pyrmap_pool"]),
                    fmt_mb(r["added"]["pyrmap_numpy"])), verdict(r["pass"])]
    return ["B4 `run_python` 1000 doubles", "≤ 1.3× `python3 -c \"import numpy\"`",
            "%.2f× (bench::mark: %.2f×)" % (r["ratio"], r["ratio_bench_mark"]), verdict(r["pass"])]


def page_owner(path):
    """The owner pid recorded in a pyrmap page's header (registerVariables), or None."""
    try:
        with open(path, "rb") as f:
            h = f.read(24)
    except OSError:
        return None
    if len(h) < 24 or h[:8] != psswatch.PAGE_MAGIC:
        return None
    return int.from_bytes(h[16:24], "little", signed=True)


def check_shm():
    """Removes and reports anything the measured processes left in /dev/shm:
    segments named after one of their pids, the file method's files, and
    registry pages (pyrmap-<uid>-ns-...) whose header names one of them as
    owner."""
    left = []
    for name in os.listdir("/dev/shm"):
        mine = name.startswith(SHM_TAG) or any(
            name.startswith("pyrmap-%d-%d-" % (UID, p)) for p in SEEN_PIDS) or (
            name.startswith(psswatch.PAGE_PREFIX) and page_owner(os.path.join("/dev/shm", name)) in SEEN_PIDS)
        if mine:
            left.append(name)
            drop_file(os.path.join("/dev/shm", name))
    return left


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="B1,B2,B3,B4,B5,B6,B7,B8,B9,B10", help="comma-separated subset of B1,...,B10")
    ap.add_argument("--n", type=float, default=1e8, help="elements for B2/B3 (default 1e8)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per method for B2/B3 (default 5)")
    ap.add_argument("--mem-reps", type=int, default=3, help="B1: watched runs per command for memory")
    ap.add_argument("--b1-rounds", type=int, default=6)
    ap.add_argument("--b1-runs", type=int, default=10)
    ap.add_argument("--b1-warmup", type=int, default=3)
    ap.add_argument("--b3-calls", type=int, default=3, help="B3: calls per fresh R process")
    ap.add_argument("--b4-reps", type=int, default=40)
    ap.add_argument("--b4-warmup", type=int, default=5)
    ap.add_argument("--b5-reps", type=int, default=16, help="B5: time rounds (each method once per round)")
    ap.add_argument("--b5-mem-reps", type=int, default=4, help="B5: memory rounds, after the time rounds")
    ap.add_argument("--b5-nrow", type=int, default=10000)
    ap.add_argument("--b5-ncol", type=int, default=2000)
    ap.add_argument("--b6-reps", type=int, default=6, help="B6: time rounds (each method once per round)")
    ap.add_argument("--b6-mem-reps", type=int, default=3, help="B6: memory rounds, after the time rounds")
    ap.add_argument("--b6-nrow", type=int, default=10000)
    ap.add_argument("--b6-ncol", type=int, default=2000)
    ap.add_argument("--b6-tasks", type=int, default=40)
    ap.add_argument("--pss-ms", type=float, default=20.0,
                    help="B5: pause between PSS samples, ms (default 20)")
    ap.add_argument("--b6-pss-ms", type=float, default=50.0,
                    help="B6: pause between PSS samples, ms (default 50: its calls last seconds and "
                         "its processes are large, so a sample costs more)")
    ap.add_argument("--b7-reps", type=int, default=400, help="B7: small calls per method")
    ap.add_argument("--b7-n", type=float, default=1e8, help="B7: elements of the large case")
    ap.add_argument("--b7-large-reps", type=int, default=5)
    ap.add_argument("--b7-loop", type=int, default=10000, help="B7: calls of the memory loop")
    ap.add_argument("--b7-shared-reps", type=int, default=5)
    ap.add_argument("--b8-small-reps", type=int, default=300, help="B8: rounds of the 20 × 20 calls")
    ap.add_argument("--b8-fine-reps", type=int, default=20, help="B8: rounds of the list calls")
    ap.add_argument("--b8-fine-n", type=int, default=20000, help="B8: elements of the list")
    ap.add_argument("--b9-nrow", type=float, default=1e7, help="B9: rows of the data.frame")
    ap.add_argument("--b9-reps", type=int, default=3, help="B9: fresh processes per method")
    ap.add_argument("--b9-calls", type=int, default=3, help="B9: calls per process")
    ap.add_argument("--b10-reps", type=int, default=5, help="B10: rounds (each method once per round)")
    ap.add_argument("--quick", action="store_true", help="small n and few repetitions (a smoke test)")
    a = ap.parse_args()
    if a.quick:
        a.n, a.reps, a.mem_reps, a.b1_rounds, a.b1_runs, a.b4_reps, a.b3_calls = 1e6, 2, 1, 2, 3, 6, 2
        a.b5_reps, a.b5_mem_reps, a.b5_nrow, a.b5_ncol = 4, 4, 2000, 200
        a.b6_reps, a.b6_mem_reps, a.b6_nrow, a.b6_ncol, a.b6_tasks = 3, 3, 2000, 200, 8
        a.b7_reps, a.b7_n, a.b7_large_reps, a.b7_loop, a.b7_shared_reps = 40, 1e6, 2, 1000, 2
        a.b8_small_reps, a.b8_fine_reps = 30, 3
        a.b9_nrow, a.b9_reps, a.b9_calls = 1e5, 1, 2
        a.b10_reps = 2
    for opt in ("b5_reps", "b5_mem_reps", "b6_reps", "b6_mem_reps", "pss_ms", "b6_pss_ms"):
        if getattr(a, opt) <= 0:
            ap.error("--%s must be positive" % opt.replace("_", "-"))
    os.makedirs(OUT, exist_ok=True)
    for tool, path in (("pyrmap", PYRMAP), ("python", PY)):
        if not os.access(path, os.X_OK):
            raise SystemExit("%s not found at %s (run `make cli`, set PYRMAP_PYTHON)" % (tool, path))
    which = [w.strip().upper() for w in a.only.split(",") if w.strip()]
    fns = {"B1": bench_b1, "B2": bench_b2, "B3": bench_b3, "B4": bench_b4, "B5": bench_b5, "B6": bench_b6,
           "B7": bench_b7, "B8": bench_b8, "B9": bench_b9, "B10": bench_b10}
    load_before = loadavg()
    t0 = time.time()
    results = []
    try:
        for w in which:
            print("== %s (load %s) ..." % (w, loadavg()), flush=True)
            r = fns[w](a)
            results.append(r)
            print(r["table"], flush=True)
    finally:
        left = check_shm()
        if left:
            print("warning: removed what the benchmarks left in /dev/shm: %s" % ", ".join(left))
        if LEFT_WORKERS:
            print("warning: worker processes outlived their R session (ended): %s" % ", ".join(LEFT_WORKERS))
    info = versions()
    text = write_results(results, info, sys.argv[1:], time.time() - t0, load_before, loadavg())
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump({"info": info, "results": results, "shm_left": left, "workers_left": LEFT_WORKERS},
                  f, indent=1, default=str)
    print("\n" + text.split("## Summary", 1)[1].split("##", 1)[0].strip())
    print("\nwritten: %s" % rel(os.path.join(HERE, "RESULTS.md")))
    if left or LEFT_WORKERS:
        return 1
    return 0 if all(r["pass"] is not False for r in results) else 2


if __name__ == "__main__":
    sys.exit(main())
