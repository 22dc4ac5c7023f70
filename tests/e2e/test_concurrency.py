"""Many `pyrmap run` processes at once, each on its own data."""

import subprocess

import numpy as np

from conftest import PYRMAP, _started_pids, base_env

N = 16


def test_sixteen_runs_at_once_each_get_their_own_answer(scripts, work):
    s = scripts.func("summary.py", """
        time.sleep(0.2)  # keep them overlapping
        return np.array([data.size, data.sum(), data[0], data[-1], data.max()], dtype=np.float64)
    """)
    procs, want = [], []
    for k in range(N):
        n = 1000 * (k + 1) + k  # a different size for each
        dtype = [np.int64, np.float64, np.int32, np.uint8][k % 4]
        a = ((np.arange(n) * (k + 3) + 7 * k) % (200 if dtype is np.uint8 else 10**6)).astype(dtype)
        args = [PYRMAP, "run", s, "-o", str(work / ("out%d.npy" % k))]
        if k % 2:  # half from .npy files, half as text on stdin
            np.save(work / ("in%d.npy" % k), a)
            args += ["-i", str(work / ("in%d.npy" % k))]
            stdin = None
        else:
            args += ["-d", np.dtype(dtype).name]
            stdin = " ".join(map(str, a.tolist())).encode()
        p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=base_env())
        _started_pids.add(p.pid)
        procs.append((p, stdin))
        want.append([a.size, a.sum(dtype=np.float64), a[0], a[-1], a.max()])
    for k, (p, stdin) in enumerate(procs):
        out, err = p.communicate(stdin, timeout=60)
        assert p.returncode == 0, "run %d: exit %d\n%s" % (k, p.returncode, err.decode())
    for k in range(N):
        got = np.load(work / ("out%d.npy" % k))
        np.testing.assert_array_equal(got, want[k], err_msg="run %d" % k)
