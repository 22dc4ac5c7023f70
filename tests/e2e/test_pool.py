"""`pyrmap shared --pool` and `pyrmap pipeline --pool`: the scripts run on
warm workers (each imports numpy once), with the results and errors of the
one-shot runs; Python warnings are reported on stderr."""

import os

from conftest import base_env, expect_failure


def test_shared_on_a_pool_gives_the_one_shot_results(cli, scripts):
    a = scripts.func("a.py", "data + 1")
    b = scripts.func("b.py", "data * 2")
    c = scripts.func("c.py", "np.sum(data)")
    one_shot = cli("shared", a, b, c, input="1 2 3")
    pooled = cli("shared", "--pool", "-j", "2", a, b, c, input="1 2 3")
    assert one_shot.rc == 0 and pooled.rc == 0, pooled
    assert pooled.out == one_shot.out


def test_a_pool_of_one_worker_runs_every_script_in_one_process(cli, scripts):
    s = scripts.func("pid.py", "np.array([os.getpid()])")
    t = scripts.func("pid2.py", "np.array([os.getpid()])")
    o = cli("shared", "--pool", "-j", "1", s, t, input="1")
    assert o.rc == 0, o
    pids = [line for line in o.lines() if not line.startswith("==")]
    assert len(pids) == 2 and pids[0] == pids[1], o
    o = cli("shared", s, t, input="1")  # one-shot: a process per script
    pids = [line for line in o.lines() if not line.startswith("==")]
    assert pids[0] != pids[1], o


def test_pipeline_on_a_pool(cli, scripts):
    total = scripts.func("total.py", "np.sum(data)")
    plus_one = scripts.func("plus_one.py", "data[0] + 1")
    o = cli("pipeline", "--pool", total, plus_one, input="1 2 3")
    assert o.rc == 0, o
    assert o.out.split() == ["7.0"]
    o = cli("pipeline", "--pool", "-k", total, plus_one, input="1 2 3")
    assert o.rc == 0, o
    assert o.out.split() == ["==", "stage", "1:", total, "==", "6.0", "==", "stage", "2:", plus_one, "==",
                             "7.0"]


def test_errors_on_a_pool_are_the_one_shot_errors(cli, scripts):
    bad = scripts.func("bad.py", "raise ValueError('no thanks')")
    dies = scripts.func("dies.py", "os._exit(3)")
    ok = scripts.func("ok.py", "data")
    o = cli("shared", "--pool", "-j", "2", ok, bad, input="1")
    expect_failure(o, 3, "bad.py", "ValueError: no thanks")
    o = cli("shared", "--pool", dies, input="1")
    expect_failure(o, 3, "dies.py", "exited with status 3", "replaced")
    o = cli("shared", "--pool", ok, "--python", "/bin/false", input="1")
    expect_failure(o, 7, "/bin/false")


def test_python_warnings_are_reported_on_stderr(cli, scripts):
    s = scripts.func("warns.py", """
        import warnings
        warnings.warn("mind the gap")
        return data
    """)
    for extra in ([], ["--pool"]):
        o = cli("shared", *extra, s, input="1 2")
        assert o.rc == 0, o
        assert "pyrmap: warning: script '%s': UserWarning: mind the gap (warns.py:" % s in o.stderr, o
    o = cli("run", s, input="1 2")
    assert o.rc == 0, o
    assert "UserWarning: mind the gap" in o.stderr and o.out.split() == ["1.0", "2.0"], o
    # Before an error, the warnings are reported too.
    f = scripts.func("warns_then_fails.py", """
        import warnings
        warnings.warn("first this")
        raise RuntimeError("then that")
    """)
    o = cli("run", f, input="1")
    expect_failure(o, 3, "RuntimeError: then that")
    assert "UserWarning: first this" in o.stderr, o
