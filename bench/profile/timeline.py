"""Where the time of a large pyrmap call goes: a condensed strace timeline.

    python3 bench/profile/timeline.py [--min-bytes N] -- CMD...

Runs CMD under `strace -f --seccomp-bpf -T -ttt` for the system calls that
mark the phases of a call (segment creation, posix_fallocate, pwrite/sendfile
of payloads, the ready byte, the interpreter's exec and exit, large mmap and
munmap, unlink, and the BENCH_MARK lines a benchmark prints), then prints
them relative to the first "BENCH_MARK start" (or to the first event), with
the time spent inside each call. Consecutive pwrite64/sendfile calls of one
process on one descriptor are merged into one line. Examples:

    R_LIBS=build/Rlib python3 bench/profile/timeline.py -- \
        Rscript bench/r/b3_one.R pyrmap 1e8 10000 /usr/bin/python3 bench tag
    python3 bench/profile/timeline.py -- \
        build/pyrmap run bench/scripts/times2.py -i bench/out/b2_in_100000000.npy -o /tmp/o.npy
"""
import re
import subprocess
import sys
import tempfile

CALLS = ("execve,exit_group,openat,unlink,fallocate,pwrite64,sendfile,sendto,write,"
         "mmap,munmap,wait4,waitid,ftruncate")
EV = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\w+)(.*?)(?:<(\d+\.\d+)>)?$")


def parse(text):
    """Joins strace's <unfinished ...>/<... resumed> pairs; yields events."""
    pending = {}
    for line in text.splitlines():
        if "<unfinished ...>" in line:
            m = re.match(r"^(\d+)\s+(\d+\.\d+)\s+(\w+)\((.*)<unfinished \.\.\.>$", line)
            if m:
                pending[m.group(1)] = (m.group(2), m.group(3), m.group(4))
            continue
        m = re.match(r"^(\d+)\s+(\d+\.\d+)\s+<\.\.\. (\w+) resumed>(.*)$", line)
        if m and m.group(1) in pending:
            t, name, args = pending.pop(m.group(1))
            line = "%s %s %s(%s%s" % (m.group(1), t, name, args, m.group(4))
        m = EV.match(line)
        if m:
            yield {"pid": int(m.group(1)), "t": float(m.group(2)), "call": m.group(3),
                   "args": m.group(4), "ret": m.group(5), "dur": float(m.group(7) or 0)}


def interesting(e, min_bytes):
    c, a = e["call"], e["args"]
    if c in ("execve", "exit_group", "fallocate", "unlink", "ftruncate", "sendto"):
        return True
    if c == "openat":
        return "/dev/shm/" in a and "ENOENT" not in e["ret"]
    if c in ("pwrite64", "sendfile"):
        return True
    if c == "write":
        return "BENCH_MARK" in a
    if c in ("mmap", "munmap"):
        m = re.search(r",\s*(\d+)", a)
        return bool(m) and int(m.group(1)) >= min_bytes
    return False


def main():
    argv = sys.argv[1:]
    min_bytes = 1 << 20
    if argv[:1] == ["--min-bytes"]:
        min_bytes = int(float(argv[1]))
        argv = argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as f:
        subprocess.run(["strace", "-f", "--seccomp-bpf", "-T", "-ttt", "-s", "60", "-e",
                        "trace=" + CALLS, "-o", f.name] + argv, check=False)
        events = [e for e in parse(f.read()) if interesting(e, min_bytes)]
    t0 = next((e["t"] for e in events if e["call"] == "write" and "BENCH_MARK start" in e["args"]),
              events[0]["t"] if events else 0)
    merged = []
    for e in events:
        if e["call"] in ("pwrite64", "sendfile"):
            fd = e["args"].split(",", 1)[0]
            n = int(e["ret"]) if e["ret"].lstrip("-").isdigit() else 0
            last = merged[-1] if merged else None
            if last and last["call"] == e["call"] and last["pid"] == e["pid"] and last["fd"] == fd:
                last["bytes"] += max(n, 0)
                last["calls"] += 1
                last["end"] = e["t"] + e["dur"]
                continue
            merged.append(dict(e, fd=fd, bytes=max(n, 0), calls=1, end=e["t"] + e["dur"]))
        else:
            merged.append(dict(e, end=e["t"] + e["dur"]))
    print("%9s %9s %7s  %s" % ("t (ms)", "dur (ms)", "pid", "event"))
    for e in merged:
        if e["call"] in ("pwrite64", "sendfile"):
            if e["bytes"] < 65536:
                what = "%s(fd %s) %d bytes" % (e["call"], e["fd"], e["bytes"])
            else:
                what = "%s(fd %s) %.0f MB in %d calls" % (e["call"], e["fd"], e["bytes"] / 1e6, e["calls"])
            dur = e["end"] - e["t"]
        else:
            what = "%s(%s) = %s" % (e["call"], e["args"][:90], e["ret"])
            dur = e["dur"]
        print("%9.1f %9.1f %7d  %s" % ((e["t"] - t0) * 1e3, dur * 1e3, e["pid"], what))


if __name__ == "__main__":
    main()
