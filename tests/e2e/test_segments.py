"""`pyrmap ls` and `pyrmap gc` on a real orphan: a `pyrmap run` killed with
SIGKILL (so it cannot clean up) while its script still runs. The script dies
with it (its parent-death signal); the segment names stay until gc."""

import json
import os
import re
import shutil
import signal
import subprocess

import numpy as np
import pytest

from conftest import base_env, pid_alive, segment_owner, segments, wait_for_file, wait_gone

SLEEPER = """
    open(os.environ["PIDFILE"], "w").write(str(os.getpid()))
    time.sleep(60)
    return data
"""


def start_sleeper(spawn, scripts, work, name):
    pidfile = work / (name + ".pid")
    s = scripts.func(name + ".py", SLEEPER)
    proc = spawn("run", s, input="1 2 3", env=base_env(PIDFILE=str(pidfile)))
    child = int(wait_for_file(pidfile, proc=proc))
    return proc, child


def kill_child(pid):
    """Kills a script process that is no longer our child (orphaned)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    assert wait_gone(pid, 10), "script pid %d survived SIGKILL" % pid


def ls_rows(cli):
    o = cli("ls")
    assert o.rc == 0, o
    return o, {line.split()[0]: line for line in o.lines()[1:] if line.startswith("pyrmap-")}


def test_orphan_is_listed_dead_and_collected(cli, spawn, scripts, work):
    proc, child = start_sleeper(spawn, scripts, work, "orphan")
    mine = sorted(n for n in segments() if segment_owner(n) == proc.pid)
    # pyrmap-<uid>-<pid>-<hex>-<role>. The data segment's name is removed as
    # soon as the script holds a descriptor of it, so a killed runner never
    # leaves the (largest) input behind.
    assert sorted(n.split("-", 4)[4] for n in mine) == ["meta-0", "res-0"], mine
    try:
        # While pyrmap lives, its segments are listed with a live owner.
        o, rows = ls_rows(cli)
        assert o.lines()[0].split() == ["NAME", "HOLDS", "OWNER", "SIZE", "AGE", "DIR"], o
        for name in mine:
            assert "%d (alive)" % proc.pid in rows[name], o
            # HOLDS: a call segment's role, the end of its name; DIR last.
            assert rows[name].split()[1] == name.split("-", 4)[4], o
            assert rows[name].split()[-1] == "/dev/shm", o

        proc.kill()  # SIGKILL pyrmap itself, not the script: nothing cleans up
        proc.wait(timeout=10)
        assert wait_gone(child, 30), "the script (pid %d) outlived pyrmap" % child
        left = sorted(n for n in segments() if segment_owner(n) == proc.pid)
        assert left == mine, "a SIGKILLed pyrmap cannot remove its segments"

        o, rows = ls_rows(cli)
        for name in mine:
            assert name in rows, o
            assert "%d (dead)" % proc.pid in rows[name], o
        assert "4.0 KiB" in rows[[n for n in mine if "-meta-" in n][0]]

        # gc says what each segment held, its size and where it was.
        held = {"meta-0": "the header of a run's script 1, 4.0 KiB",
                "res-0": "the result of a run's script 1, 0 B"}
        dry = cli("gc", "-n")
        assert dry.rc == 0, dry
        for name in mine:
            assert "would remove %s (owner %d is dead): %s, in /dev/shm\n" % (
                name, proc.pid, held[name.split("-", 4)[4]]) in dry.out, dry
        assert sorted(n for n in segments() if segment_owner(n) == proc.pid) == mine

        gc = cli("gc")
        assert gc.rc == 0, gc
        for name in mine:
            assert "removed %s (owner %d is dead): %s, in /dev/shm\n" % (
                name, proc.pid, held[name.split("-", 4)[4]]) in gc.out, gc
        assert not [n for n in segments() if segment_owner(n) == proc.pid]
        o, rows = ls_rows(cli)
        assert not set(mine) & set(rows), o
    finally:
        kill_child(child)


def test_gc_spares_segments_of_a_live_run(cli, spawn, scripts, work):
    proc, child = start_sleeper(spawn, scripts, work, "alive")
    mine = sorted(n for n in segments() if segment_owner(n) == proc.pid)
    assert mine
    gc = cli("gc")
    assert gc.rc == 0, gc
    for name in mine:
        assert name not in gc.out, gc
    assert sorted(n for n in segments() if segment_owner(n) == proc.pid) == mine
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 143
    assert wait_gone(child, 5)
    assert not [n for n in segments() if segment_owner(n) == proc.pid]


def test_gc_summary_line(cli):
    o = cli("gc", "-n")
    assert o.rc == 0, o
    last = o.lines()[-1]
    assert last.startswith("would remove ") and "segment" in last, o


def test_ls_shows_the_input_of_a_running_call_after_its_name_is_gone(cli, spawn, scripts, work):
    """The data segment's name goes as soon as the script holds it; ls still
    shows it, with its real size and the processes that hold it."""
    pidfile = work / "big.pid"
    s = scripts.func("big.py", SLEEPER)
    np.save(work / "big.npy", np.zeros(3 << 20, dtype=np.uint8))  # 3 MiB
    proc = spawn("run", s, "-i", work / "big.npy", env=base_env(PIDFILE=str(pidfile)))
    child = int(wait_for_file(pidfile, proc=proc))
    try:
        data = [n for n in os.listdir("/dev/shm") if n.startswith("pyrmap-%d-%d-" % (os.getuid(), proc.pid))
                and n.endswith("-data")]
        assert data == [], data  # no name
        # (Other users of this machine's pyrmap may have segments of their
        # own: only this run's count.)
        mine_prefix = "pyrmap-%d-%d-" % (os.getuid(), proc.pid)
        o, rows = ls_rows(cli)
        gone = [r for n, r in rows.items() if n.startswith(mine_prefix) and "data (name removed)" in r]
        assert len(gone) == 1, o
        row = gone[0]
        assert row.startswith("pyrmap-%d-%d-" % (os.getuid(), proc.pid)), o
        assert " 3.0 MiB " in row and row.split()[-1] == "/dev/shm", o
        holders = re.search(r"held by ([\d,]+)", row).group(1).split(",")
        assert str(child) in holders, o

        j = cli("ls", "--json")
        assert j.rc == 0, j
        entries = json.loads(j.out)
        unnamed = [e for e in entries if not e["named"] and e["name"].startswith(mine_prefix)]
        assert len(unnamed) == 1, entries
        e = unnamed[0]
        assert e["holds"] == "data" and e["size"] == 3 << 20 and child in e["holders"], e
        assert e["owner_pid"] == proc.pid and e["dir"] == "/dev/shm" and e["kind"] == "call", e
        named = {x["name"]: x for x in entries if x["named"]}
        mine = sorted(n for n in segments() if segment_owner(n) == proc.pid)
        assert set(mine) <= set(named), entries
        for name in mine:
            x = named[name]
            assert x["owner_pid"] == proc.pid and x["owner_alive"] is True, x
            assert x["holds"] == name.split("-", 4)[4] and x["squatted_by_uid"] is None, x
            assert x["size"] == os.stat("/dev/shm/" + name).st_size and x["uid"] == os.getuid(), x
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if child is not None:
            kill_child(child)
        cli("gc")


def test_ls_json_of_nothing_is_an_empty_array(cli, tmp_path):
    d = tmp_path / "segs"
    d.mkdir(mode=0o700)
    env = base_env(PYRMAP_SEGMENT_DIR=str(d), XDG_STATE_HOME=str(tmp_path / "state"))
    o = cli("ls", "--json", "--segment-dir", d, env=env)
    assert o.rc == 0, o
    entries = json.loads(o.out)
    assert isinstance(entries, list)
    assert not [e for e in entries if e["dir"] == str(d)], entries


def test_ls_leaves_out_the_segments_of_another_mount_namespace(cli, scripts, work, pyrmap_bin):
    """A process in another mount namespace has its own /dev/shm, whose
    files /proc shows under the same path: they are not this /dev/shm's."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) to make a mount namespace")
    pidfile = work / "other.pid"
    s = scripts.func("other.py", SLEEPER)
    np.save(work / "other.npy", np.zeros(1 << 20, dtype=np.uint8))
    inner = "mount -t tmpfs -o size=64m tmpfs /dev/shm && exec %s run %s -i %s" % (
        pyrmap_bin, s, work / "other.npy")
    proc = subprocess.Popen(["unshare", "-m", "sh", "-c", inner], env=base_env(PIDFILE=str(pidfile)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    child = None
    try:
        child = int(wait_for_file(pidfile, proc=proc))
        o = cli("ls", "--json")
        assert o.rc == 0, o
        held = [e for e in json.loads(o.out) if not e["named"] and child in e["holders"]]
        assert held == [], held
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if child is not None:
            kill_child(child)
